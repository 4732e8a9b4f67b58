//! GIE's `lora-affinity-scorer` (gie-facts §3.4), for the request's target model:
//! 1.0 if it is in the endpoint's running adapters; else 0.8 if the endpoint has a free
//! adapter slot (`running + waiting < max_lora`); else 0.6 if it is among the waiting
//! adapters; else 0. Endpoints without metrics score 0.
//!
//! GIE scores a request for the base model the same way, as if it were an adapter
//! nobody runs: endpoints with a free slot get 0.8 and full ones 0, so in a pool that
//! serves base and adapter traffic the scorer pulls base requests away from the
//! endpoints busiest with adapters. igw's `baseModelIsActive` parameter (off by
//! default, as in GIE) scores 1.0 wherever the endpoint serves the target itself
//! ([`EndpointMetrics::served_model`]), so base traffic is routed on load alone.

use serde::Deserialize;

use super::{Params, score_each};
use crate::epp::endpoint::{Candidate, EndpointMetrics};
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "lora-affinity-scorer";

/// GIE's tiers.
const ACTIVE: f64 = 1.0;
const FREE_SLOT: f64 = 0.8;
const WAITING: f64 = 0.6;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LoraAffinityParams {
    /// A request for the model an endpoint serves under its own name scores 1.0 there
    /// (igw only; GIE has no parameters here).
    pub base_model_is_active: bool,
}

impl Params for LoraAffinityParams {}

#[derive(Debug, Default)]
pub struct LoraAffinityScorer {
    base_model_is_active: bool,
}

impl LoraAffinityScorer {
    pub fn new(params: LoraAffinityParams) -> LoraAffinityScorer {
        LoraAffinityScorer {
            base_model_is_active: params.base_model_is_active,
        }
    }
}

/// GIE's score of one endpoint's metrics for `model`.
pub fn lora_score(m: &EndpointMetrics, model: &str) -> f64 {
    let has = |list: &[String]| list.iter().any(|a| a == model);
    if has(&m.active_adapters) {
        ACTIVE
    } else if ((m.active_adapters.len() + m.waiting_adapters.len()) as u64)
        < u64::from(m.max_active_adapters)
    {
        FREE_SLOT
    } else if has(&m.waiting_adapters) {
        WAITING
    } else {
        0.0
    }
}

impl Plugin for LoraAffinityScorer {}

impl Scorer for LoraAffinityScorer {
    fn score(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        _ctx: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    ) {
        let model = request.target_model.as_str();
        score_each(scores, candidates, subset, |c| {
            c.metrics.as_ref().map_or(0.0, |m| {
                let serves_it = m.served_model.as_deref() == Some(model);
                if self.base_model_is_active && serves_it {
                    ACTIVE
                } else {
                    lora_score(m, model)
                }
            })
        });
    }
}

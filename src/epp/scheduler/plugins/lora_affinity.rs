//! GIE's `lora-affinity-scorer` (gie-facts §3.4), for the request's target model:
//! 1.0 if it is in the endpoint's running adapters; else 0.8 if the endpoint has a free
//! adapter slot (`running + waiting < max_lora`); else 0.6 if it is among the waiting
//! adapters; else 0. Endpoints without metrics score 0. No state, no parameters.

use super::{NoParams, score_each};
use crate::epp::endpoint::{Candidate, EndpointMetrics};
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "lora-affinity-scorer";

/// GIE's tiers.
const ACTIVE: f64 = 1.0;
const FREE_SLOT: f64 = 0.8;
const WAITING: f64 = 0.6;

#[derive(Debug, Default)]
pub struct LoraAffinityScorer;

impl LoraAffinityScorer {
    pub fn new(_: NoParams) -> LoraAffinityScorer {
        LoraAffinityScorer
    }
}

/// The score of one endpoint's metrics for `model`.
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
        score_each(scores, candidates, subset, |c| {
            c.metrics
                .as_ref()
                .map_or(0.0, |m| lora_score(m, &request.target_model))
        });
    }
}

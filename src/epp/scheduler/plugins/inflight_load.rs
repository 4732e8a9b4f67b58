//! `inflight-load-scorer`, an igw extension: `queue-scorer` with the picker's own
//! memory. The estimated queue of an endpoint is
//!
//! ```text
//! L = waiting_queue_size + sent_since_scrape + inFlightWeight × in_flight
//! ```
//!
//! and the score is `(max L − L) / (max L − min L)` over the candidates with metrics
//! (1.0 for all when equal, 0 without metrics), exactly like `queue-scorer`.
//!
//! Why: metrics are up to one scrape interval old (50 ms by default). `queue-scorer`
//! sends every request of a burst inside that interval to the endpoint that looked
//! idlest; here each request the picker sends raises that endpoint's `L` at once, so
//! a burst spreads (DESIGN invariant 6). `inFlightWeight` (default 0) also counts the
//! picker's unfinished requests, for servers whose queue metric lags or stays at 0.
//! No state: the counts come with the candidate table.

use serde::Deserialize;

use super::{ParamError, Params, estimated_queue, finite_non_negative, min_max_inverse};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "inflight-load-scorer";

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct InflightLoadParams {
    /// Requests of queue each in-flight request counts as (≥ 0).
    pub in_flight_weight: f64,
}

impl Params for InflightLoadParams {
    fn validate(&self) -> Result<(), ParamError> {
        finite_non_negative("inFlightWeight", self.in_flight_weight)
    }
}

#[derive(Debug, Default)]
pub struct InflightLoadScorer {
    params: InflightLoadParams,
}

impl InflightLoadScorer {
    pub fn new(params: InflightLoadParams) -> InflightLoadScorer {
        InflightLoadScorer { params }
    }

    /// The estimated queue `L` of one candidate; `None` without metrics.
    pub fn load(&self, c: &Candidate) -> Option<f64> {
        estimated_queue(c).map(|q| q + self.params.in_flight_weight * c.in_flight as f64)
    }
}

impl Plugin for InflightLoadScorer {}

impl Scorer for InflightLoadScorer {
    fn score(
        &self,
        _request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        _ctx: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    ) {
        min_max_inverse(scores, |k| self.load(&candidates[subset[k]]));
    }
}

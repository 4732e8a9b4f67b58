//! GIE's `running-requests-size-scorer` (gie-facts §3.4): prefers endpoints with fewer
//! requests in the running batch, min-max normalised like `queue-scorer`:
//! `(maxR − r) / (maxR − minR)`, 1.0 for all when equal, 0 without metrics.
//! No state, no parameters.

use super::{NoParams, min_max_inverse};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "running-requests-size-scorer";

#[derive(Debug, Default)]
pub struct RunningRequestsScorer;

impl RunningRequestsScorer {
    pub fn new(_: NoParams) -> RunningRequestsScorer {
        RunningRequestsScorer
    }
}

impl Plugin for RunningRequestsScorer {}

impl Scorer for RunningRequestsScorer {
    fn score(
        &self,
        _request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        _ctx: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    ) {
        min_max_inverse(scores, |k| {
            candidates[subset[k]]
                .metrics
                .as_ref()
                .map(|m| m.running_requests as f64)
        });
    }
}

//! GIE's `queue-scorer` (gie-facts §3.4): prefers endpoints with shorter waiting
//! queues, `(maxQ − q) / (maxQ − minQ)` over the candidates with metrics, 1.0 for all
//! when the queues are equal. Endpoints without metrics score 0.
//!
//! Faithful to GIE on purpose: it sees only the last scrape, so a burst inside one
//! scrape interval all lands on the endpoint that looked idlest (compare
//! `inflight-load-scorer`). No state, no parameters.

use super::{NoParams, min_max_inverse};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "queue-scorer";

#[derive(Debug, Default)]
pub struct QueueScorer;

impl QueueScorer {
    pub fn new(_: NoParams) -> QueueScorer {
        QueueScorer
    }
}

impl Plugin for QueueScorer {}

impl Scorer for QueueScorer {
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
                .map(|m| m.waiting_queue_size as f64)
        });
    }
}

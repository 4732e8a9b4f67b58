//! GIE's `kv-cache-utilization-scorer` (gie-facts §3.4): `1 − KVCacheUsagePercent`,
//! so emptier caches score higher. Endpoints without metrics score 0.
//! No state, no parameters.

use super::{NoParams, score_each};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "kv-cache-utilization-scorer";

#[derive(Debug, Default)]
pub struct KvCacheScorer;

impl KvCacheScorer {
    pub fn new(_: NoParams) -> KvCacheScorer {
        KvCacheScorer
    }
}

impl Plugin for KvCacheScorer {}

impl Scorer for KvCacheScorer {
    fn score(
        &self,
        _request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        _ctx: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    ) {
        score_each(scores, candidates, subset, |c| {
            c.metrics.as_ref().map_or(0.0, |m| 1.0 - m.kv_cache_usage)
        });
    }
}

//! GIE's `prefix-cache-scorer` (gie-facts §4): score = matched blocks / total blocks
//! of the request's prompt on each endpoint, from igw's approximate prefix index.
//!
//! In GIE the index belongs to an `approx-prefix-cache-producer` created with the
//! scorer's parameters; here the scorer owns its index (same parameters, same
//! behaviour) and updates it in `on_scheduled`, after the pick and before forwarding
//! (§4.6). It never learns which endpoint actually served the request.

use super::Params;
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::prefix::{PrefixMatcher, PrefixParams};
use crate::epp::scheduler::{CycleState, Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "prefix-cache-scorer";

#[derive(Debug, Default)]
pub struct PrefixCacheScorer {
    matcher: PrefixMatcher,
}

impl PrefixCacheScorer {
    pub fn new(params: PrefixParams) -> PrefixCacheScorer {
        debug_assert!(params.validate().is_ok());
        PrefixCacheScorer {
            matcher: PrefixMatcher::new(params),
        }
    }

    /// The index, for its size gauge and for tests.
    pub fn matcher(&self) -> &PrefixMatcher {
        &self.matcher
    }
}

impl Plugin for PrefixCacheScorer {
    fn on_scheduled(&self, request: &LlmRequest, chosen: &Candidate, cycle: &mut CycleState) {
        self.matcher.record(request, chosen, &mut cycle.prefix);
    }

    fn on_endpoint_removed(&self, name: &str) {
        self.matcher.index.remove(name);
    }
}

impl Scorer for PrefixCacheScorer {
    fn score(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        ctx: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    ) {
        self.matcher
            .ratios(request, candidates, subset, &mut ctx.cycle.prefix, scores);
    }
}

//! `load-aware-prefix-scorer`, an igw extension: prefix affinity that gives way to
//! load. It keeps the same approximate prefix index as GIE's `prefix-cache-scorer`
//! (same hashing and parameters, gie-facts §4) and scores each candidate `i`:
//!
//! ```text
//! m_i = matched / total prompt blocks on i            (the prefix-cache score)
//! L_i = waiting_queue_size_i + sent_since_scrape_i    (estimated queue, requests)
//! e_i = L_i − min_j L_j                               (excess over the least loaded)
//! a_i = m_i                          if e_i ≤ S       (S = loadSlack, requests)
//!     = m_i × 2^(−(e_i − S) / S)     otherwise        (halves every S more requests)
//! ℓ_i = (max L − L_i) / (max L − min L), 1 if all equal
//! A   = max_j a_j
//! s_i = max(a_i, (1 − A) × ℓ_i)
//! ```
//!
//! So a prompt goes to the endpoint that holds its prefix while that endpoint is
//! within `S` requests of the least loaded one; beyond that its pull fades and the
//! least-loaded endpoints take over as `(1 − A) × ℓ` grows. On a miss (no endpoint
//! holds any block, A = 0) the score is pure least-loaded, so a new prefix lands where
//! there is room and later requests with it follow. Counting `sent_since_scrape`
//! keeps a burst of one prefix from piling past the slack within one scrape interval.
//! Endpoints without metrics score 0. The index is updated in `on_scheduled`.

use serde::Deserialize;

use super::{ParamError, Params, estimated_queue};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::prefix::{PrefixMatcher, PrefixParams};
use crate::epp::scheduler::{CycleState, Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "load-aware-prefix-scorer";

/// The prefix index's parameters (as `prefix-cache-scorer`'s) plus `loadSlack`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadAwarePrefixParams {
    pub auto_tune: bool,
    pub block_size_tokens: usize,
    pub max_prefix_blocks_to_match: usize,
    pub max_prefix_tokens_to_match: usize,
    pub lru_capacity_per_server: usize,
    /// Requests of excess queue an affine endpoint may carry before its affinity
    /// starts to fade (> 0).
    pub load_slack: f64,
}

/// Four requests: about one scrape interval of arrivals per endpoint at a few hundred
/// requests per second over a handful of endpoints, and short enough that a queue
/// forming behind a hot prefix is noticed before it costs more than the prefill saved.
const DEFAULT_LOAD_SLACK: f64 = 4.0;

impl Default for LoadAwarePrefixParams {
    fn default() -> Self {
        let p = PrefixParams::default();
        LoadAwarePrefixParams {
            auto_tune: p.auto_tune,
            block_size_tokens: p.block_size_tokens,
            max_prefix_blocks_to_match: p.max_prefix_blocks_to_match,
            max_prefix_tokens_to_match: p.max_prefix_tokens_to_match,
            lru_capacity_per_server: p.lru_capacity_per_server,
            load_slack: DEFAULT_LOAD_SLACK,
        }
    }
}

impl LoadAwarePrefixParams {
    pub fn prefix(&self) -> PrefixParams {
        PrefixParams {
            auto_tune: self.auto_tune,
            block_size_tokens: self.block_size_tokens,
            max_prefix_blocks_to_match: self.max_prefix_blocks_to_match,
            max_prefix_tokens_to_match: self.max_prefix_tokens_to_match,
            lru_capacity_per_server: self.lru_capacity_per_server,
            block_size: None,
        }
    }
}

impl Params for LoadAwarePrefixParams {
    fn validate(&self) -> Result<(), ParamError> {
        self.prefix().validate()?;
        let s = self.load_slack;
        if !(s.is_finite() && s > 0.0) {
            return Err(ParamError::new(
                "loadSlack",
                format!("must be a finite number > 0, got {s}"),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct LoadAwarePrefixScorer {
    matcher: PrefixMatcher,
    slack: f64,
}

impl LoadAwarePrefixScorer {
    pub fn new(params: LoadAwarePrefixParams) -> LoadAwarePrefixScorer {
        LoadAwarePrefixScorer {
            matcher: PrefixMatcher::new(params.prefix()),
            slack: params.load_slack,
        }
    }

    pub fn matcher(&self) -> &PrefixMatcher {
        &self.matcher
    }
}

impl Plugin for LoadAwarePrefixScorer {
    fn on_scheduled(&self, request: &LlmRequest, chosen: &Candidate, cycle: &mut CycleState) {
        self.matcher.record(request, chosen, &mut cycle.prefix);
    }

    fn on_endpoint_removed(&self, name: &str) {
        self.matcher.index.remove(name);
    }
}

impl Scorer for LoadAwarePrefixScorer {
    fn score(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        ctx: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    ) {
        // `scores` holds m_i first, then a_i, then s_i.
        self.matcher
            .ratios(request, candidates, subset, &mut ctx.cycle.prefix, scores);
        let load = |k: usize| estimated_queue(&candidates[subset[k]]);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for k in 0..subset.len() {
            if let Some(l) = load(k) {
                lo = lo.min(l);
                hi = hi.max(l);
            }
        }
        let mut best = 0.0f64;
        for (k, s) in scores.iter_mut().enumerate() {
            *s = match load(k) {
                None => 0.0,
                Some(l) => {
                    let excess = l - lo;
                    if excess <= self.slack {
                        *s
                    } else {
                        *s * (-(excess - self.slack) / self.slack).exp2()
                    }
                }
            };
            best = best.max(*s);
        }
        for (k, s) in scores.iter_mut().enumerate() {
            if let Some(l) = load(k) {
                let least = if hi > lo { (hi - l) / (hi - lo) } else { 1.0 };
                *s = s.max((1.0 - best) * least);
            }
        }
    }
}

//! `load-aware-prefix-scorer`, an igw extension: prefix affinity that gives way to
//! load. It keeps the same approximate prefix index as GIE's `prefix-cache-scorer`
//! (same hashing and parameters, gie-facts §4) and scores each candidate `i`:
//!
//! ```text
//! m_i = matched / total prompt blocks on i            (the prefix-cache score)
//! L_i = waiting_queue_size_i + sent_since_scrape_i    (estimated queue, requests)
//! e_i = L_i − min_j L_j                               (excess over the least loaded)
//! s_i = m_i                          if e_i ≤ S       (S = loadSlack, requests)
//!     = m_i × 2^(−(e_i − S) / S)     otherwise        (halves every S more requests)
//! ```
//!
//! So a prompt goes to the endpoint that holds its prefix while that endpoint is
//! within `S` requests of the least loaded one; beyond that its pull fades and the
//! profile's load scorers take over. A burst of one hot prefix therefore spreads once
//! its endpoint runs `S` ahead, where GIE's `prefix-cache-scorer` keeps sending it to
//! the same server. Counting `sent_since_scrape` notices that within one scrape
//! interval. On a miss every candidate scores 0, as with GIE's scorer, and the rest
//! of the profile decides. Endpoints without metrics score 0. The index is updated in
//! `on_scheduled`.
//!
//! An earlier form also gave the other candidates a least-loaded score scaled by
//! `1 − max_j s_j`. Beside a load scorer that counted load twice: a chat session
//! whose history only partly matched left the replica holding it (p90 NTPOT 0.35×
//! of random's against 0.28× on `scenarios/chat-sessions.yaml` at 250 req/s), and
//! with no shared prefixes it outweighed LoRA affinity (`multi-lora`: 0.52–0.69×
//! against 0.44–0.61× at 40–100 req/s). Without it nothing else moved.

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
        // `scores` holds m_i first, then s_i.
        self.matcher
            .ratios(request, candidates, subset, &mut ctx.cycle.prefix, scores);
        let load = |k: usize| estimated_queue(&candidates[subset[k]]);
        let lo = (0..subset.len())
            .filter_map(load)
            .fold(f64::INFINITY, f64::min);
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
        }
    }
}

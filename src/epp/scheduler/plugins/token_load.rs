//! GIE's `token-load-scorer` (gie-facts §3.4): prefers endpoints holding fewer
//! estimated tokens in flight from this picker,
//!
//! ```text
//! score = 1 − min(1, inFlightTokens / queueThresholdTokens)
//! ```
//!
//! (1.0 with nothing in flight). A request's tokens are booked when it is forwarded
//! and released when its response ends, by the estimate of
//! [`LlmRequest::estimated_tokens`] (GIE's `inflight-load-producer`), so the count is
//! never older than the last decision, unlike scraped metrics. It weighs requests by
//! size where `inflight-load-scorer` counts them, which matters when long and short
//! requests mix: the KV an endpoint will need grows with the tokens it holds.
//!
//! The score is absolute, not normalised over the candidates: with the default
//! threshold (4,194,304 tokens: 128 requests of 32K) a few thousand tokens move it by
//! a thousandth, enough to decide a max-score pick alone but little beside other
//! weighted scorers; a threshold near one endpoint's KV capacity makes it count.
//! No state: the counts come with the candidate table.

use serde::Deserialize;

use super::{Params, score_each};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Plugin, SchedulingContext, Scorer};

pub const TYPE: &str = "token-load-scorer";

/// GIE's default `queueThresholdTokens`: "128 requests @ 32K per request".
pub const DEFAULT_QUEUE_THRESHOLD_TOKENS: i64 = 4_194_304;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenLoadParams {
    /// In-flight tokens at which the score reaches 0. As in GIE, a value ≤ 0 means
    /// the default.
    pub queue_threshold_tokens: i64,
}

impl Default for TokenLoadParams {
    fn default() -> TokenLoadParams {
        TokenLoadParams {
            queue_threshold_tokens: DEFAULT_QUEUE_THRESHOLD_TOKENS,
        }
    }
}

/// Every value is valid: GIE replaces a non-positive threshold by the default.
impl Params for TokenLoadParams {}

#[derive(Debug)]
pub struct TokenLoadScorer {
    /// The threshold in effect, > 0.
    threshold: f64,
}

impl TokenLoadScorer {
    pub fn new(params: TokenLoadParams) -> TokenLoadScorer {
        let t = match params.queue_threshold_tokens {
            t if t > 0 => t,
            _ => DEFAULT_QUEUE_THRESHOLD_TOKENS,
        };
        TokenLoadScorer {
            threshold: t as f64,
        }
    }

    /// The score of one candidate.
    pub fn score_of(&self, c: &Candidate) -> f64 {
        1.0 - (c.in_flight_tokens as f64 / self.threshold).min(1.0)
    }
}

impl Default for TokenLoadScorer {
    fn default() -> TokenLoadScorer {
        TokenLoadScorer::new(TokenLoadParams::default())
    }
}

impl Plugin for TokenLoadScorer {}

impl Scorer for TokenLoadScorer {
    fn score(
        &self,
        _request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        _ctx: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    ) {
        score_each(scores, candidates, subset, |c| self.score_of(c));
    }
}

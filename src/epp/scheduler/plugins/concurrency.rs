//! GIE's `concurrency-detector` (gie-facts §5.1): saturation from the picker's own
//! in-flight counts instead of scraped metrics, so it reacts to a burst at once and
//! needs no metrics at all. Like `utilization-detector` it is also a Filter when a
//! profile references it.
//!
//! In `requests` mode (the default) an endpoint's load is its requests in flight
//! against `maxConcurrency` (100); in `tokens` mode it is their estimated tokens
//! (GIE's `inflight-load-producer` estimate, [`LlmRequest::estimated_tokens`])
//! against `maxTokenConcurrency` (1,000,000).
//!
//! - Saturation = Σ load / Σ capacity over the candidates (1.0 with none): 1.0 means
//!   the pool holds exactly its ideal capacity.
//! - Filter: keeps endpoints whose load is below `capacity × (1 + headroom)`,
//!   truncated to a whole number as GIE does. Unlike `utilization-detector` it does
//!   not fail open: when every endpoint is full, the profile has no candidates.
//!
//! No state: the counts come with the candidate table.

use serde::Deserialize;

use super::{ParamError, Params, finite_non_negative};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Filter, Plugin, SchedulingContext};

pub const TYPE: &str = "concurrency-detector";

/// What counts as an endpoint's load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConcurrencyMode {
    /// Requests in flight.
    #[default]
    Requests,
    /// Their estimated tokens.
    Tokens,
}

/// GIE's parameters and defaults (gie-facts §5.1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ConcurrencyParams {
    pub concurrency_mode: ConcurrencyMode,
    /// One endpoint's ideal capacity in requests (> 0).
    pub max_concurrency: i64,
    /// One endpoint's ideal capacity in tokens (> 0).
    pub max_token_concurrency: i64,
    /// Extra fraction of the capacity the filter tolerates (≥ 0).
    pub headroom: f64,
}

impl Default for ConcurrencyParams {
    fn default() -> ConcurrencyParams {
        ConcurrencyParams {
            concurrency_mode: ConcurrencyMode::Requests,
            max_concurrency: 100,
            max_token_concurrency: 1_000_000,
            headroom: 0.0,
        }
    }
}

impl Params for ConcurrencyParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.max_concurrency <= 0 {
            return Err(ParamError::new(
                "maxConcurrency",
                format!("must be greater than 0, got {}", self.max_concurrency),
            ));
        }
        if self.max_token_concurrency <= 0 {
            return Err(ParamError::new(
                "maxTokenConcurrency",
                format!("must be greater than 0, got {}", self.max_token_concurrency),
            ));
        }
        finite_non_negative("headroom", self.headroom)
    }
}

#[derive(Debug, Default)]
pub struct ConcurrencyDetector {
    params: ConcurrencyParams,
}

impl ConcurrencyDetector {
    pub fn new(params: ConcurrencyParams) -> ConcurrencyDetector {
        ConcurrencyDetector { params }
    }

    pub fn params(&self) -> &ConcurrencyParams {
        &self.params
    }

    /// One endpoint's load and ideal capacity in the configured unit.
    fn load_and_capacity(&self, c: &Candidate) -> (u64, u64) {
        let p = &self.params;
        match p.concurrency_mode {
            ConcurrencyMode::Requests => (c.in_flight, p.max_concurrency as u64),
            ConcurrencyMode::Tokens => (c.in_flight_tokens, p.max_token_concurrency as u64),
        }
    }

    /// Σ load / Σ capacity over `candidates`; 1.0 when there are none.
    pub fn saturation(&self, candidates: &[Candidate]) -> f64 {
        let (load, capacity) = candidates
            .iter()
            .map(|c| self.load_and_capacity(c))
            .fold((0u64, 0u64), |(l, cap), (a, b)| {
                (l.saturating_add(a), cap.saturating_add(b))
            });
        if capacity == 0 {
            return 1.0;
        }
        load as f64 / capacity as f64
    }

    /// Whether the filter keeps `c`.
    fn has_room(&self, c: &Candidate) -> bool {
        let (load, capacity) = self.load_and_capacity(c);
        // GIE: int64(float64(capacity) × (1 + headroom)), a truncation.
        let limit = (capacity as f64 * (1.0 + self.params.headroom)) as u64;
        load < limit
    }
}

impl Plugin for ConcurrencyDetector {}

impl Filter for ConcurrencyDetector {
    fn filter(
        &self,
        _request: &LlmRequest,
        candidates: &[Candidate],
        _ctx: &mut SchedulingContext<'_>,
        subset: &mut Vec<usize>,
    ) {
        subset.retain(|&i| self.has_room(&candidates[i]));
    }
}

//! GIE's `utilization-detector` (gie-facts §5.1): the default saturation detector,
//! which is also a Filter when a profile references it.
//!
//! As a filter it drops endpoints with no metrics or metrics older than
//! `metricsStalenessThreshold`, and endpoints whose waiting queue or KV use is at or
//! above its threshold × (1 + `headroom`); if that would drop every endpoint it drops
//! none (fail open). As a detector, [`UtilizationDetector::saturation`] is the pool
//! gradient the host's admission step compares with 1.0. Pure; no state.

use std::time::Duration;

use serde::Deserialize;

use super::{GoDuration, ParamError, Params, finite_non_negative};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{Filter, Plugin, SchedulingContext};

pub const TYPE: &str = "utilization-detector";

/// GIE's parameters and defaults (gie-facts §5.1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct UtilizationParams {
    /// Waiting requests at which an endpoint counts as full.
    pub queue_depth_threshold: u64,
    /// KV cache fraction (0, 1] at which an endpoint counts as full.
    pub kv_cache_util_threshold: f64,
    /// Metrics older than this count as missing.
    pub metrics_staleness_threshold: GoDuration,
    /// Extra fraction of each threshold the filter tolerates (≥ 0).
    pub headroom: f64,
}

impl Default for UtilizationParams {
    fn default() -> Self {
        UtilizationParams {
            queue_depth_threshold: 5,
            kv_cache_util_threshold: 0.8,
            metrics_staleness_threshold: GoDuration(Duration::from_millis(200)),
            headroom: 0.0,
        }
    }
}

impl Params for UtilizationParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.queue_depth_threshold == 0 {
            return Err(ParamError::new(
                "queueDepthThreshold",
                "must be greater than 0",
            ));
        }
        let kv = self.kv_cache_util_threshold;
        if !(kv > 0.0 && kv <= 1.0) {
            return Err(ParamError::new(
                "kvCacheUtilThreshold",
                format!("must be in (0, 1], got {kv}"),
            ));
        }
        if self.metrics_staleness_threshold.0.is_zero() {
            return Err(ParamError::new(
                "metricsStalenessThreshold",
                "must be greater than 0",
            ));
        }
        finite_non_negative("headroom", self.headroom)
    }
}

#[derive(Debug, Default)]
pub struct UtilizationDetector {
    params: UtilizationParams,
}

impl UtilizationDetector {
    pub fn new(params: UtilizationParams) -> UtilizationDetector {
        UtilizationDetector { params }
    }

    pub fn params(&self) -> &UtilizationParams {
        &self.params
    }

    fn fresh(&self, c: &Candidate, now: Duration) -> bool {
        c.metrics_age(now)
            .is_some_and(|age| age <= self.params.metrics_staleness_threshold.0)
    }

    /// Whether the filter keeps `c` (before failing open).
    fn has_room(&self, c: &Candidate, now: Duration) -> bool {
        let p = &self.params;
        let scale = 1.0 + p.headroom;
        match &c.metrics {
            Some(m) if self.fresh(c, now) => {
                (m.waiting_queue_size as f64) < p.queue_depth_threshold as f64 * scale
                    && m.kv_cache_usage < p.kv_cache_util_threshold * scale
            }
            _ => false,
        }
    }

    /// The pool's saturation: the mean over `candidates` of
    /// `max(q / queueDepthThreshold, kv / kvCacheUtilThreshold)`, where an endpoint
    /// with missing or stale metrics counts 1.0, and no candidates is 1.0. Saturated
    /// means ≥ 1.0; the legacy admission rule sheds requests with priority < 0 then.
    pub fn saturation(&self, candidates: &[Candidate], now: Duration) -> f64 {
        if candidates.is_empty() {
            return 1.0;
        }
        let p = &self.params;
        let sum: f64 = candidates
            .iter()
            .map(|c| match &c.metrics {
                Some(m) if self.fresh(c, now) => (m.waiting_queue_size as f64
                    / p.queue_depth_threshold as f64)
                    .max(m.kv_cache_usage / p.kv_cache_util_threshold),
                _ => 1.0,
            })
            .sum();
        sum / candidates.len() as f64
    }
}

impl Plugin for UtilizationDetector {}

impl Filter for UtilizationDetector {
    fn filter(
        &self,
        _request: &LlmRequest,
        candidates: &[Candidate],
        ctx: &mut SchedulingContext<'_>,
        subset: &mut Vec<usize>,
    ) {
        let now = ctx.now;
        if subset.iter().any(|&i| self.has_room(&candidates[i], now)) {
            subset.retain(|&i| self.has_room(&candidates[i], now));
        }
    }
}

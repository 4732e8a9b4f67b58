//! GIE's `utilization-detector` (gie-facts §5.1): how saturated a set of candidates is,
//! judged from their scraped queue depth and KV-cache use, and the legacy admission
//! rule built on it (shed sheddable requests when saturated).
//!
//! `saturation = mean over candidates of max(queue / queueDepthThreshold,
//! kv / kvCacheUtilThreshold)`; a candidate without metrics, or with metrics older
//! than `metricsStalenessThreshold`, counts as 1.0, and no candidates at all is 1.0.
//! Saturated means ≥ 1.0. It is faithful to GIE on purpose: it reads scraped metrics
//! only, not the picker's own in-flight counts.
//!
//! Pure functions of their inputs: no I/O, no clock (callers pass `now`), no state.

use std::time::Duration;

use serde::Deserialize;

use super::clock::deserialize_go_duration;
use super::endpoint::Candidate;

/// The plugin's `parameters`, with GIE's names and defaults.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UtilizationDetectorParams {
    /// Waiting requests at which an endpoint counts as full. > 0; default 5.
    pub queue_depth_threshold: u64,
    /// KV-cache fraction at which an endpoint counts as full. In (0, 1]; default 0.8.
    pub kv_cache_util_threshold: f64,
    /// Metrics older than this count as saturated. > 0; default 200ms.
    #[serde(deserialize_with = "deserialize_go_duration")]
    pub metrics_staleness_threshold: Duration,
    /// Slack over the thresholds when filtering, as a fraction. ≥ 0; default 0.
    pub headroom: f64,
}

impl Default for UtilizationDetectorParams {
    fn default() -> UtilizationDetectorParams {
        UtilizationDetectorParams {
            queue_depth_threshold: 5,
            kv_cache_util_threshold: 0.8,
            metrics_staleness_threshold: Duration::from_millis(200),
            headroom: 0.0,
        }
    }
}

/// A parameter outside its allowed range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{field}`: {message}")]
pub struct InvalidParam {
    pub field: &'static str,
    pub message: String,
}

impl UtilizationDetectorParams {
    /// GIE's constraints.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        let invalid = |field, message: &str| {
            Err(InvalidParam {
                field,
                message: message.to_string(),
            })
        };
        if self.queue_depth_threshold == 0 {
            return invalid("queueDepthThreshold", "must be > 0");
        }
        let kv = self.kv_cache_util_threshold;
        if !(kv > 0.0 && kv <= 1.0) {
            return invalid("kvCacheUtilThreshold", "must be in (0, 1]");
        }
        if self.metrics_staleness_threshold.is_zero() {
            return invalid("metricsStalenessThreshold", "must be > 0");
        }
        if !(self.headroom >= 0.0 && self.headroom.is_finite()) {
            return invalid("headroom", "must be >= 0");
        }
        Ok(())
    }
}

/// The detector, built from validated parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct UtilizationDetector {
    params: UtilizationDetectorParams,
}

impl UtilizationDetector {
    pub fn new(params: UtilizationDetectorParams) -> Result<UtilizationDetector, InvalidParam> {
        params.validate()?;
        Ok(UtilizationDetector { params })
    }

    pub fn params(&self) -> &UtilizationDetectorParams {
        &self.params
    }

    /// The pool's saturation over `candidates` at `now`; ≥ 1.0 means saturated.
    pub fn saturation(&self, candidates: &[Candidate], now: Duration) -> f64 {
        if candidates.is_empty() {
            return 1.0;
        }
        let sum: f64 = candidates
            .iter()
            .map(|c| self.endpoint_saturation(c, now))
            .sum();
        sum / candidates.len() as f64
    }

    /// One endpoint's share: the fuller of its queue and its KV cache, relative to the
    /// thresholds; 1.0 without fresh metrics.
    pub fn endpoint_saturation(&self, candidate: &Candidate, now: Duration) -> f64 {
        match self.fresh(candidate, now) {
            Some((queue, kv)) => {
                let p = &self.params;
                (queue / p.queue_depth_threshold as f64).max(kv / p.kv_cache_util_threshold)
            }
            None => 1.0,
        }
    }

    /// The filter role: indices of candidates with fresh metrics whose queue and KV
    /// are below the thresholds plus headroom. Fails open: if none pass, all do.
    pub fn filter(&self, candidates: &[Candidate], now: Duration) -> Vec<usize> {
        let p = &self.params;
        let slack = 1.0 + p.headroom;
        let queue_limit = p.queue_depth_threshold as f64 * slack;
        let kv_limit = p.kv_cache_util_threshold * slack;
        let kept: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                self.fresh(c, now)
                    .is_some_and(|(queue, kv)| queue < queue_limit && kv < kv_limit)
            })
            .map(|(i, _)| i)
            .collect();
        if kept.is_empty() {
            (0..candidates.len()).collect()
        } else {
            kept
        }
    }

    /// `(waiting queue, kv use)` if the metrics are no older than the threshold.
    fn fresh(&self, candidate: &Candidate, now: Duration) -> Option<(f64, f64)> {
        let age = candidate.metrics_age(now)?;
        let m = candidate.metrics.as_ref()?;
        (age <= self.params.metrics_staleness_threshold)
            .then_some((m.waiting_queue_size as f64, m.kv_cache_usage))
    }
}

/// GIE's legacy admission rule: a request is sheddable when its priority is below 0,
/// and shed (429) when sheddable and the pool is saturated. Priority ≥ 0 is never shed.
pub fn should_shed(priority: i32, saturation: f64) -> bool {
    priority < 0 && saturation >= 1.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::epp::endpoint::{Endpoint, EndpointMetrics};

    const NOW: Duration = Duration::from_secs(10);

    /// A candidate with `queue` waiting, `kv` use, metrics `age_ms` old; `None` for
    /// no metrics.
    fn candidate(metrics: Option<(u64, f64, u64)>) -> Candidate {
        Candidate {
            endpoint: Arc::new(Endpoint {
                name: "e".into(),
                address: "127.0.0.1:8000".parse().unwrap(),
            }),
            metrics: metrics.map(|(queue, kv, age_ms)| EndpointMetrics {
                waiting_queue_size: queue,
                kv_cache_usage: kv,
                updated_at: NOW - Duration::from_millis(age_ms),
                ..EndpointMetrics::default()
            }),
            in_flight: 100,
            sent_since_scrape: 100,
        }
    }

    fn detector() -> UtilizationDetector {
        UtilizationDetector::new(UtilizationDetectorParams::default()).unwrap()
    }

    fn check(metrics: &[Option<(u64, f64, u64)>], want: f64) {
        let candidates: Vec<_> = metrics.iter().copied().map(candidate).collect();
        let got = detector().saturation(&candidates, NOW);
        assert!((got - want).abs() < 1e-12, "{metrics:?}: {got} != {want}");
    }

    #[test]
    fn saturation_table() {
        check(&[], 1.0);
        check(&[Some((0, 0.0, 0))], 0.0);
        check(&[Some((5, 0.0, 0))], 1.0);
        check(&[Some((1, 0.4, 0))], 0.5);
        check(&[Some((10, 0.4, 0))], 2.0);
        check(&[Some((0, 0.8, 200))], 1.0);
        check(&[Some((0, 0.0, 200))], 0.0);
        check(&[Some((0, 0.0, 201))], 1.0);
        check(&[None], 1.0);
        check(&[Some((0, 0.0, 0)), None], 0.5);
        check(&[Some((2, 0.2, 0)), Some((0, 0.6, 50))], (0.4 + 0.75) / 2.0);
    }

    #[test]
    fn shedding_rule() {
        assert!(should_shed(-1, 1.0));
        assert!(should_shed(-5, 3.0));
        assert!(!should_shed(-1, 0.999));
        assert!(!should_shed(0, 10.0));
        assert!(!should_shed(2, 10.0));
    }

    #[test]
    fn filter_keeps_unsaturated_and_fails_open() {
        let d = detector();
        let cs: Vec<_> = [
            Some((4, 0.79, 0)),
            Some((5, 0.1, 0)),
            Some((0, 0.8, 0)),
            Some((0, 0.0, 500)),
            None,
        ]
        .into_iter()
        .map(candidate)
        .collect();
        assert_eq!(d.filter(&cs, NOW), [0]);
        assert_eq!(d.filter(&cs[1..], NOW), [0, 1, 2, 3]);
        let roomy = UtilizationDetector::new(UtilizationDetectorParams {
            headroom: 0.5,
            ..UtilizationDetectorParams::default()
        })
        .unwrap();
        assert_eq!(roomy.filter(&cs, NOW), [0, 1, 2]);
    }

    #[test]
    fn parameters_parse_with_gie_names_and_are_validated() {
        let p: UtilizationDetectorParams = serde_saphyr::from_str(
            "queueDepthThreshold: 10\nkvCacheUtilThreshold: 0.9\nmetricsStalenessThreshold: 1s\n",
        )
        .unwrap();
        assert_eq!(p.queue_depth_threshold, 10);
        assert_eq!(p.metrics_staleness_threshold, Duration::from_secs(1));
        assert_eq!(p.headroom, 0.0);
        let defaults: UtilizationDetectorParams = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(defaults, UtilizationDetectorParams::default());
        assert!(serde_saphyr::from_str::<UtilizationDetectorParams>("queueDepth: 1").is_err());
        assert!(
            serde_saphyr::from_str::<UtilizationDetectorParams>("metricsStalenessThreshold: 5")
                .is_err()
        );

        let with = |f: fn(&mut UtilizationDetectorParams)| {
            let mut p = UtilizationDetectorParams::default();
            f(&mut p);
            p.validate().map_err(|e| e.field)
        };
        assert_eq!(with(|_| {}), Ok(()));
        assert_eq!(
            with(|p| p.queue_depth_threshold = 0),
            Err("queueDepthThreshold")
        );
        assert_eq!(
            with(|p| p.kv_cache_util_threshold = 0.0),
            Err("kvCacheUtilThreshold")
        );
        assert_eq!(
            with(|p| p.kv_cache_util_threshold = 1.5),
            Err("kvCacheUtilThreshold")
        );
        assert_eq!(
            with(|p| p.kv_cache_util_threshold = f64::NAN),
            Err("kvCacheUtilThreshold")
        );
        assert_eq!(with(|p| p.kv_cache_util_threshold = 1.0), Ok(()));
        assert_eq!(
            with(|p| p.metrics_staleness_threshold = Duration::ZERO),
            Err("metricsStalenessThreshold")
        );
        assert_eq!(with(|p| p.headroom = -0.1), Err("headroom"));
        let err = UtilizationDetector::new(UtilizationDetectorParams {
            headroom: -1.0,
            ..UtilizationDetectorParams::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "parameter `headroom`: must be >= 0");
    }
}

//! Admission by saturation (gie-facts §5.1): GIE's legacy rule sheds a sheddable
//! request (priority below 0) when the pool is saturated; requests with priority 0 or
//! more are never shed.
//!
//! How saturated a set of candidates is comes from the configured detector, one of
//! GIE's two, each also a filter when a profile names it:
//!
//! - `utilization-detector` (the default): `mean over candidates of max(queue /
//!   queueDepthThreshold, kv / kvCacheUtilThreshold)`, stale or missing metrics count
//!   1.0, no candidates 1.0. Faithful to GIE on purpose: it reads scraped metrics
//!   only, not the picker's own in-flight counts.
//! - `concurrency-detector`: the picker's own in-flight requests (or their estimated
//!   tokens) over the pool's configured capacity.
//!
//! Pure: no I/O, no clock, no state.

use std::sync::Arc;
use std::time::Duration;

pub use super::scheduler::plugins::concurrency::{
    ConcurrencyDetector, ConcurrencyMode, ConcurrencyParams,
};
pub use super::scheduler::plugins::utilization::{UtilizationDetector, UtilizationParams};
use crate::epp::endpoint::Candidate;
use crate::epp::scheduler::Filter;

/// The configured saturation detector.
#[derive(Clone, Debug)]
pub enum Detector {
    Utilization(Arc<UtilizationDetector>),
    Concurrency(Arc<ConcurrencyDetector>),
}

impl Default for Detector {
    /// GIE's default: `utilization-detector` with its default parameters.
    fn default() -> Detector {
        Detector::Utilization(Arc::default())
    }
}

impl Detector {
    /// The pool's saturation over `candidates` at `now`; saturated means ≥ 1.0.
    pub fn saturation(&self, candidates: &[Candidate], now: Duration) -> f64 {
        match self {
            Detector::Utilization(d) => d.saturation(candidates, now),
            Detector::Concurrency(d) => d.saturation(candidates),
        }
    }

    /// The detector in its filter role, for a profile that references it.
    pub fn filter(&self) -> Arc<dyn Filter> {
        match self {
            Detector::Utilization(d) => d.clone(),
            Detector::Concurrency(d) => d.clone(),
        }
    }
}

/// GIE's legacy admission rule: shed (429) when `priority < 0` and `saturation >= 1.0`.
pub fn should_shed(priority: i32, saturation: f64) -> bool {
    priority < 0 && saturation >= 1.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::epp::endpoint::Candidate;
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
            in_flight_tokens: 25_000,
            sent_since_scrape: 100,
        }
    }

    fn detector() -> UtilizationDetector {
        UtilizationDetector::new(UtilizationParams::default())
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
}

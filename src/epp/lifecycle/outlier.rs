//! Passive outlier detection, as Envoy's outlier detection does it: an endpoint whose
//! requests keep failing is taken out of rotation for a back-off, even while its
//! `/metrics` scrape succeeds (a server whose metrics are fine but whose inference
//! routes are broken would otherwise stay in rotation and fail its whole share).
//!
//! A failure is a 5xx response, a connection that failed or was reset before the
//! response, or no response in time; any other response resets the count. After
//! `consecutive_failures` failures in a row the endpoint is ejected for `base_ejection`
//! × the number of times it has been ejected (capped at `max_ejection`). At most
//! `max_ejected_percent` of the pool is out at once (at least one endpoint may be), so
//! a fault everywhere cannot empty the pool. Times are the pool clock's
//! [`Duration`]s; the state is atomics, shared by every snapshot like the load counters.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// When to eject an endpoint and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Failures in a row that eject an endpoint; 0 turns detection off. Envoy's
    /// `consecutive_5xx` default, 5.
    pub consecutive_failures: u32,
    /// The first ejection's length; Envoy's `base_ejection_time` default, 30 s.
    pub base_ejection: Duration,
    /// The longest ejection; Envoy's `max_ejection_time` default, 300 s.
    pub max_ejection: Duration,
    /// The largest share of the pool ejected at once, percent. Higher than Envoy's
    /// 10 % default: model-server pools are small (4 replicas), and at 10 % Envoy
    /// could eject none but one.
    pub max_ejected_percent: u8,
}

impl Default for OutlierPolicy {
    fn default() -> OutlierPolicy {
        OutlierPolicy {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

impl OutlierPolicy {
    /// Detection turned off.
    pub fn off() -> OutlierPolicy {
        OutlierPolicy {
            consecutive_failures: 0,
            ..OutlierPolicy::default()
        }
    }

    /// How many of `endpoints` may be ejected at once: the configured share, at least 1.
    pub fn max_ejected(&self, endpoints: usize) -> usize {
        (endpoints * usize::from(self.max_ejected_percent.min(100)) / 100).max(1)
    }
}

/// One endpoint's failure streak and ejection.
#[derive(Debug, Default)]
pub struct OutlierState {
    failures: AtomicU32,
    /// Times this endpoint was ejected (the back-off multiplier).
    ejections: AtomicU32,
    /// Ejected until this time, nanoseconds of the pool clock; 0 = never ejected.
    ejected_until: AtomicU64,
}

impl OutlierState {
    /// Ejected at `now`.
    pub fn ejected(&self, now: Duration) -> bool {
        self.ejected_for(now).is_some()
    }

    /// How much longer the ejection lasts at `now`, if ejected.
    pub fn ejected_for(&self, now: Duration) -> Option<Duration> {
        let until = Duration::from_nanos(self.ejected_until.load(Ordering::Relaxed));
        (until > now).then(|| until - now)
    }

    /// A request succeeded (the endpoint answered below 500): the streak ends.
    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// A request failed at `now`. Ejects the endpoint when the streak reaches the
    /// policy's threshold and `may_eject()` agrees (the pool's share is not used up);
    /// returns the ejection's length when it does.
    pub fn record_failure(
        &self,
        now: Duration,
        policy: &OutlierPolicy,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        if policy.consecutive_failures == 0 || self.ejected(now) {
            return None;
        }
        let streak = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < policy.consecutive_failures || !may_eject() {
            return None;
        }
        self.failures.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = policy
            .base_ejection
            .saturating_mul(n)
            .min(policy.max_ejection);
        let until = now.saturating_add(length);
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.ejected_until.store(nanos, Ordering::Relaxed);
        Some(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_streak_ejects_for_a_growing_back_off_and_success_resets_it() {
        let policy = OutlierPolicy {
            consecutive_failures: 3,
            base_ejection: 10 * S,
            max_ejection: 25 * S,
            max_ejected_percent: 50,
        };
        let state = OutlierState::default();
        let fail = |now| state.record_failure(now, &policy, || true);
        assert_eq!((fail(S), fail(S)), (None, None));
        state.record_success();
        assert_eq!((fail(S), fail(S)), (None, None), "the streak restarted");
        assert_eq!(fail(S), Some(10 * S));
        assert!(state.ejected(5 * S) && !state.ejected(11 * S));
        assert_eq!(fail(5 * S), None, "failures while ejected do not count");
        for _ in 0..2 {
            assert_eq!(fail(12 * S), None);
        }
        assert_eq!(fail(12 * S), Some(20 * S), "second ejection: twice as long");
        for _ in 0..2 {
            assert_eq!(fail(40 * S), None);
        }
        assert_eq!(fail(40 * S), Some(25 * S), "capped");
    }

    #[test]
    fn the_pool_share_and_the_off_switch_are_respected() {
        let state = OutlierState::default();
        let policy = OutlierPolicy {
            consecutive_failures: 1,
            ..OutlierPolicy::default()
        };
        assert_eq!(state.record_failure(S, &policy, || false), None);
        assert!(!state.ejected(S));
        assert_eq!(
            state.record_failure(S, &OutlierPolicy::off(), || true),
            None
        );
        assert_eq!(policy.max_ejected(4), 2);
        assert_eq!(policy.max_ejected(1), 1, "at least one");
    }
}

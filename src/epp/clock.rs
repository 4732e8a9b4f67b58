//! Time as the picker's background tasks see it.
//!
//! The scheduler never reads a clock (DESIGN invariant 1); the tasks around it (scrape,
//! admission) take a [`Clock`] so tests and the virtual-time benchmark can control
//! time. Times are [`Duration`]s since the clock's epoch, the convention of
//! [`EndpointMetrics::updated_at`](super::endpoint::EndpointMetrics::updated_at).
//!
//! Nothing here sleeps or spawns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A source of "now", as a duration since a fixed epoch.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Duration;
}

/// tokio's monotonic clock from when the value was made. It follows tokio's paused
/// test clock, so `tokio::time::advance` moves it.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> TokioClock {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> TokioClock {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock that moves only when told to (tests, virtual time). Nanosecond resolution.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn new(now: Duration) -> ManualClock {
        let clock = ManualClock::default();
        clock.set(now);
        clock
    }

    pub fn set(&self, now: Duration) {
        let nanos = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now().saturating_add(by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Duration::from_secs(1));
        assert_eq!(clock.now(), Duration::from_secs(1));
        clock.advance(Duration::from_millis(50));
        assert_eq!(clock.now(), Duration::from_millis(1050));
    }
}

//! When requests are sent: arrival processes and load stages.
//!
//! A stage asks for `rate` requests per second for `duration`; the arrival process
//! turns that into send times from the stage's start. Poisson arrivals (exponential
//! gaps, what LPG and inference-perf's `poisson` load send) are the default; constant
//! arrivals are evenly spaced. Rates and times are in the pool's time: a live run at
//! `--speedup 10` sends them ten times faster on the wall clock.
//!
//! Seeded and pure: the same stage and seed give the same times.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

/// How send times are spread within a stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalProcess {
    /// Exponentially distributed gaps with mean `1 / rate`.
    #[default]
    Poisson,
    /// A request every `1 / rate` seconds, the first at the stage's start.
    Constant,
    /// The arrival times of a `trace` workload, its timeline scaled so each stage gets
    /// its `rate` (the plan reads them from the trace; [`ArrivalProcess::schedule`]
    /// has none to give).
    Trace,
}

/// One load level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    /// Requests per second asked for; > 0.
    pub rate: f64,
    /// How long requests are sent; > 0. The stage ends when its last response does.
    pub duration: Duration,
}

impl ArrivalProcess {
    /// Send times within `stage`, from its start, in order; every one is before
    /// `stage.duration`.
    pub fn schedule(self, stage: Stage, seed: u64) -> Vec<Duration> {
        let end = stage.duration.as_secs_f64();
        if stage.rate <= 0.0 || !stage.rate.is_finite() || end <= 0.0 {
            return Vec::new();
        }
        match self {
            ArrivalProcess::Trace => Vec::new(),
            ArrivalProcess::Constant => {
                let n = (end * stage.rate).ceil() as u64;
                (0..n)
                    .map(|i| i as f64 / stage.rate)
                    .filter(|&t| t < end)
                    .map(Duration::from_secs_f64)
                    .collect()
            }
            ArrivalProcess::Poisson => {
                let mut rng = StdRng::seed_from_u64(seed);
                let gaps = Exp::new(stage.rate).expect("a positive, finite rate");
                let mut times = Vec::with_capacity((end * stage.rate * 1.1) as usize + 8);
                let mut t = 0.0;
                loop {
                    t += gaps.sample(&mut rng);
                    if t >= end {
                        break times;
                    }
                    times.push(Duration::from_secs_f64(t));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(rate: f64, secs: u64) -> Stage {
        Stage {
            rate,
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced_within_the_stage() {
        let t = ArrivalProcess::Constant.schedule(stage(4.0, 2), 0);
        assert_eq!(t.len(), 8);
        assert_eq!(t[0], Duration::ZERO);
        assert_eq!(t[1], Duration::from_millis(250));
        assert_eq!(t[7], Duration::from_millis(1750));
    }

    #[test]
    fn poisson_arrivals_have_the_rate_and_are_seeded() {
        let a = ArrivalProcess::Poisson.schedule(stage(200.0, 100), 1);
        let n = a.len() as f64;
        // 20,000 expected; the standard deviation is √20,000 ≈ 141.
        assert!((n - 20_000.0).abs() < 600.0, "{n}");
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(a.last().unwrap() < &Duration::from_secs(100));
        assert_eq!(a, ArrivalProcess::Poisson.schedule(stage(200.0, 100), 1));
        assert_ne!(a, ArrivalProcess::Poisson.schedule(stage(200.0, 100), 2));
        // Gaps are exponential: their coefficient of variation is 1.
        let gaps: Vec<f64> = a.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((var.sqrt() / mean - 1.0).abs() < 0.05);
    }

    #[test]
    fn empty_stages_send_nothing() {
        assert!(
            ArrivalProcess::Poisson
                .schedule(stage(0.0, 10), 0)
                .is_empty()
        );
        assert!(
            ArrivalProcess::Constant
                .schedule(stage(5.0, 0), 0)
                .is_empty()
        );
    }
}

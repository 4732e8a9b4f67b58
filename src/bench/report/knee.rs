//! Where a strategy stops keeping up: the highest stage of a sweep up to which it
//! serves the load within the scenario's SLOs.
//!
//! A router earns its keep near the pool's knee: below it every strategy is fast,
//! far above it every replica queues and no placement helps. Comparing strategies at
//! the highest stage where the baseline (what a Kubernetes Service does) still keeps
//! up is the number an operator sizing a pool wants. "Keeps up" is measured, not
//! guessed: at least [`KEEPS_UP_GOODPUT_PERCENT`] of the baseline's requests meet
//! every SLO the scenario sets (its goodput), at that stage and every lower one.
//! Without SLOs there is no such stage to find.
//!
//! The same walk over every other strategy gives the second number an operator wants:
//! how much more load the pool serves within the SLOs behind that router, which is
//! what smart routing saves in replicas. Its resolution is the sweep's step.

use serde::Serialize;

use super::{BenchReport, StageReport};

/// The goodput (% of requests meeting every SLO, failures included) at or above
/// which the baseline keeps up with a stage: the p90 of each constrained latency is
/// then within its SLO, the percentile the GIE benchmark reports.
pub const KEEPS_UP_GOODPUT_PERCENT: f64 = 90.0;

/// How far up the sweep the baseline keeps up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Knee<'a> {
    /// The scenario sets no SLO (or the baseline did not run).
    Unknown,
    /// Not even at the lowest stage; its goodput there, %.
    Never {
        lowest: &'a StageReport,
        goodput_percent: f64,
    },
    /// Up to `stage` (and at every lower one); `every_stage` when that is the highest.
    UpTo {
        stage: &'a StageReport,
        goodput_percent: f64,
        every_stage: bool,
    },
}

/// [`Knee::UpTo`] as `summary.json` states it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeepsUp {
    pub strategy: String,
    /// 0-based index of the highest stage it keeps up with.
    pub stage: usize,
    /// That stage's requested rate, req/s.
    pub rate: f64,
    /// Its goodput there, %.
    pub goodput_percent: f64,
    /// It kept up with the highest stage too: the sweep never found its knee.
    pub every_stage: bool,
    /// The goodput threshold used, %.
    pub threshold_percent: f64,
}

impl BenchReport {
    /// How far up the sweep, in rate order, the baseline keeps up (see the module).
    pub fn knee(&self) -> Knee<'_> {
        self.knee_of(&self.baseline)
    }

    /// How far up the sweep, in rate order, `strategy` keeps up: the same walk as the
    /// baseline's, so the stages compare (`Unknown` if it did not run or there are no
    /// SLOs).
    pub fn knee_of(&self, strategy: &str) -> Knee<'_> {
        let stages = self.stages_by_rate();
        // The strategy's goodput at a stage, when its SLOs are set.
        let goodput = |stage: &StageReport| {
            let r = stage.result(strategy)?;
            r.summary.successes.goodput_metrics.as_ref()?;
            Some(r.summary.goodput.percent)
        };
        let Some(&lowest) = stages.first() else {
            return Knee::Unknown;
        };
        let Some(first) = goodput(lowest) else {
            return Knee::Unknown;
        };
        if first < KEEPS_UP_GOODPUT_PERCENT {
            return Knee::Never {
                lowest,
                goodput_percent: first,
            };
        }
        let mut knee = (lowest, first);
        for &stage in &stages[1..] {
            match goodput(stage) {
                Some(g) if g >= KEEPS_UP_GOODPUT_PERCENT => knee = (stage, g),
                _ => {
                    return Knee::UpTo {
                        stage: knee.0,
                        goodput_percent: knee.1,
                        every_stage: false,
                    };
                }
            }
        }
        Knee::UpTo {
            stage: knee.0,
            goodput_percent: knee.1,
            every_stage: true,
        }
    }

    /// [`BenchReport::knee`] for `summary.json`: `None` unless it is a stage.
    pub fn keeps_up(&self) -> Option<KeepsUp> {
        self.keeps_up_of(&self.baseline)
    }

    /// [`BenchReport::knee_of`] for `summary.json`: `None` unless it is a stage.
    pub fn keeps_up_of(&self, strategy: &str) -> Option<KeepsUp> {
        match self.knee_of(strategy) {
            Knee::UpTo {
                stage,
                goodput_percent,
                every_stage,
            } => Some(KeepsUp {
                strategy: strategy.to_string(),
                stage: stage.stage,
                rate: stage.rate,
                goodput_percent,
                every_stage,
                threshold_percent: KEEPS_UP_GOODPUT_PERCENT,
            }),
            Knee::Unknown | Knee::Never { .. } => None,
        }
    }
}

//! Where a strategy stops keeping up: the highest stage of a sweep up to which it
//! serves the load within the scenario's SLOs, and the lines the comparison prints
//! about it.
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

use super::table::{number, p90_e2e, p90_ntpot, rate, ratio_cell, ratio_text};
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
        let stages = self.comparable_stages();
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

/// With several stages and SLOs: how far up the sweep the baseline keeps up, and
/// each other strategy's p90 NTPOT and end-to-end ratios there, e.g. `random keeps up
/// to 625 req/s: …` then `at 625 req/s, epp igw-default p90 NTPOT is 0.70× random's,
/// p90 e2e 0.90×`.
pub(super) fn knee_lines(report: &BenchReport) -> Vec<String> {
    if report.comparable_stages().len() < 2 {
        return Vec::new();
    }
    let base = &report.baseline;
    let threshold = format!("{KEEPS_UP_GOODPUT_PERCENT:.0}");
    let (stage, mut lines) = match report.knee() {
        Knee::Unknown => return Vec::new(),
        Knee::Never {
            lowest,
            goodput_percent,
        } => {
            let mut lines = vec![format!(
                "{base} keeps up at no stage: fewer than {threshold}% of its requests meet \
                 every SLO even at {} req/s ({}%)",
                rate(lowest.rate),
                number(goodput_percent)
            )];
            lines.extend(capacity_lines(report, None));
            return lines;
        }
        Knee::UpTo {
            stage,
            goodput_percent,
            every_stage,
        } => {
            let line = match every_stage {
                true => format!(
                    "{base} keeps up at every stage: at least {threshold}% of its requests \
                     meet every SLO up to {} req/s ({}%)",
                    rate(stage.rate),
                    number(goodput_percent)
                ),
                false => format!(
                    "{base} keeps up to {} req/s: the highest stage where at least \
                     {threshold}% of its requests meet every SLO ({}%)",
                    rate(stage.rate),
                    number(goodput_percent)
                ),
            };
            (stage, vec![line])
        }
    };
    let baseline = stage.result(base);
    for s in report.strategies.iter().filter(|s| *s != base) {
        let r = stage.result(s);
        lines.push(format!(
            "at {} req/s, {s} p90 NTPOT is {} {base}'s, p90 e2e {}",
            rate(stage.rate),
            ratio_cell(r, baseline, p90_ntpot),
            ratio_cell(r, baseline, p90_e2e)
        ));
    }
    lines.extend(capacity_lines(report, Some(stage.rate)));
    lines
}

/// How far up the sweep each other strategy keeps up within the SLOs, against the
/// baseline's `base_rate` (req/s) when it keeps up somewhere, e.g. `epp igw-default
/// keeps up to 650 req/s within the SLOs (1.04× random's 625 req/s)`.
fn capacity_lines(report: &BenchReport, base_rate: Option<f64>) -> Vec<String> {
    let base = &report.baseline;
    let mut lines = Vec::new();
    for s in report.strategies.iter().filter(|s| *s != base) {
        let line = match report.knee_of(s) {
            Knee::Unknown => continue,
            Knee::Never {
                lowest,
                goodput_percent,
            } => format!(
                "{s} keeps up at no stage within the SLOs ({}% at {} req/s)",
                number(goodput_percent),
                rate(lowest.rate)
            ),
            // Its knee is past the sweep: the ratio is a lower bound.
            Knee::UpTo {
                stage,
                every_stage: true,
                ..
            } => match base_rate {
                Some(b) if b > 0.0 => format!(
                    "{s} keeps up at every stage within the SLOs, up to {} req/s (at \
                     least {} {base}'s {} req/s; the sweep does not reach its knee)",
                    rate(stage.rate),
                    ratio_text(stage.rate / b),
                    rate(b)
                ),
                _ => format!(
                    "{s} keeps up at every stage within the SLOs, up to {} req/s (the \
                     sweep does not reach its knee)",
                    rate(stage.rate)
                ),
            },
            Knee::UpTo { stage, .. } => match base_rate {
                Some(b) if b > 0.0 => format!(
                    "{s} keeps up to {} req/s within the SLOs ({} {base}'s {} req/s)",
                    rate(stage.rate),
                    ratio_text(stage.rate / b),
                    rate(b)
                ),
                _ => format!("{s} keeps up to {} req/s within the SLOs", rate(stage.rate)),
            },
        };
        lines.push(line);
    }
    lines
}

//! A benchmark's results and how they are shown: the [`BenchReport`] every mode
//! produces, the side-by-side comparison table printed at the end, and the files
//! written to the output directory (JSON with inference-perf's lifecycle-summary
//! names, SVG charts).
//!
//! - `table`: [`comparison_table`], the strategies side by side with ratios to the
//!   baseline.
//! - `files`: [`write()`], `summary.json`, per-strategy lifecycle-metrics files and
//!   the charts.
//! - `chart`: the SVG charts.
//! - `knee`: how far up a sweep the baseline keeps up within the SLOs.
//!
//! A virtual run's report holds nothing that depends on the wall clock or the machine
//! (no dates, no durations of the run itself), so the same scenario and seed give the
//! same files, byte for byte.

use serde::Serialize;

use super::interrupt::Interrupted;
use super::plan::StagePlan;
use super::recorder::{RecordSpool, RunSummary, StageRecorders, StageSummary};
use super::scenario::Scenario;

mod adapters;
mod chart;
mod files;
mod knee;
mod table;
#[cfg(test)]
mod tests;

pub use files::write;
pub use knee::{KEEPS_UP_GOODPUT_PERCENT, KeepsUp, Knee};
pub use table::comparison_table;

/// Everything a run measured, per stage and strategy.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub scenario: String,
    pub description: String,
    /// `virtual`, `live` or `target`.
    pub mode: String,
    pub seed: u64,
    pub pool: PoolInfo,
    /// The strategy the ratios compare with.
    pub baseline: String,
    /// Strategy names in column order.
    pub strategies: Vec<String>,
    pub stages: Vec<StageReport>,
    /// One per strategy, in [`BenchReport::strategies`] order: every stage back to
    /// back, written as inference-perf's `summary_lifecycle_metrics.json` and its
    /// per-adapter files (not part of `summary.json`, whose stages already say it all).
    #[serde(skip)]
    pub overall: Vec<RunSummary>,
    /// One per strategy when the scenario asks for the per-request report (else
    /// empty): its requests on disk, one spool per stage in stage order.
    #[serde(skip)]
    pub per_request: Vec<Vec<RecordSpool>>,
    /// Set when Ctrl-C stopped a live or target run: where it stopped. The stages then
    /// hold only the jobs that ran, the last of them cut short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
}

/// What one job measured: its result and the recorders behind it, kept until the
/// run's overall summaries have been made.
pub struct Measured {
    pub result: StrategyResult,
    pub recorders: StageRecorders,
    /// Every request's record, on disk, when the scenario asks for the per-request
    /// report.
    pub per_request: Option<RecordSpool>,
}

/// The pool the run used (as the scenario stated it; `target` runs know only the URL).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolInfo {
    pub replicas: usize,
    pub model: String,
    /// The simulator's latency profile.
    pub profile: String,
    /// Live mode's time compression; 1 in virtual mode. Reported times are pool time.
    pub speedup: f64,
    /// A mixed pool's groups of replicas, in endpoint order (empty for a pool of one
    /// shape); `profile` then lists them, e.g. `5 × h100-llama3-8b + 5 × a100-llama3-8b`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<PoolGroup>,
}

/// One group of a mixed pool: `replicas` replicas of `profile`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolGroup {
    pub replicas: usize,
    pub profile: String,
}

impl PoolInfo {
    /// The pool as headings state it: `4 × h100-llama3-8b`, or a mixed pool's groups
    /// as `profile` lists them (`5 × h100-llama3-8b + 5 × a100-llama3-8b`).
    pub fn shape(&self) -> String {
        match self.groups.is_empty() {
            true => format!("{} × {}", self.replicas, self.profile),
            false => self.profile.clone(),
        }
    }
}

/// One load level, every strategy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageReport {
    /// 0-based.
    pub stage: usize,
    /// Requests per second asked for.
    pub rate: f64,
    pub duration_seconds: f64,
    /// One per strategy that ran, in [`BenchReport::strategies`] order (all of them
    /// unless the run was interrupted).
    pub results: Vec<StrategyResult>,
}

/// One strategy's measurements in one stage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StrategyResult {
    pub strategy: String,
    /// inference-perf's lifecycle summary for the stage.
    #[serde(flatten)]
    pub summary: StageSummary,
    /// Requests each endpoint served, in endpoint order (empty when unknown).
    pub requests_per_endpoint: Vec<u64>,
    /// Each endpoint's preemptions over the stage (vLLM's `vllm:num_preemptions_total`
    /// of a pool that started cold), in endpoint order; empty when unknown (`target`).
    /// A replica preempts when its KV cache is full, so these show where a router
    /// overloaded one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preemptions_per_endpoint: Vec<u64>,
    /// Live and target runs: how late the client sent against its schedule. Large
    /// values mean the load generator, not the routers, shaped the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<SendLag>,
}

/// Send-schedule lag (p99, wall ms) above which a live client shaped a result as much
/// as the routers did: the machine was too busy to send on time, and so, most likely,
/// to run the simulators on their modelled timeline.
pub const SEND_LAG_WARN_MS: f64 = 5.0;

/// The client's send-schedule lag over one stage, milliseconds of wall time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SendLag {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl BenchReport {
    /// Assembles a run's report: `rows[i]` holds stage `i`'s results, one per
    /// strategy in `strategies` order, `None` for a job that did not run. Every mode
    /// builds its report here.
    pub fn from_rows(
        scenario: &Scenario,
        plans: &[StagePlan],
        mode: &str,
        pool: PoolInfo,
        strategies: Vec<String>,
        rows: Vec<Vec<Option<Measured>>>,
    ) -> BenchReport {
        // Stage order, so the same run appends the same way (failure messages keep
        // the order they were first seen in).
        let slo = scenario.slo.slo();
        let mut overall: Vec<StageRecorders> = strategies
            .iter()
            .map(|_| StageRecorders::new(slo.clone()))
            .collect();
        let mut per_request: Vec<Vec<RecordSpool>> = if scenario.output.per_request {
            strategies.iter().map(|_| Vec::new()).collect()
        } else {
            Vec::new()
        };
        let stages = plans
            .iter()
            .zip(rows)
            .map(|(plan, row)| StageReport {
                stage: plan.index,
                rate: plan.stage.rate,
                duration_seconds: plan.stage.duration.as_secs_f64(),
                results: row
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, m)| Some((i, m?)))
                    .map(|(i, mut m)| {
                        overall[i].append(&m.recorders);
                        if let (Some(spools), Some(spool)) =
                            (per_request.get_mut(i), m.per_request.take())
                        {
                            spools.push(spool);
                        }
                        m.result
                    })
                    .collect(),
            })
            .collect();
        let baseline = if mode == "target" {
            "target".to_string()
        } else {
            scenario.baseline_name()
        };
        BenchReport {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            mode: mode.into(),
            seed: scenario.seed,
            pool,
            baseline,
            strategies,
            stages,
            overall: overall.iter().map(StageRecorders::run_summary).collect(),
            per_request,
            interrupted: None,
        }
    }

    /// The result of `strategy` in stage `stage`, if both exist.
    pub fn result(&self, stage: usize, strategy: &str) -> Option<&StrategyResult> {
        self.stages.get(stage)?.result(strategy)
    }

    /// [`BenchReport::stages_by_rate`] where every strategy ran the whole stage: all
    /// of them, unless Ctrl-C stopped the run. The comparisons across strategies
    /// (headline, knee, capacity) use only these.
    pub fn comparable_stages(&self) -> Vec<&StageReport> {
        self.stages_by_rate()
            .into_iter()
            .filter(|s| self.is_comparable(s))
            .collect()
    }

    /// Whether every strategy ran the whole of `stage` (see
    /// [`BenchReport::comparable_stages`]).
    pub fn is_comparable(&self, stage: &StageReport) -> bool {
        let cut = self
            .interrupted
            .as_ref()
            .is_some_and(|i| i.stage == stage.stage && i.sent < i.planned);
        !cut && stage.results.len() == self.strategies.len()
    }

    /// The stages with a finite requested rate and at least one result (every stage
    /// unless the run was interrupted), lowest rate first (ties in run order): the x
    /// axis of every sweep view.
    pub fn stages_by_rate(&self) -> Vec<&StageReport> {
        let mut stages: Vec<&StageReport> = self
            .stages
            .iter()
            .filter(|s| s.rate.is_finite() && !s.results.is_empty())
            .collect();
        stages.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        stages
    }
}

impl StageReport {
    /// The result of `strategy` in this stage, if it ran.
    pub fn result(&self, strategy: &str) -> Option<&StrategyResult> {
        self.results.iter().find(|r| r.strategy == strategy)
    }
}

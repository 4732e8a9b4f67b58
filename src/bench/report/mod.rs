//! A benchmark's results and how they are shown: the [`BenchReport`] every mode
//! produces, the side-by-side comparison table printed at the end, and the files
//! written to the output directory (JSON with inference-perf's lifecycle-summary
//! names, SVG charts).
//!
//! A virtual run's report holds nothing that depends on the wall clock or the machine
//! (no dates, no durations of the run itself), so the same scenario and seed give the
//! same files, byte for byte.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::recorder::StageSummary;

/// Everything a run measured, per stage and strategy.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
}

/// One load level, every strategy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageReport {
    /// 0-based.
    pub stage: usize,
    /// Requests per second asked for.
    pub rate: f64,
    pub duration_seconds: f64,
    /// One per strategy, in [`BenchReport::strategies`] order.
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
}

impl BenchReport {
    /// The result of `strategy` in stage `stage`, if both exist.
    pub fn result(&self, stage: usize, strategy: &str) -> Option<&StrategyResult> {
        self.stages
            .get(stage)?
            .results
            .iter()
            .find(|r| r.strategy == strategy)
    }
}

/// The comparison table printed after a run.
pub fn comparison_table(report: &BenchReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// Writes the report's files into `dir` (created if missing) and returns their paths.
pub fn write(report: &BenchReport, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("summary.json");
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&path, json + "\n")?;
    Ok(vec![path])
}

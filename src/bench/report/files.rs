//! The files a report writes into its output directory:
//!
//! - `summary.json`: the whole [`BenchReport`], pretty-printed, with
//!   `baseline_keeps_up` (the highest stage the baseline keeps up with, see
//!   [`super::Knee`]) and `keeps_up` (the same for every strategy that keeps up with
//!   at least the lowest stage, in strategy order).
//! - `<strategy>/stage_<N>_lifecycle_metrics.json`: one strategy's
//!   [`StageSummary`](crate::bench::recorder::StageSummary) for stage `N` (0-based),
//!   as inference-perf names its per-stage files, so its tooling reads them.
//! - `<strategy>/summary_lifecycle_metrics.json`: the same over every stage, as
//!   inference-perf's run summary. Each stage runs on a cold pool of its own, so the
//!   run's time base is the stages back to back (the sum of their spans), where
//!   inference-perf measures one server from the first send to the last response.
//! - `<strategy>/adapter_<name>_lifecycle_metrics.json`: the run summary of the
//!   requests that named LoRA adapter `<name>` (characters unsafe in a file name as
//!   `-`), as inference-perf's per-adapter reports.
//! - `<strategy>/per_request_lifecycle_metrics.json`, when the scenario sets
//!   `output.per_request`: one record per request, stage after stage, as
//!   inference-perf's per-request report (see
//!   [`RequestLifecycle`](crate::bench::recorder::RequestLifecycle)); one record per
//!   line.
//! - `latency_vs_qps.svg`, `throughput_vs_qps.svg` and `ratio_vs_qps.svg`: every
//!   strategy against the requested rate (see `chart.rs`).
//!
//! `<strategy>` is a slug of the strategy's name (`epp igw-default` →
//! `epp-igw-default`), made unique with a numeric suffix if two names slug alike.
//! Every file ends with a newline and holds nothing but the report, so the same
//! report writes the same bytes.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{BenchReport, KeepsUp, chart};
use crate::bench::recorder::RecordSpool;

/// `summary.json`: the report, and how far up the sweep the baseline kept up within
/// the SLOs (`null` without SLOs, or when it kept up with no stage), then each
/// strategy that kept up somewhere.
#[derive(Serialize)]
struct SummaryFile<'a> {
    #[serde(flatten)]
    report: &'a BenchReport,
    baseline_keeps_up: Option<KeepsUp>,
    keeps_up: Vec<KeepsUp>,
}

/// Pretty JSON with a trailing newline.
fn json<T: Serialize>(value: &T) -> io::Result<String> {
    let mut text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    text.push('\n');
    Ok(text)
}

/// `spools`' records, in order, as one JSON array with one compact record per line:
/// a long run's per-request file is still valid JSON for any reader, and a
/// line-oriented tool can read it record by record. Copied through a buffer, never
/// whole in memory.
fn put_records(
    path: PathBuf,
    spools: &[RecordSpool],
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(&path)?);
    out.write_all(b"[")?;
    let mut first = true;
    for spool in spools {
        spool.copy_into(&mut out, &mut first)?;
    }
    out.write_all(b"\n]\n")?;
    out.flush()?;
    written.push(path);
    Ok(())
}

fn put(path: PathBuf, text: &str, written: &mut Vec<PathBuf>) -> io::Result<()> {
    std::fs::write(&path, text)?;
    written.push(path);
    Ok(())
}

/// A file-name-safe form of a strategy name: lowercase ASCII letters and digits,
/// runs of anything else as one `-`.
pub(super) fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches(['-', '.']).to_string();
    if out.is_empty() {
        "strategy".into()
    } else {
        out
    }
}

/// `name` with anything but ASCII letters, digits, `.`, `_` and `-` as `-` (case
/// kept, so an adapter's file names it as it is named).
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// One distinct slug per strategy, in order.
pub(super) fn slugs(names: &[String]) -> Vec<String> {
    let mut taken: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let base = slug(name);
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        taken.push(candidate);
    }
    taken
}

/// Writes the report's files into `dir` (created if missing) and returns their paths.
pub fn write(report: &BenchReport, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let summary = SummaryFile {
        report,
        baseline_keeps_up: report.keeps_up(),
        keeps_up: report
            .strategies
            .iter()
            .filter_map(|s| report.keeps_up_of(s))
            .collect(),
    };
    put(dir.join("summary.json"), &json(&summary)?, &mut written)?;
    let folders = report.strategies.iter().zip(slugs(&report.strategies));
    for (i, (name, slug)) in folders.enumerate() {
        let folder = dir.join(slug);
        std::fs::create_dir_all(&folder)?;
        if let Some(overall) = report.overall.get(i) {
            put(
                folder.join("summary_lifecycle_metrics.json"),
                &json(&overall.all)?,
                &mut written,
            )?;
            for (adapter, summary) in &overall.by_adapter {
                put(
                    folder.join(format!(
                        "adapter_{}_lifecycle_metrics.json",
                        file_safe(adapter)
                    )),
                    &json(summary)?,
                    &mut written,
                )?;
            }
        }
        if let Some(records) = report.per_request.get(i) {
            let path = folder.join("per_request_lifecycle_metrics.json");
            put_records(path, records, &mut written)?;
        }
        for stage in &report.stages {
            let Some(result) = stage.result(name) else {
                continue;
            };
            put(
                folder.join(format!("stage_{}_lifecycle_metrics.json", stage.stage)),
                &json(&result.summary)?,
                &mut written,
            )?;
        }
    }
    put(
        dir.join("latency_vs_qps.svg"),
        &chart::latency_svg(report)?,
        &mut written,
    )?;
    put(
        dir.join("throughput_vs_qps.svg"),
        &chart::throughput_svg(report)?,
        &mut written,
    )?;
    put(
        dir.join("ratio_vs_qps.svg"),
        &chart::ratio_svg(report)?,
        &mut written,
    )?;
    Ok(written)
}

//! The comparison printed after a run: one table per stage with a row per metric and
//! a column per strategy, each value followed by its ratio to the baseline's
//! (`0.62×`; the baseline column shows the value only), then a headline comparing
//! p90 end-to-end latency at the highest stage, each strategy's best and worst stage,
//! and its ratios where the baseline stops keeping up ([`Knee`]). LoRA traffic adds a
//! table by adapter over the whole run.
//!
//! Plain text with no colours and no terminal-width detection, so the same report
//! prints the same bytes everywhere. Values that cannot be shown (NaN, a latency of
//! a stage with no successful request) print as `-`.

use comfy_table::{CellAlignment, Table, presets};

use super::adapters::adapter_table;
use super::knee::knee_lines;
use super::{BenchReport, SEND_LAG_WARN_MS, StageReport, StrategyResult};

/// One row of a stage table: its label (with units), how to read the value from a
/// result, and how to print it.
pub(super) struct Metric {
    pub label: &'static str,
    pub value: fn(&StrategyResult) -> Option<f64>,
    pub integer: bool,
}

/// A latency statistic, absent when no request succeeded (the histogram was empty).
fn latency(r: &StrategyResult, v: f64) -> Option<f64> {
    (r.summary.successes.count > 0).then_some(v)
}

/// The requests of the endpoint that served most, as a multiple of the mean over
/// endpoints: 1.00 is a perfectly even split. None when unknown or nothing was served.
fn busiest_replica(r: &StrategyResult) -> Option<f64> {
    let counts = &r.requests_per_endpoint;
    let total: u64 = counts.iter().sum();
    let most = *counts.iter().max()?;
    (total > 0).then(|| most as f64 * counts.len() as f64 / total as f64)
}

/// The rows of every stage table, in order.
pub(super) const METRICS: &[Metric] = &[
    Metric {
        label: "achieved (req/s)",
        value: |r| r.summary.load_summary.achieved_rate,
        integer: false,
    },
    Metric {
        label: "output (tok/s)",
        value: |r| Some(r.summary.successes.throughput.output_tokens_per_sec),
        integer: false,
    },
    Metric {
        label: "TTFT mean (ms)",
        value: |r| {
            latency(
                r,
                r.summary.successes.latency.time_to_first_token.mean * 1e3,
            )
        },
        integer: false,
    },
    Metric {
        label: "TTFT p90 (ms)",
        value: |r| latency(r, r.summary.successes.latency.time_to_first_token.p90 * 1e3),
        integer: false,
    },
    Metric {
        label: "NTPOT p90 (ms)",
        value: |r| {
            latency(
                r,
                r.summary
                    .successes
                    .latency
                    .normalized_time_per_output_token
                    .p90
                    * 1e3,
            )
        },
        integer: false,
    },
    Metric {
        label: "TPOT p90 (ms)",
        value: |r| {
            latency(
                r,
                r.summary.successes.latency.time_per_output_token.p90 * 1e3,
            )
        },
        integer: false,
    },
    Metric {
        label: "e2e p50 (s)",
        value: |r| latency(r, r.summary.successes.latency.request_latency.median),
        integer: false,
    },
    Metric {
        label: "e2e p90 (s)",
        value: |r| latency(r, r.summary.successes.latency.request_latency.p90),
        integer: false,
    },
    Metric {
        label: "prefix-cache hit (%)",
        value: |r| Some(r.summary.successes.prefix_cache_hit_rate * 100.0),
        integer: false,
    },
    Metric {
        label: "goodput (%)",
        value: |r| Some(r.summary.goodput.percent),
        integer: false,
    },
    Metric {
        label: "failures (requests)",
        value: |r| Some(r.summary.failures.count as f64),
        integer: true,
    },
    Metric {
        label: "busiest replica (× mean)",
        value: busiest_replica,
        integer: false,
    },
    Metric {
        label: "preemptions",
        value: |r| {
            (!r.preemptions_per_endpoint.is_empty())
                .then(|| r.preemptions_per_endpoint.iter().sum::<u64>() as f64)
        },
        integer: true,
    },
];

/// A value with about three significant digits, or `-` when it is not finite.
pub(super) fn number(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// A rate as the scenario would state it: `20`, `2.5`, `0.25`.
pub(super) fn rate(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// `value / baseline`, when both are finite and the baseline is not zero.
pub(super) fn ratio(value: f64, baseline: f64) -> Option<f64> {
    let r = value / baseline;
    (value.is_finite() && baseline.is_finite() && baseline != 0.0 && r.is_finite()).then_some(r)
}

/// `0.62×`; ratios far from 1 keep fewer decimals.
pub(super) fn ratio_text(r: f64) -> String {
    if r.abs() >= 100.0 {
        format!("{r:.0}×")
    } else if r.abs() >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

fn cell(metric: &Metric, value: Option<f64>, baseline: Option<f64>, is_baseline: bool) -> String {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return "-".into();
    };
    let text = if metric.integer {
        format!("{v:.0}")
    } else {
        number(v)
    };
    if is_baseline {
        return text;
    }
    match baseline.and_then(|b| ratio(v, b)) {
        Some(r) => format!("{text} ({})", ratio_text(r)),
        None => text,
    }
}

/// `f` of `r` as a ratio of `f` of the baseline's result, or `-` when either is
/// missing or the ratio is not finite.
pub(super) fn ratio_cell(
    r: Option<&StrategyResult>,
    baseline: Option<&StrategyResult>,
    f: fn(&StrategyResult) -> Option<f64>,
) -> String {
    match (r.and_then(f), baseline.and_then(f)) {
        (Some(v), Some(b)) => ratio(v, b).map_or("-".into(), ratio_text),
        _ => "-".into(),
    }
}

/// One line per stage and strategy that had failures, saying why, e.g.
/// `failed at 5 req/s, target: 5 × connection - refused`.
fn failure_lines(report: &BenchReport) -> Vec<String> {
    let mut lines = Vec::new();
    for stage in &report.stages {
        for r in &stage.results {
            let labels = &r.summary.failures.by_label;
            if labels.is_empty() {
                continue;
            }
            let why: Vec<String> = labels
                .by_count()
                .iter()
                .map(|(label, c)| format!("{} × {label}", c.count))
                .collect();
            lines.push(format!(
                "failed at {} req/s, {}: {}",
                rate(stage.rate),
                r.strategy,
                why.join(", ")
            ));
        }
    }
    lines
}

/// The strategy column headings, the baseline's marked.
pub(super) fn strategy_headings(report: &BenchReport) -> impl Iterator<Item = String> + '_ {
    report.strategies.iter().map(|s| {
        if *s == report.baseline {
            format!("{s} (baseline)")
        } else {
            s.clone()
        }
    })
}

fn stage_table(report: &BenchReport, stage: &StageReport) -> String {
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    let mut header = vec![format!(
        "stage {} · {} req/s · {} s",
        stage.stage,
        rate(stage.rate),
        rate(stage.duration_seconds)
    )];
    header.extend(strategy_headings(report));
    table.set_header(header);
    let baseline = stage.result(&report.baseline);
    for metric in METRICS {
        let base = baseline.and_then(metric.value);
        let mut row = vec![metric.label.to_string()];
        for s in &report.strategies {
            let value = stage.result(s).and_then(metric.value);
            row.push(cell(metric, value, base, *s == report.baseline));
        }
        table.add_row(row);
    }
    for column in table.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    table.to_string()
}

/// A result's p90 NTPOT, seconds (none without successful requests).
pub(super) fn p90_ntpot(r: &StrategyResult) -> Option<f64> {
    let l = &r.summary.successes.latency;
    latency(r, l.normalized_time_per_output_token.p90)
}

/// A result's p90 end-to-end latency, seconds (none without successful requests).
pub(super) fn p90_e2e(r: &StrategyResult) -> Option<f64> {
    latency(r, r.summary.successes.latency.request_latency.p90)
}

/// With more than one stage, the sweep at a glance: a row per stage, a column per
/// strategy, each cell p90 NTPOT and p90 end-to-end latency (the blog-style
/// comparison), as ratios to the baseline's, whose column shows its values.
fn sweep_table(report: &BenchReport) -> Option<String> {
    if report.stages.len() < 2 {
        return None;
    }
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    let mut header = vec!["p90 NTPOT / p90 e2e".to_string()];
    header.extend(strategy_headings(report));
    table.set_header(header);
    for stage in &report.stages {
        let base = stage.result(&report.baseline);
        let mut row = vec![format!("{} req/s", rate(stage.rate))];
        for s in &report.strategies {
            let r = stage.result(s);
            let text = if *s == report.baseline {
                match (r.and_then(p90_ntpot), r.and_then(p90_e2e)) {
                    (Some(n), Some(e)) => format!("{} ms / {} s", number(n * 1e3), number(e)),
                    _ => "-".into(),
                }
            } else {
                format!(
                    "{} / {}",
                    ratio_cell(r, base, p90_ntpot),
                    ratio_cell(r, base, p90_e2e)
                )
            };
            row.push(text);
        }
        table.add_row(row);
    }
    for column in table.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    Some(table.to_string())
}

/// The stage with the highest requested rate (the last of equals) that every strategy
/// ran whole.
pub(super) fn highest_stage(report: &BenchReport) -> Option<&StageReport> {
    report.comparable_stages().pop()
}

/// One line per non-baseline strategy: its p90 end-to-end latency at the highest
/// stage as a ratio of the baseline's.
fn headline(report: &BenchReport) -> Vec<String> {
    let Some(stage) = highest_stage(report) else {
        return Vec::new();
    };
    let p90 = |name: &str| stage.result(name).and_then(p90_e2e);
    let base = p90(&report.baseline);
    report
        .strategies
        .iter()
        .filter(|s| **s != report.baseline)
        .map(|s| {
            let at = format!("at {} req/s, {s} p90 e2e", rate(stage.rate));
            if stage.result(s).is_none() {
                return format!("at {} req/s, {s} did not run", rate(stage.rate));
            }
            match (p90(s), base) {
                (Some(v), Some(b)) => match ratio(v, b) {
                    Some(r) => format!(
                        "{at} is {} {}'s ({} s vs {} s)",
                        ratio_text(r),
                        report.baseline,
                        number(v),
                        number(b)
                    ),
                    None => format!(
                        "{at} is {} s; {}'s is {} s",
                        number(v),
                        report.baseline,
                        number(b)
                    ),
                },
                _ => format!(
                    "{at}: no comparison with {} (no successful requests)",
                    report.baseline
                ),
            }
        })
        .collect()
}

/// With several stages, one line per non-baseline strategy giving the range of its
/// p90 NTPOT ratio to the baseline and the stages where it is best and worst, e.g.
/// `epp igw-default p90 NTPOT vs random: best 0.84× at 600 req/s, worst 1.00× at
/// 1000 req/s`: the stage where routing matters most is rarely the highest one.
fn ntpot_ranges(report: &BenchReport) -> Vec<String> {
    let stages: Vec<&StageReport> = report
        .stages
        .iter()
        .filter(|s| s.rate.is_finite() && report.is_comparable(s))
        .collect();
    if stages.len() < 2 {
        return Vec::new();
    }
    let p90 = |stage: &StageReport, name: &str| stage.result(name).and_then(p90_ntpot);
    let mut lines = Vec::new();
    for s in report.strategies.iter().filter(|s| **s != report.baseline) {
        let ratios: Vec<(f64, f64)> = stages
            .iter()
            .filter_map(|stage| {
                let r = ratio(p90(stage, s)?, p90(stage, &report.baseline)?)?;
                Some((r, stage.rate))
            })
            .collect();
        let best = ratios.iter().min_by(|a, b| a.0.total_cmp(&b.0));
        let worst = ratios.iter().max_by(|a, b| a.0.total_cmp(&b.0));
        if let (Some(best), Some(worst)) = (best, worst) {
            lines.push(format!(
                "{s} p90 NTPOT vs {}: best {} at {} req/s, worst {} at {} req/s",
                report.baseline,
                ratio_text(best.0),
                rate(best.1),
                ratio_text(worst.0),
                rate(worst.1)
            ));
        }
    }
    lines
}

/// A warning when the live client sent late in any run (see [`SEND_LAG_WARN_MS`]),
/// e.g. `the client sent late in 2 of 6 runs (send lag p99 up to 12.1 ms of wall
/// time, 61 ms of pool time): …`.
fn send_lag_warning(report: &BenchReport) -> Option<String> {
    let lags: Vec<f64> = report
        .stages
        .iter()
        .flat_map(|s| &s.results)
        .filter_map(|r| r.send_lag.as_ref().map(|l| l.p99_ms))
        .collect();
    let late = lags.iter().filter(|&&p99| p99 > SEND_LAG_WARN_MS).count();
    if late == 0 {
        return None;
    }
    let worst = lags.iter().copied().fold(0.0, f64::max);
    Some(format!(
        "the client sent late in {late} of {} runs (send lag p99 up to {} ms of wall time, \
         {} ms of pool time): the machine was too busy for these live results to be \
         trusted; rerun on a quieter machine, lower pool.speedup, or use --virtual",
        lags.len(),
        number(worst),
        number(worst * report.pool.speedup)
    ))
}

/// Where Ctrl-C stopped the run, e.g. `interrupted: Ctrl-C stopped the run while
/// random was sending stage 0 (50 req/s): 120 of its 750 requests were sent, and its
/// figures cover only those; 3 later jobs did not run`.
fn interrupted_line(report: &BenchReport) -> Option<String> {
    let i = report.interrupted.as_ref()?;
    let at_rate = report
        .stages
        .iter()
        .find(|s| s.stage == i.stage)
        .map_or_else(String::new, |s| format!(" ({} req/s)", rate(s.rate)));
    let cut = match i.sent < i.planned {
        true => format!(
            "{} of its {} requests were sent, and its figures cover only those",
            i.sent, i.planned
        ),
        false => format!("all {} of its requests were sent", i.planned),
    };
    let jobs = match i.jobs_not_run {
        0 => "no job was left to run".to_string(),
        1 => "1 later job did not run".to_string(),
        n => format!("{n} later jobs did not run"),
    };
    Some(format!(
        "interrupted: Ctrl-C stopped the run while {} was sending stage {}{at_rate}: {cut}; {jobs}",
        i.strategy, i.stage
    ))
}

/// The comparison printed after a run.
pub fn comparison_table(report: &BenchReport) -> String {
    let mut out = format!(
        "{} ({} mode, seed {}): {} serving {}; ratios are to {}\n",
        report.scenario,
        report.mode,
        report.seed,
        report.pool.shape(),
        report.pool.model,
        report.baseline
    );
    if !report.description.is_empty() {
        out.push_str(report.description.trim());
        out.push('\n');
    }
    if report.stages.is_empty() {
        out.push_str("no stages ran\n");
    }
    // An interrupted run's later stages may have no results at all.
    for stage in report.stages.iter().filter(|s| !s.results.is_empty()) {
        out.push('\n');
        out.push_str(&stage_table(report, stage));
        out.push('\n');
    }
    let failures = failure_lines(report);
    if !failures.is_empty() {
        out.push('\n');
        for line in failures {
            out.push_str(&line);
            out.push('\n');
        }
    }
    if let Some(sweep) = sweep_table(report) {
        out.push('\n');
        out.push_str(&sweep);
        out.push('\n');
    }
    if let Some(adapters) = adapter_table(report) {
        out.push('\n');
        out.push_str(&adapters);
        out.push('\n');
    }
    let mut lines = headline(report);
    lines.extend(ntpot_ranges(report));
    lines.extend(knee_lines(report));
    lines.extend(send_lag_warning(report));
    lines.extend(interrupted_line(report));
    if !lines.is_empty() {
        out.push('\n');
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    // `println!` adds the last newline.
    out.truncate(out.trim_end().len());
    out
}

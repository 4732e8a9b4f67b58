//! For LoRA traffic, the run by the model each request named: a row per adapter (and
//! the base model, when the split gives it a share), a column per strategy, each cell
//! p90 NTPOT and p90 end-to-end latency over all stages, as ratios to the baseline's.
//! It shows which adapters routing helped, and whether base-model traffic beside them
//! paid for it. The same summaries are written as `adapter_<name>_lifecycle_metrics.json`.

use std::collections::BTreeSet;

use comfy_table::{CellAlignment, Table, presets};

use super::BenchReport;
use super::table::{number, ratio, ratio_text, strategy_headings};
use crate::bench::recorder::StageSummary;

/// p90 NTPOT and p90 end-to-end latency, seconds; none without a successful request.
fn p90s(s: &StageSummary) -> Option<(f64, f64)> {
    let l = &s.successes.latency;
    (s.successes.count > 0).then_some((
        l.normalized_time_per_output_token.p90,
        l.request_latency.p90,
    ))
}

fn ratio_or_dash(value: f64, baseline: f64) -> String {
    ratio(value, baseline).map_or("-".into(), ratio_text)
}

/// The table, or none when no request named an adapter.
pub(super) fn adapter_table(report: &BenchReport) -> Option<String> {
    let names: BTreeSet<&str> = report
        .overall
        .iter()
        .flat_map(|o| o.by_adapter.keys().map(String::as_str))
        .collect();
    if names.is_empty() {
        return None;
    }
    let baseline = report.strategies.iter().position(|s| *s == report.baseline);
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    let mut header = vec!["model · all stages".to_string()];
    header.extend(strategy_headings(report));
    table.set_header(header);
    for name in names {
        let summary = |i: usize| report.overall.get(i)?.by_adapter.get(name);
        let sent = (0..report.strategies.len())
            .find_map(summary)
            .map_or(0, |s| s.load_summary.count);
        let base = baseline.and_then(summary).and_then(p90s);
        let base_model = if name == report.pool.model {
            "base, "
        } else {
            ""
        };
        let plural = if sent == 1 { "" } else { "s" };
        let mut row = vec![format!("{name} ({base_model}{sent} request{plural})")];
        for i in 0..report.strategies.len() {
            let mine = summary(i).and_then(p90s);
            let text = match (mine, base) {
                (Some((n, e)), _) if Some(i) == baseline => {
                    format!("{} ms / {} s", number(n * 1e3), number(e))
                }
                (Some((n, e)), Some((bn, be))) => {
                    format!("{} / {}", ratio_or_dash(n, bn), ratio_or_dash(e, be))
                }
                _ => "-".into(),
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

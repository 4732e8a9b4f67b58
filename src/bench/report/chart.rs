//! The report's SVG charts: every strategy's measurements against the requested rate,
//! one line per strategy, one panel per metric.
//!
//! - `latency_vs_qps.svg`: p90 NTPOT (ms), p90 end-to-end latency (s), mean TTFT (s).
//! - `throughput_vs_qps.svg`: achieved output tokens/s, achieved requests/s (with the
//!   requested rate as a grey reference line).
//! - `ratio_vs_qps.svg`: p90 NTPOT and p90 end-to-end latency of each strategy divided
//!   by the baseline's at the same stage, the numbers of the report's sweep table. The
//!   baseline is the dashed line at 1; below it is better. Latencies grow by orders of
//!   magnitude past a pool's knee, which flattens the differences on the latency
//!   chart; ratios keep every stage on one scale.
//!
//! Drawn with plotters' SVG backend without fonts: text is emitted as SVG `<text>` and
//! laid out with a size estimate. Each strategy has its own colour; the baseline is a
//! grey dashed line. Every stage is also marked with a point, so a one-stage run shows
//! its values. Points whose value is missing (NaN, latencies of a stage with no
//! successful request) are left out. Where the baseline stops keeping up within the
//! SLOs ([`Knee`]) a dotted grey line marks the last stage it kept up with. Nothing in
//! the output depends on the time or the machine, so the same report draws the same
//! bytes.

use std::io;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::table::rate;
use super::{BenchReport, Knee, StageReport};
use crate::bench::recorder::StageSummary;

/// Colours for the strategies that are not the baseline, in column order.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const BASELINE: RGBColor = RGBColor(128, 128, 128);
const REFERENCE: RGBColor = RGBColor(190, 190, 190);

const PANEL: (u32, u32) = (520, 460);
const TITLE_HEIGHT: u32 = 40;
const FONT: &str = "sans-serif";

/// One panel: a title, the y axis label with units, and the value it plots.
pub(super) struct Panel {
    title: &'static str,
    y_label: &'static str,
    value: fn(&StageSummary) -> Option<f64>,
    /// Also draw y = requested rate.
    requested_line: bool,
    /// Plot the value divided by the baseline's at the same stage.
    ratio: bool,
}

/// A latency in the given unit, absent when no request succeeded.
fn latency(s: &StageSummary, v: f64) -> Option<f64> {
    (s.successes.count > 0).then_some(v)
}

const LATENCY: [Panel; 3] = [
    Panel {
        title: "p90 NTPOT",
        y_label: "p90 normalized time per output token (ms)",
        value: |s| {
            latency(
                s,
                s.successes.latency.normalized_time_per_output_token.p90 * 1e3,
            )
        },
        requested_line: false,
        ratio: false,
    },
    Panel {
        title: "p90 end-to-end latency",
        y_label: "p90 request latency (s)",
        value: |s| latency(s, s.successes.latency.request_latency.p90),
        requested_line: false,
        ratio: false,
    },
    Panel {
        title: "mean TTFT",
        y_label: "mean time to first token (s)",
        value: |s| latency(s, s.successes.latency.time_to_first_token.mean),
        requested_line: false,
        ratio: false,
    },
];

const THROUGHPUT: [Panel; 2] = [
    Panel {
        title: "output throughput",
        y_label: "achieved output tokens/s",
        value: |s| Some(s.successes.throughput.output_tokens_per_sec),
        requested_line: false,
        ratio: false,
    },
    Panel {
        title: "request throughput",
        y_label: "achieved requests/s",
        value: |s| s.load_summary.achieved_rate,
        requested_line: true,
        ratio: false,
    },
];

pub(super) const RATIO: [Panel; 2] = [
    Panel {
        title: "p90 NTPOT vs baseline",
        y_label: "p90 NTPOT, ratio to baseline",
        value: LATENCY[0].value,
        requested_line: false,
        ratio: true,
    },
    Panel {
        title: "p90 end-to-end latency vs baseline",
        y_label: "p90 request latency, ratio to baseline",
        value: LATENCY[1].value,
        requested_line: false,
        ratio: true,
    },
];

/// `latency_vs_qps.svg`'s text.
pub fn latency_svg(report: &BenchReport) -> io::Result<String> {
    svg(report, "latency vs requested rate", &LATENCY)
}

/// `throughput_vs_qps.svg`'s text.
pub fn throughput_svg(report: &BenchReport) -> io::Result<String> {
    svg(report, "throughput vs requested rate", &THROUGHPUT)
}

/// `ratio_vs_qps.svg`'s text.
pub fn ratio_svg(report: &BenchReport) -> io::Result<String> {
    svg(report, "latency relative to the baseline", &RATIO)
}

fn error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("chart: {e}"))
}

/// The chart's caption: what was measured on which pool.
fn caption(report: &BenchReport, what: &str) -> String {
    format!(
        "{}: {what} ({}, {}, {} mode)",
        report.scenario,
        report.pool.shape(),
        report.pool.model,
        report.mode
    )
}

fn svg(report: &BenchReport, what: &str, panels: &[Panel]) -> io::Result<String> {
    let mut text = String::new();
    {
        let size = (PANEL.0 * panels.len() as u32, PANEL.1 + TITLE_HEIGHT);
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let body = root
            .titled(&caption(report, what), (FONT, 20))
            .map_err(error)?;
        for (area, panel) in body.split_evenly((1, panels.len())).iter().zip(panels) {
            draw_panel(report, area, panel)?;
        }
        root.present().map_err(error)?;
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Each strategy's (requested rate, value) points in rising rate order. A ratio
/// panel's point is left out where the baseline has no value or a zero one.
pub(super) fn series(report: &BenchReport, panel: &Panel) -> Vec<(String, Vec<(f64, f64)>)> {
    let stages = report.stages_by_rate();
    let value = |stage: &StageReport, name: &str| {
        let r = stage.result(name)?;
        (panel.value)(&r.summary).filter(|v| v.is_finite())
    };
    report
        .strategies
        .iter()
        .map(|name| {
            let points = stages
                .iter()
                .filter_map(|stage| {
                    let v = value(stage, name)?;
                    if !panel.ratio {
                        return Some((stage.rate, v));
                    }
                    let base = value(stage, &report.baseline).filter(|b| *b > 0.0)?;
                    Some((stage.rate, v / base))
                })
                .collect();
            (name.clone(), points)
        })
        .collect()
}

/// An axis range that holds `lo..=hi` with some room, and is never empty.
fn x_range(rates: &[f64]) -> (f64, f64) {
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        let pad = (lo.abs() * 0.5).max(1.0);
        return ((lo - pad).max(0.0), hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    ((lo - pad).max(0.0), hi + pad)
}

/// The y axis: from 0 to the largest value with headroom for the legend; a ratio
/// axis spans its values and 1 (the baseline) instead, since ratios sit near 1.
fn y_range(values: &[f64], ratio: bool) -> (f64, f64) {
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !ratio {
        return (
            0.0,
            if hi.is_finite() && hi > 0.0 {
                hi * 1.35
            } else {
                1.0
            },
        );
    }
    let lo = values.iter().copied().fold(1.0, f64::min);
    let hi = hi.max(1.0);
    let span = (hi - lo).max(0.1);
    ((lo - span * 0.1).max(0.0), hi + span * 0.6)
}

/// Decimals for y tick labels on `bottom..top`: enough to tell ticks apart, the same
/// for every tick of the axis.
pub(super) fn y_decimals(bottom: f64, top: f64) -> usize {
    let step = (top - bottom) / Y_LABELS as f64;
    if !(step.is_finite() && step > 0.0) {
        return 0;
    }
    (-step.log10()).ceil().clamp(0.0, 6.0) as usize
}

const Y_LABELS: usize = 10;

fn draw_panel<DB: DrawingBackend>(
    report: &BenchReport,
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> io::Result<()> {
    let lines = series(report, panel);
    let rates: Vec<f64> = report
        .stages
        .iter()
        .map(|s| s.rate)
        .filter(|r| r.is_finite())
        .collect();
    let (x0, x1) = x_range(&rates);
    let mut values: Vec<f64> = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .collect();
    if panel.requested_line {
        values.extend(&rates);
    }
    let (y0, y1) = y_range(&values, panel.ratio);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, (FONT, 16))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(error)?;
    let decimals = y_decimals(y0, y1);
    chart
        .configure_mesh()
        .x_desc("requested rate (req/s)")
        .y_desc(panel.y_label)
        .x_label_formatter(&|v| rate(*v))
        .y_labels(Y_LABELS)
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .light_line_style(WHITE)
        .draw()
        .map_err(error)?;
    if panel.requested_line && !rates.is_empty() {
        let style = REFERENCE.stroke_width(1);
        chart
            .draw_series(LineSeries::new([(x0, x0), (x1, x1)], style))
            .map_err(error)?
            .label("requested")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    if let Knee::UpTo {
        stage,
        every_stage: false,
        ..
    } = report.knee()
    {
        let x = stage.rate;
        let style = REFERENCE.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(x, y0), (x, y1)], 3, 4, style))
            .map_err(error)?
            .label(format!("{} keeps up to {} req/s", report.baseline, rate(x)))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    let mut colors = PALETTE.iter().cycle();
    for (name, points) in &lines {
        let baseline = *name == report.baseline;
        let color = if baseline {
            BASELINE
        } else {
            colors.next().copied().unwrap_or(BLACK)
        };
        let style = color.stroke_width(2);
        let anno = if baseline {
            chart.draw_series(DashedLineSeries::new(points.iter().copied(), 8, 5, style))
        } else {
            chart.draw_series(LineSeries::new(points.iter().copied(), style))
        }
        .map_err(error)?;
        let label = if baseline {
            format!("{name} (baseline)")
        } else {
            name.clone()
        };
        anno.label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, style.filled())))
            .map_err(error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(error)?;
    Ok(())
}

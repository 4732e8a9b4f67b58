//! Tests of the report's table and files on a small hand-made report: two stages,
//! three strategies, `random` the baseline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::table::{number, rate, ratio, ratio_text};
use super::*;
use crate::bench::recorder::{
    Failure, FailureCounts, Failures, Goodput, Latencies, LoadSummary, RequestLifecycle,
    RequestSample, RunSummary, Stats, Successes, Throughput, TokenUsage,
};

mod adapters;
mod knee;

/// Stats centred on `v` (mean and median) with `p90` as the 90th percentile.
fn stats(v: f64, p90: f64) -> Stats {
    Stats {
        mean: v,
        min: v / 2.0,
        max: p90 * 2.0,
        p0_1: v / 2.0,
        p1: v / 2.0,
        p5: v / 2.0,
        p10: v / 2.0,
        p25: v,
        median: v,
        p75: v,
        p90,
        p95: p90,
        p99: p90,
        p99_9: p90,
    }
}

fn tokens(total: u64, cached: Option<u64>, per_request: Stats) -> TokenUsage {
    TokenUsage {
        total,
        cached,
        uncached: cached.map(|c| total - c),
        distribution: Some(per_request),
    }
}

fn summary(requested: f64, scale: f64) -> StageSummary {
    StageSummary {
        benchmark_time_seconds: 10.5,
        load_summary: LoadSummary {
            count: (requested * 10.0) as u64,
            schedule_delay: Stats::default(),
            send_duration: Some(10.0),
            requested_rate: Some(requested),
            achieved_rate: Some(requested * 0.98),
        },
        successes: Successes {
            count: (requested * 10.0) as u64,
            latency: Latencies {
                request_latency: stats(1.0 * scale, 2.0 * scale),
                normalized_time_per_output_token: stats(0.02 * scale, 0.04 * scale),
                time_per_output_token: stats(0.01 * scale, 0.015 * scale),
                time_to_first_token: stats(0.2 * scale, 0.5 * scale),
                inter_token_latency: stats(0.01 * scale, 0.012 * scale),
            },
            throughput: Throughput {
                input_tokens_per_sec: requested * 200.0,
                output_tokens_per_sec: requested * 100.0 / scale,
                total_tokens_per_sec: requested * 300.0,
                requests_per_sec: requested * 0.98,
            },
            prompt_tokens: tokens(
                (requested * 2000.0) as u64,
                Some((requested * 1000.0 / scale) as u64),
                stats(200.0, 400.0),
            ),
            output_tokens: tokens((requested * 1000.0) as u64, None, stats(100.0, 180.0)),
            prompt_len: stats(200.0, 400.0),
            output_len: stats(100.0, 180.0),
            prefix_cache_hit_rate: 0.5 / scale,
            goodput_metrics: None,
        },
        failures: Failures {
            count: 0,
            request_latency: None,
            prompt_tokens: TokenUsage {
                total: 0,
                cached: Some(0),
                uncached: Some(0),
                distribution: None,
            },
            by_label: FailureCounts::default(),
        },
        goodput: Goodput {
            requests_per_sec: requested * 0.9,
            percent: 90.0,
        },
    }
}

const STRATEGIES: [(&str, f64); 3] = [
    ("epp igw-default", 0.5),
    ("epp gie-default", 0.8),
    ("random", 1.0),
];

fn report() -> BenchReport {
    let stages = [10.0, 30.0]
        .into_iter()
        .enumerate()
        .map(|(i, rate)| StageReport {
            stage: i,
            rate,
            duration_seconds: 20.0,
            results: STRATEGIES
                .iter()
                .map(|&(name, scale)| StrategyResult {
                    strategy: name.into(),
                    summary: summary(rate, scale),
                    send_lag: None,
                    requests_per_endpoint: vec![5, 5],
                    preemptions_per_endpoint: Vec::new(),
                })
                .collect(),
        })
        .collect();
    BenchReport {
        scenario: "synthetic".into(),
        description: "two stages, three strategies".into(),
        mode: "virtual".into(),
        seed: 7,
        pool: PoolInfo {
            replicas: 2,
            model: "m".into(),
            profile: "h100-llama3-8b".into(),
            speedup: 1.0,
            groups: Vec::new(),
        },
        baseline: "random".into(),
        strategies: STRATEGIES.iter().map(|s| s.0.to_string()).collect(),
        stages,
        overall: STRATEGIES
            .iter()
            .map(|&(_, scale)| RunSummary {
                all: summary(20.0, scale),
                by_adapter: [("sql/lora v2".to_string(), summary(5.0, scale))].into(),
            })
            .collect(),
        per_request: Vec::new(),
        interrupted: None,
    }
}

/// A fresh, empty folder under the system's temporary directory.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("igw-report-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn relative(files: &[PathBuf], root: &Path) -> Vec<PathBuf> {
    files
        .iter()
        .map(|f| {
            f.strip_prefix(root)
                .expect("inside the folder")
                .to_path_buf()
        })
        .collect()
}

#[test]
fn table_shows_every_strategy_rate_and_ratio() {
    let text = comparison_table(&report());
    for (name, _) in STRATEGIES {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(
        text.contains("10 req/s") && text.contains("30 req/s"),
        "{text}"
    );
    // epp igw-default's e2e p90 is 1.0 s against random's 2.0 s.
    assert!(text.contains("1.00 (0.50×)"), "{text}");
    // The baseline column has values without ratios.
    assert!(text.contains("random (baseline)"), "{text}");
    assert!(
        text.contains("at 30 req/s, epp igw-default p90 e2e is 0.50× random's"),
        "{text}"
    );
    assert!(text.contains("e2e p90 (s)") && text.contains("TTFT mean (ms)"));
    // The sweep table: p90 NTPOT and e2e ratios per stage, the baseline's values.
    assert!(text.contains("p90 NTPOT / p90 e2e"), "{text}");
    assert!(text.contains("0.50× / 0.50×"), "{text}");
    assert!(text.contains("40.0 ms / 2.00 s"), "{text}");
    assert_eq!(text, comparison_table(&report()), "deterministic");
    assert!(!text.contains("failed at"), "no failures, no failure lines");
}

#[test]
fn the_busiest_replica_and_preemptions_show_where_load_piled_up() {
    let mut r = report();
    // random: 9 of 12 requests on one of two replicas (1.50× the mean) and 40
    // preemptions there; igw: an even split, 2 preemptions.
    let random = &mut r.stages[0].results[2];
    random.requests_per_endpoint = vec![9, 3];
    random.preemptions_per_endpoint = vec![40, 0];
    r.stages[0].results[0].preemptions_per_endpoint = vec![1, 1];
    let text = comparison_table(&r);
    let row = |label: &str| {
        text.lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no {label} row:\n{text}"))
            .to_string()
    };
    let busiest = row("busiest replica (× mean)");
    assert!(busiest.contains("1.00 (0.67×)"), "{busiest}");
    assert!(busiest.trim_end().ends_with("1.50 │"), "{busiest}");
    let preemptions = row("preemptions");
    assert!(preemptions.contains("2 (0.05×)"), "{preemptions}");
    assert!(
        preemptions.contains(" - "),
        "unknown for gie-default: {preemptions}"
    );
    assert!(preemptions.trim_end().ends_with("40 │"), "{preemptions}");
    let dir = TempDir::new("preemptions");
    write(&r, &dir.0).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("summary.json")).unwrap())
            .unwrap();
    let stage = &v["stages"][0]["results"];
    assert_eq!(
        stage[2]["preemptions_per_endpoint"],
        serde_json::json!([40, 0])
    );
    assert!(
        stage[1].get("preemptions_per_endpoint").is_none(),
        "unknown counts are left out"
    );
}

#[test]
fn failures_are_listed_with_their_reasons() {
    let mut r = report();
    let f = &mut r.stages[1].results[2].summary.failures;
    f.count = 3;
    f.by_label.add(&Failure::http(503, b"no endpoint"));
    for _ in 0..2 {
        f.by_label.add(&Failure::connection(
            "tcp connect error: Connection refused",
        ));
    }
    let text = comparison_table(&r);
    assert!(
        text.contains(
            "failed at 30 req/s, random: 2 × Connection Error, 1 × 503 - Service Unavailable"
        ),
        "{text}"
    );
}

#[test]
fn odd_values_print_as_dashes_without_panicking() {
    let mut r = report();
    r.stages[0].results[0]
        .summary
        .successes
        .latency
        .request_latency
        .p90 = f64::NAN;
    r.stages[1].results[1].summary.successes.count = 0;
    r.stages[1].results[2].summary.goodput.percent = 0.0;
    let text = comparison_table(&r);
    assert!(text.contains(" - "), "{text}");
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    r.stages.clear();
    assert!(comparison_table(&r).contains("no stages ran"));
    let dir = TempDir::new("empty");
    assert!(write(&r, &dir.0).is_ok());
}

#[test]
fn numbers_have_fixed_formats() {
    assert_eq!(number(f64::NAN), "-");
    assert_eq!(number(1234.56), "1235");
    assert_eq!(number(12.345), "12.3");
    assert_eq!(number(0.5), "0.50");
    assert_eq!(rate(20.0), "20");
    assert_eq!(rate(2.5), "2.5");
    assert_eq!(ratio(0.5, 1.0).map(ratio_text).as_deref(), Some("0.50×"));
    assert_eq!(ratio(1.0, 0.0), None);
    assert_eq!(super::chart::y_decimals(0.0, 0.044 * 1.35), 3);
    assert_eq!(super::chart::y_decimals(0.0, 3.6), 1);
    assert_eq!(super::chart::y_decimals(0.0, 13_000.0), 0);
    assert_eq!(super::chart::y_decimals(0.0, f64::NAN), 0);
    // A ratio axis from 0.8 to 1.1 needs hundredths.
    assert_eq!(super::chart::y_decimals(0.8, 1.1), 2);
}

#[test]
fn write_is_byte_deterministic() {
    let (a, b) = (TempDir::new("a"), TempDir::new("b"));
    let files_a = write(&report(), &a.0).unwrap();
    let files_b = write(&report(), &b.0).unwrap();
    let (rel_a, rel_b) = (relative(&files_a, &a.0), relative(&files_b, &b.0));
    assert_eq!(rel_a, rel_b);
    for expected in [
        "summary.json",
        "epp-igw-default/stage_0_lifecycle_metrics.json",
        "random/stage_1_lifecycle_metrics.json",
        "random/summary_lifecycle_metrics.json",
        // The adapter's name made file-safe.
        "random/adapter_sql-lora-v2_lifecycle_metrics.json",
        "latency_vs_qps.svg",
        "throughput_vs_qps.svg",
        "ratio_vs_qps.svg",
    ] {
        assert!(rel_a.contains(&PathBuf::from(expected)), "{expected}");
    }
    // 1 summary + 3 strategies × (2 stages + run summary + 1 adapter) + 3 charts.
    assert_eq!(rel_a.len(), 16);
    for (fa, fb) in files_a.iter().zip(&files_b) {
        let (x, y) = (std::fs::read(fa).unwrap(), std::fs::read(fb).unwrap());
        assert_eq!(x, y, "{} differs", fa.display());
        assert!(
            x.ends_with(b"\n"),
            "{} has no trailing newline",
            fa.display()
        );
    }
}

#[test]
fn charts_are_svg_with_legends_and_axis_labels() {
    let dir = TempDir::new("svg");
    write(&report(), &dir.0).unwrap();
    for (file, labels) in [
        (
            "latency_vs_qps.svg",
            &["requested rate (req/s)", "p90 request latency (s)", "(ms)"][..],
        ),
        (
            "throughput_vs_qps.svg",
            &["requested rate (req/s)", "achieved output tokens/s"][..],
        ),
        (
            "ratio_vs_qps.svg",
            &["requested rate (req/s)", "p90 NTPOT, ratio to baseline"][..],
        ),
    ] {
        let svg = std::fs::read_to_string(dir.0.join(file)).unwrap();
        assert!(svg.starts_with("<svg"), "{file}");
        assert!(svg.trim_end().ends_with("</svg>"), "{file}");
        for (name, _) in STRATEGIES {
            assert!(svg.contains(name), "{file} lacks {name}");
        }
        for label in labels {
            assert!(svg.contains(label), "{file} lacks {label}");
        }
        assert!(svg.contains("synthetic") && svg.contains("2 × h100-llama3-8b"));
    }
}

#[test]
fn the_ratio_chart_divides_by_the_baseline_stage_by_stage() {
    let mut r = report();
    // The baseline has no successful request in stage 1: no ratio there.
    let random = r.stages[1]
        .results
        .iter_mut()
        .find(|x| x.strategy == "random");
    random.unwrap().summary.successes.count = 0;
    for panel in &super::chart::RATIO {
        let lines = super::chart::series(&r, panel);
        let names: Vec<_> = lines.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["epp igw-default", "epp gie-default", "random"]);
        // Every latency of a strategy is its scale × random's.
        for ((_, points), (_, scale)) in lines.iter().zip(STRATEGIES) {
            assert_eq!(points.len(), 1, "stage 1 has no baseline value");
            assert_eq!(points[0].0, 10.0);
            assert!(
                (points[0].1 - scale).abs() < 1e-12,
                "{} vs {scale}",
                points[0].1
            );
        }
    }
}

#[test]
fn per_request_files_hold_one_record_per_line() {
    let mut r = report();
    let sample = RequestSample {
        scheduled: Duration::ZERO,
        sent: Duration::ZERO,
        first_token: Some(Duration::from_millis(100)),
        done: Duration::from_millis(300),
        prompt_tokens: 10,
        output_tokens: 3,
        cached_tokens: 0,
        error: None,
    };
    let times = [100, 200, 300].map(Duration::from_millis);
    let record = RequestLifecycle::new(1, &sample, &times, None);
    // Three records for the first strategy (two stages' spools), none for the others.
    let spool = |records: &[RequestLifecycle]| RecordSpool::from_records(records).unwrap();
    r.per_request = vec![
        vec![spool(&[record.clone(), record.clone()]), spool(&[record])],
        Vec::new(),
        Vec::new(),
    ];
    let dir = TempDir::new("per-request");
    let files = write(&r, &dir.0).unwrap();
    let path = dir
        .0
        .join("epp-igw-default/per_request_lifecycle_metrics.json");
    assert!(files.contains(&path));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "[, three records, ]: {text}");
    assert!(lines[1].starts_with("{\"stage_id\":1,") && lines[1].ends_with("},"));
    assert!(
        lines[3].ends_with('}'),
        "the last record has no comma: {text}"
    );
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[0]["info"]["output_token_times"][2], 0.3);
    let empty = dir.0.join("random/per_request_lifecycle_metrics.json");
    assert_eq!(std::fs::read_to_string(empty).unwrap(), "[\n]\n");
}

#[test]
fn a_single_stage_draws_points() {
    let mut r = report();
    r.stages.truncate(1);
    let dir = TempDir::new("single");
    write(&r, &dir.0).unwrap();
    let svg = std::fs::read_to_string(dir.0.join("latency_vs_qps.svg")).unwrap();
    assert!(svg.contains("<circle"), "a lone stage is a point");
}

#[test]
fn summary_json_keeps_the_lifecycle_names() {
    let dir = TempDir::new("json");
    write(&report(), &dir.0).unwrap();
    let text = std::fs::read_to_string(dir.0.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["baseline"], "random");
    assert!(
        v.get("interrupted").is_none(),
        "a whole run says nothing of Ctrl-C"
    );
    let first = &v["stages"][0]["results"][0];
    for path in [
        "/load_summary/achieved_rate",
        "/successes/latency/request_latency/p90",
        "/successes/latency/normalized_time_per_output_token/p90",
        "/successes/latency/time_to_first_token/mean",
        "/successes/throughput/output_tokens_per_sec",
        "/successes/prefix_cache_hit_rate",
        "/failures/count",
        "/goodput/percent",
    ] {
        assert!(first.pointer(path).is_some(), "missing {path}");
    }
    let stage =
        std::fs::read_to_string(dir.0.join("random/stage_1_lifecycle_metrics.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&stage).unwrap();
    assert_eq!(s["load_summary"]["requested_rate"], 30.0);
    assert!(
        s.pointer("/successes/latency/inter_token_latency/median")
            .is_some()
    );
}

#[test]
fn slugs_are_safe_and_distinct() {
    use super::files::slugs;
    let names = ["epp igw-default", "EPP igw/default", "", "random"].map(String::from);
    assert_eq!(
        slugs(&names),
        ["epp-igw-default", "epp-igw-default-2", "strategy", "random"]
    );
}

#[test]
fn sweep_reports_each_strategys_best_and_worst_stage() {
    let mut report = report();
    // At 30 req/s igw's p90 NTPOT is 0.9× random's instead of 0.5×.
    let stage = &mut report.stages[1];
    let random = stage.results[2]
        .summary
        .successes
        .latency
        .normalized_time_per_output_token
        .p90;
    stage.results[0]
        .summary
        .successes
        .latency
        .normalized_time_per_output_token
        .p90 = 0.9 * random;
    let text = comparison_table(&report);
    assert!(
        text.contains(
            "epp igw-default p90 NTPOT vs random: best 0.50× at 10 req/s, worst 0.90× at 30 req/s"
        ),
        "{text}"
    );
    assert!(
        !text.contains("random p90 NTPOT vs random"),
        "no line for the baseline:\n{text}"
    );
}

#[test]
fn a_late_live_client_is_called_out_under_the_tables() {
    let mut report = report();
    assert!(!comparison_table(&report).contains("sent late"));
    report.pool.speedup = 5.0;
    for (i, r) in report.stages[1].results.iter_mut().enumerate() {
        r.send_lag = Some(SendLag {
            p50_ms: 0.1,
            p99_ms: [1.0, 12.0, 2.0][i],
            max_ms: 20.0,
        });
    }
    let text = comparison_table(&report);
    assert!(
        text.contains(
            "the client sent late in 1 of 3 runs (send lag p99 up to 12.0 ms of wall time, 60.0 ms of pool time)"
        ),
        "{text}"
    );
}

#[test]
fn an_interrupted_run_says_where_it_stopped_and_skips_stages_that_never_ran() {
    let mut report = report();
    // Ctrl-C once random had sent all of stage 0: stage 1 never ran for anyone.
    report.stages[1].results.clear();
    report.interrupted = Some(crate::bench::interrupt::Interrupted {
        strategy: "random".into(),
        stage: 0,
        sent: 12,
        planned: 12,
        jobs_not_run: 1,
    });
    let text = comparison_table(&report);
    assert!(
        text.contains(
            "interrupted: Ctrl-C stopped the run while random was sending stage 0 \
             (10 req/s): all 12 of its requests were sent; 1 later job did not run"
        ),
        "{text}"
    );
    assert!(!text.contains("stage 1 · 30 req/s"), "{text}");
}

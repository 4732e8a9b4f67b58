//! `igw bench` in virtual time, end to end through the library: a scenario file's
//! text, the plan, the pool simulation per strategy and stage, the report files.
//!
//! The promise tested here is reproducibility: the same scenario and seed give the
//! same report, byte for byte, however many threads run the jobs.

use std::path::{Path, PathBuf};

use igw::bench::plan::plan;
use igw::bench::progress::Progress;
use igw::bench::report;
use igw::bench::scenario::from_yaml_str;
use igw::bench::virtual_run;

const SCENARIO: &str = "
name: small
seed: 7
workload: {type: sharegpt, path: testdata/sharegpt/sample.json}
load:
  type: poisson
  stages:
  - {rate: 40, duration: 3s}
  - {rate: 120, duration: 2s}
pool: {replicas: 3, max_num_seqs: 16}
strategies:
- {router: epp, config: gie-default}
- {router: epp, config: igw-default}
- {router: round-robin}
- {router: least-request}
- {router: random}
";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igw-bench-virtual-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `text` and writes its report into a fresh `name` folder; returns the folder
/// and the files written, relative to it.
fn run(text: &str, threads: usize, name: &str) -> (PathBuf, Vec<PathBuf>) {
    let scenario = from_yaml_str(text, "small.yaml").unwrap();
    let plans = plan(&scenario).unwrap();
    let report = virtual_run::run(&scenario, &plans, threads, &Progress::hidden()).unwrap();
    let dir = scratch(name);
    let files = report::write(&report, &dir).unwrap();
    let relative = files
        .iter()
        .map(|f| f.strip_prefix(&dir).unwrap().to_path_buf())
        .collect();
    (dir, relative)
}

fn read(dir: &Path, file: &Path) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

#[test]
fn the_same_seed_gives_the_same_report_byte_for_byte() {
    let (a, files_a) = run(SCENARIO, 2, "a");
    let (b, files_b) = run(SCENARIO, 1, "b");
    assert_eq!(files_a, files_b);
    assert!(files_a.iter().any(|f| f.ends_with("summary.json")));
    for f in &files_a {
        assert!(
            read(&a, f) == read(&b, f),
            "{} differs between runs",
            f.display()
        );
    }
    // And the seed matters.
    let (c, _) = run(&SCENARIO.replace("seed: 7", "seed: 8"), 2, "c");
    let summary = Path::new("summary.json");
    assert!(read(&a, summary) != read(&c, summary));
    for dir in [a, b, c] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn every_planned_request_is_measured_for_every_strategy() {
    let scenario = from_yaml_str(SCENARIO, "small.yaml").unwrap();
    let plans = plan(&scenario).unwrap();
    let report = virtual_run::run(&scenario, &plans, 2, &Progress::hidden()).unwrap();
    assert_eq!(report.mode, "virtual");
    assert_eq!(report.baseline, "random");
    assert_eq!(report.stages.len(), 2);
    for (stage, plan) in report.stages.iter().zip(&plans) {
        assert_eq!(stage.results.len(), 5);
        for r in &stage.results {
            let s = &r.summary;
            assert_eq!(
                s.load_summary.count,
                plan.requests.len() as u64,
                "{}",
                r.strategy
            );
            assert_eq!(
                s.failures.count, 0,
                "{}: {:?}",
                r.strategy, s.failures.by_label
            );
            assert_eq!(
                r.requests_per_endpoint.iter().sum::<u64>(),
                s.load_summary.count
            );
            assert_eq!(r.preemptions_per_endpoint.len(), 3, "{}", r.strategy);
            // No client sends anything in virtual time, so there is no lag to report.
            assert!(r.send_lag.is_none(), "{}", r.strategy);
            let l = &s.successes.latency;
            assert!(l.time_to_first_token.mean > 0.0);
            assert!(l.request_latency.p90 >= l.request_latency.median);
            assert!(
                l.inter_token_latency.mean > 0.0,
                "{}: ITL is measured",
                r.strategy
            );
        }
    }
    // Round-robin spreads evenly: no endpoint gets more than one request above another.
    let rr = report.result(0, "round-robin").unwrap();
    let (min, max) = (
        rr.requests_per_endpoint.iter().min().unwrap(),
        rr.requests_per_endpoint.iter().max().unwrap(),
    );
    assert!(max - min <= 1, "{:?}", rr.requests_per_endpoint);
}

/// The seconds at `key` of a per-request record.
fn seconds(record: &serde_json::Value, key: &str) -> f64 {
    record[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {record}"))
}

#[test]
fn the_per_request_report_has_every_request_and_token() {
    let text = format!("{SCENARIO}output: {{per_request: true}}\n");
    let (a, files) = run(&text, 2, "per-request-a");
    let (b, _) = run(&text, 1, "per-request-b");
    let scenario = from_yaml_str(&text, "small.yaml").unwrap();
    let plans = plan(&scenario).unwrap();
    let planned: usize = plans.iter().map(|p| p.requests.len()).sum();
    for slug in [
        "epp-gie-default",
        "epp-igw-default",
        "round-robin",
        "least-request",
        "random",
    ] {
        let file = Path::new(slug).join("per_request_lifecycle_metrics.json");
        assert!(files.contains(&file), "{} missing", file.display());
        let bytes = read(&a, &file);
        assert!(
            bytes == read(&b, &file),
            "{} differs between runs",
            file.display()
        );
        let records: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(records.len(), planned, "{slug}: one record per request");
        // Stage after stage, each request's plan in order.
        let mut stage_of = Vec::new();
        for p in &plans {
            stage_of.extend(std::iter::repeat_n(p.index as u64, p.requests.len()));
        }
        let planned_out = plans
            .iter()
            .flat_map(|p| &p.requests)
            .map(|q| q.request.output_tokens);
        for ((r, stage), want_out) in records.iter().zip(stage_of).zip(planned_out) {
            assert_eq!(r["stage_id"], stage, "{r}");
            assert!(r["error"].is_null(), "{r}");
            let times: Vec<f64> = r["info"]["output_token_times"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_f64().unwrap())
                .collect();
            assert_eq!(r["info"]["output_tokens"], want_out as u64, "{r}");
            assert_eq!(times.len(), want_out, "every token's time: {r}");
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{r}");
            let (start, end) = (seconds(r, "start_time"), seconds(r, "end_time"));
            // Virtual time sends exactly on schedule.
            assert_eq!(start, seconds(r, "scheduled_time"));
            assert!(
                (times[0] - (start + seconds(r, "ttft"))).abs() < 1e-9,
                "{r}"
            );
            assert!(
                (times[want_out - 1] - end).abs() < 1e-9,
                "the last token ends it: {r}"
            );
        }
    }
    for dir in [a, b] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn an_external_target_cannot_run_in_virtual_time() {
    let text = "strategies: [{router: random}, {router: target, url: 'http://127.0.0.1:1'}]\nload: {stages: [{rate: 1, duration: 1s}]}\n";
    let scenario = from_yaml_str(text, "t.yaml").unwrap();
    let plans = plan(&scenario).unwrap();
    let err = virtual_run::run(&scenario, &plans, 1, &Progress::hidden()).unwrap_err();
    assert!(err.to_string().contains("strategy `target`"), "{err}");
}

/// Two H100 replicas and one A100 replica: the A100's slower steps make it the one a
/// uniform spread overloads.
const MIXED: &str = "
name: mixed
seed: 3
workload: {type: synthetic, input: {uniform: {min: 200, max: 400}}, output: {uniform: {min: 50, max: 150}}}
load: {type: poisson, stages: [{rate: 60, duration: 10s}]}
pool:
  replicas: 2
  profile: h100-llama3-8b
  also: [{replicas: 1, profile: a100-llama3-8b}]
strategies:
- {router: epp, config: igw-default}
- {router: random}
";

#[test]
fn a_mixed_pool_runs_each_group_with_its_own_engine() {
    let scenario = from_yaml_str(MIXED, "mixed.yaml").unwrap();
    let pool = virtual_run::pool_config(&scenario).unwrap();
    let profiles: Vec<&str> = pool.engines.iter().map(|e| &*e.profile.name).collect();
    assert_eq!(
        profiles,
        ["h100-llama3-8b", "h100-llama3-8b", "a100-llama3-8b"]
    );
    let seeds: Vec<u64> = pool.engines.iter().map(|e| e.seed).collect();
    assert_eq!(seeds, [3, 4, 5]);

    let plans = plan(&scenario).unwrap();
    let report = virtual_run::run(&scenario, &plans, 1, &Progress::hidden()).unwrap();
    assert_eq!(report.pool.replicas, 3);
    assert_eq!(
        report.pool.profile,
        "2 × h100-llama3-8b + 1 × a100-llama3-8b"
    );
    let groups: Vec<(usize, &str)> = report
        .pool
        .groups
        .iter()
        .map(|g| (g.replicas, g.profile.as_str()))
        .collect();
    assert_eq!(groups, [(2, "h100-llama3-8b"), (1, "a100-llama3-8b")]);
    assert!(report::comparison_table(&report).starts_with(
        "mixed (virtual mode, seed 3): 2 × h100-llama3-8b + 1 × a100-llama3-8b serving"
    ));
    let share = |strategy: &str| {
        let r = report.result(0, strategy).unwrap();
        assert_eq!(r.summary.failures.count, 0);
        let n = &r.requests_per_endpoint;
        n[2] as f64 / n.iter().sum::<u64>() as f64
    };
    // Random gives the A100 its third; a load-aware picker sends it less.
    assert!(
        (share("random") - 1.0 / 3.0).abs() < 0.05,
        "{}",
        share("random")
    );
    assert!(
        share("epp igw-default") < share("random") - 0.03,
        "{}",
        share("epp igw-default")
    );
}

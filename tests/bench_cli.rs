//! The `igw bench` command as a user runs it: the real binary, a scenario file on
//! disk, the printed comparison and the files it writes; and a broken scenario's
//! error, which must name the file, the line and the field.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igw-bench-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn igw() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_igw"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env("RUST_BACKTRACE", "0");
    c
}

/// `igw bench --quiet <args> --scenario <scenario> --out <out>`, which must succeed;
/// its stdout.
fn bench_ok(args: &[&str], scenario: &Path, out: &Path) -> String {
    let run = igw()
        .args(["bench", "--quiet"])
        .args(args)
        .arg("--scenario")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

#[test]
fn a_virtual_run_prints_the_comparison_and_writes_json_and_charts() {
    let dir = scratch("run");
    let scenario = dir.join("tiny.yaml");
    std::fs::write(
        &scenario,
        "load: {stages: [{rate: 20, duration: 2s}, {rate: 40, duration: 2s}]}\npool: {replicas: 2}\n",
    )
    .unwrap();
    let out = dir.join("report");
    let run = igw()
        .args(["bench", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    for want in [
        "tiny (virtual mode, seed 42)",
        "epp igw-default",
        "epp gie-default",
        "random (baseline)",
        "p90 NTPOT / p90 e2e",
        "at 40 req/s, epp igw-default p90 e2e is",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    for file in [
        "summary.json",
        "latency_vs_qps.svg",
        "throughput_vs_qps.svg",
        "random/stage_1_lifecycle_metrics.json",
    ] {
        assert!(out.join(file).is_file(), "{file} not written");
    }
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(file)).unwrap()).unwrap()
    };
    let summary = read("summary.json");
    assert_eq!(summary["stages"].as_array().unwrap().len(), 2);
    // The run summary holds both stages' requests, time and tokens.
    let stages = [0, 1].map(|i| read(&format!("random/stage_{i}_lifecycle_metrics.json")));
    let run = read("random/summary_lifecycle_metrics.json");
    let sum = |path: &str| -> f64 {
        stages
            .iter()
            .map(|s| s.pointer(path).unwrap().as_f64().unwrap())
            .sum()
    };
    for path in [
        "/load_summary/count",
        "/benchmark_time_seconds",
        "/successes/output_tokens/total",
    ] {
        let total = run.pointer(path).unwrap().as_f64().unwrap();
        assert!(
            (total - sum(path)).abs() < 1e-6 * total.max(1.0),
            "{path}: {total} vs {}",
            sum(path)
        );
    }
    assert!(run["load_summary"].get("requested_rate").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn strategy_flags_run_a_subset_beside_the_baseline() {
    let dir = scratch("subset");
    let scenario = dir.join("subset.yaml");
    std::fs::write(
        &scenario,
        "load: {stages: [{rate: 20, duration: 1s}]}\npool: {replicas: 2}\n\
         strategies: [{router: epp, config: igw-default}, {router: epp, config: gie-default}, \
         {router: round-robin}, {router: random}]\n",
    )
    .unwrap();
    let stdout = bench_ok(
        &["--strategy", "igw-default", "--strategy", "round-robin"],
        &scenario,
        &dir.join("report"),
    );
    assert!(stdout.contains("epp igw-default"), "{stdout}");
    assert!(stdout.contains("round-robin"), "{stdout}");
    assert!(stdout.contains("random (baseline)"), "{stdout}");
    assert!(!stdout.contains("gie-default"), "{stdout}");

    let run = igw()
        .args(["bench", "--strategy", "igw-defualt", "--scenario"])
        .arg(&scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains(
            "--strategy igw-defualt: the scenario has no strategy of that name (it has: \
             epp igw-default, epp gie-default, round-robin, random)"
        ),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_kept_beside_the_scenario_are_found_from_any_directory() {
    let dir = scratch("beside");
    let conversation = |i: usize| {
        format!(
            r#"{{"id": "c{i}", "conversations": [{{"from": "human", "value": "Tell me about the number {i} and why it matters."}}, {{"from": "gpt", "value": "The number {i} is one more than the one before it, and that is most of its story."}}]}}"#
        )
    };
    let entries: Vec<String> = (0..20).map(conversation).collect();
    std::fs::write(dir.join("chats.json"), format!("[{}]", entries.join(","))).unwrap();
    std::fs::write(
        dir.join("mine.yaml"),
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n\
         plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n\
         \x20 - pluginRef: queue-scorer\n",
    )
    .unwrap();
    let scenario = dir.join("scenario.yaml");
    std::fs::write(
        &scenario,
        "workload: {type: sharegpt, path: chats.json, num_requests: 20}\n\
         load: {stages: [{rate: 20, duration: 1s}]}\npool: {replicas: 2}\n\
         strategies: [{router: epp, config: mine.yaml}, {router: random}]\n",
    )
    .unwrap();
    // Run from the repository root, where neither file is.
    let stdout = bench_ok(&[], &scenario, &dir.join("report"));
    assert!(stdout.contains("epp mine"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_scenario_names_the_file_line_and_field() {
    let dir = scratch("broken");
    let scenario = dir.join("broken.yaml");
    std::fs::write(&scenario, "seed: 1\npool:\n  replicas: 2\n  gpus: 8\n").unwrap();
    let run = igw()
        .args(["bench", "--scenario"])
        .arg(&scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(stderr.contains("gpus"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    // A missing scenario file is named too.
    let run = igw()
        .args(["bench", "--scenario", "no/such.yaml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("no/such.yaml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_sample_generator_runs_without_a_scenario_and_bench_without_one_says_so() {
    let dir = scratch("gen");
    let out = dir.join("sample.json");
    let run = igw()
        .args(["bench", "gen-sharegpt", "--conversations", "20", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("20 conversations"), "{stderr}");
    let entries: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(entries.as_array().map(Vec::len), Some(20));

    let run = igw().arg("bench").output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("--scenario"), "{stderr}");
}

#[test]
fn a_trace_scenario_prints_the_traces_pace_and_says_when_prompts_repeat() {
    let dir = scratch("trace");
    let trace = dir.join("t.jsonl");
    // Four requests, one a second: 1 req/s at its own pace.
    let lines: Vec<String> = (0..4)
        .map(|i| {
            format!(
                r#"{{"timestamp": {}, "input_length": 20, "output_length": 4}}"#,
                i * 1000
            )
        })
        .collect();
    std::fs::write(&trace, lines.join("\n")).unwrap();
    let scenario = dir.join("trace.yaml");
    std::fs::write(
        &scenario,
        format!(
            "workload: {{type: trace, path: {}}}\n\
             load: {{type: trace, stages: [{{rate: 1, duration: 3s}}, {{rate: 4, duration: 3s}}]}}\n\
             pool: {{replicas: 1}}\nstrategies: [{{router: random}}]\n",
            trace.display()
        ),
    )
    .unwrap();
    let run = igw()
        .args(["bench", "--quiet", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(dir.join("report"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let want = format!(
        "trace {}: 4 requests over 3.0 s, 1.00 req/s at its own pace; each stage replays \
         its arrivals at the stage's rate; the 4 req/s stage sends 12 requests, 3.0 times \
         the trace, so its prompts repeat",
        trace.display()
    );
    assert!(stderr.lines().any(|l| l == want), "{stderr}");
}

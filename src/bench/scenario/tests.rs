//! The scenario schema: defaults, the shipped files, and an error for each mistake
//! that names where it is.

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Scenario, String> {
    from_yaml_str(text, "s.yaml").map_err(|e| e.to_string())
}

#[test]
fn an_empty_file_is_the_all_defaults_scenario() {
    for text in ["", "{}", "# only a comment\n"] {
        let s = parse(text).unwrap();
        assert_eq!(s.seed, 42);
        assert_eq!(s.mode, Mode::Virtual);
        assert_eq!(s.pool.replicas, 4);
        assert_eq!(s.pool.scrape_interval, Duration::from_millis(50));
        let names: Vec<_> = s.strategies.iter().map(|s| s.display_name()).collect();
        assert_eq!(names, ["epp igw-default", "epp gie-default", "random"]);
        assert_eq!(s.baseline_name(), "random");
        assert_eq!(s.stages().len(), 1);
        assert!(matches!(s.workload, WorkloadSpec::ShareGpt(_)));
    }
}

#[test]
fn a_sweep_expands_to_its_stages() {
    let s = parse("load: {sweep: {from: 100, to: 1000, step: 100, stage_duration: 20s}}").unwrap();
    let stages = s.stages();
    assert_eq!(stages.len(), 10);
    assert_eq!(stages[0].rate, 100.0);
    assert_eq!(stages[9].rate, 1000.0);
    assert!(stages.iter().all(|s| s.duration == Duration::from_secs(20)));
    // A step that does not land on `to` stops below it.
    let s = parse("load: {sweep: {from: 1, to: 2, step: 0.3, stage_duration: 1s}}").unwrap();
    let rates: Vec<f64> = s.stages().iter().map(|s| s.rate).collect();
    assert_eq!(rates.len(), 4);
    assert!((rates[3] - 1.9).abs() < 1e-9);
}

#[test]
fn every_shipped_scenario_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let s = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                Some(s.name.as_str()),
                path.file_stem().and_then(|s| s.to_str())
            );
            seen.push(s.name);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "chat-sessions",
            "gie-blog-10-replicas",
            "mixed-fleet",
            "multi-lora",
            "multi-lora-with-base",
            "prefix-heavy",
            "quickstart",
            "trace-replay"
        ]
    );
}

#[test]
fn mistakes_are_errors_that_say_where() {
    for (text, want) in [
        // Unknown fields name the field and the line.
        ("pool:\n  replicas: 4\n  replica: 3\n", "replica"),
        ("pool:\n  replicas: 4\n  replica: 3\n", "line 3"),
        ("seed: 1\nstrategy: []\n", "strategy"),
        ("load: {stages: [{rate: 1, duration: 1s, ramp: 2}]}", "ramp"),
        (
            "workload: {type: sharegpt, path: x.json, prompts: 3}",
            "prompts",
        ),
        ("workload: {type: nope}", "nope"),
        ("strategies: [{router: magic}]", "magic"),
        ("mode: fast", "fast"),
        // Values.
        (
            "load: {stages: [{rate: 1, duration: 30 seconds}]}",
            "invalid duration",
        ),
        (
            "load: {stages: [{rate: 0, duration: 1s}]}",
            "load.stages[0].rate",
        ),
        (
            "load: {stages: [{rate: 1, duration: 0s}]}",
            "load.stages[0].duration",
        ),
        (
            "load: {stages: [{rate: 1, duration: 1s}], sweep: {from: 1, to: 2, step: 1, stage_duration: 1s}}",
            "not both",
        ),
        (
            "load: {sweep: {from: 5, to: 1, step: 1, stage_duration: 1s}}",
            "load.sweep",
        ),
        (
            "load: {sweep: {from: 1, to: 5, step: 0, stage_duration: 1s}}",
            "load.sweep",
        ),
        (
            "load: {stages: [{rate: 1e12, duration: 30s}]}",
            "a run plans at most 10000000",
        ),
        (
            "load: {sweep: {from: 1000, to: 100000, step: 1000, stage_duration: 60s}}",
            "load: the stages send about",
        ),
        ("pool: {replicas: 0}", "pool.replicas"),
        ("pool: {also: [{replicas: 0}]}", "pool.also[0].replicas"),
        (
            "pool: {also: [{replicas: 1, profile: h200-giant}]}",
            "pool.also[0].profile: unknown profile `h200-giant`",
        ),
        (
            "pool: {also: [{replicas: 1, speedup: 2}]}",
            "unknown field `speedup`",
        ),
        ("pool: {speedup: 0}", "pool.speedup"),
        ("pool: {scrape_interval: 0s}", "pool.scrape_interval"),
        (
            "pool: {profile: h200-giant}",
            "pool.profile: unknown profile `h200-giant`",
        ),
        (
            "pool: {profile: profiles/mine.yaml}",
            "for a profile file use `profile_file`",
        ),
        ("strategies: []", "strategies"),
        ("strategies: [{router: target}]", "needs a `url`"),
        (
            "strategies: [{router: random, config: gie-default}]",
            "strategies[0].config",
        ),
        (
            "strategies: [{router: random, url: 'http://x'}]",
            "strategies[0].url",
        ),
        (
            "strategies: [{router: random}, {router: random}]",
            "a second strategy named `random`",
        ),
        (
            "strategies: [{router: random}]\nbaseline: rr\n",
            "`rr` is not a strategy",
        ),
        ("slo: {ttft: fast}", "invalid duration"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.starts_with("s.yaml: "), "{text}: {err}");
        assert!(
            err.contains(want),
            "{text}: {err:?} should mention {want:?}"
        );
    }
}

#[test]
fn a_missing_file_names_itself() {
    let err = load(Path::new("no/such/scenario.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no/such/scenario.yaml"), "{err}");
}

#[test]
fn strategy_names_default_from_the_router_and_config() {
    let s = parse(
        "strategies:\n- {router: epp}\n- {router: epp, config: configs/mine.yaml}\n- {router: round-robin}\n- {router: least-request, name: lr}\n",
    )
    .unwrap();
    let names: Vec<_> = s.strategies.iter().map(|s| s.display_name()).collect();
    assert_eq!(names, ["epp gie-default", "epp mine", "round-robin", "lr"]);
    // No `random`: the last strategy is the baseline.
    assert_eq!(s.baseline_name(), "lr");
}

#[test]
fn a_mixed_pool_lists_its_groups_in_endpoint_order() {
    let s = parse(
        "seed: 7\npool: {replicas: 2, profile: h100-llama3-8b, kv_blocks: 500, \
         also: [{replicas: 3, profile: a100-llama3-8b}]}\n",
    )
    .unwrap();
    assert_eq!(s.pool.total_replicas(), 5);
    let groups = s.pool.groups(s.seed);
    let shapes: Vec<(usize, Option<&str>, Option<usize>, u64)> = groups
        .iter()
        .map(|(n, o)| (*n, o.profile.as_deref(), o.kv_blocks, o.seed))
        .collect();
    // The second group's shape is its profile's, not the pool's `kv_blocks`; its seed
    // continues after the first group's replicas.
    assert_eq!(
        shapes,
        [
            (2, Some("h100-llama3-8b"), Some(500), 7),
            (3, Some("a100-llama3-8b"), None, 9)
        ]
    );
    assert_eq!(groups[0].1.max_loras, groups[1].1.max_loras);
}

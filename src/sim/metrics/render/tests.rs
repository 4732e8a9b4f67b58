//! Tests of the Prometheus renderer: float spelling, escaping, a golden exposition and
//! a structural parse of every sample line.
//!
//! The golden file `testdata/sim/metrics.golden.txt` was checked byte for byte against
//! Python `prometheus_client` fed the same observations; regenerate it with
//! `UPDATE_GOLDEN=1 cargo test --lib sim::metrics` only after such a check.

use super::*;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/sim/metrics.golden.txt"
);

fn check_float(v: f64, expected: &str) {
    let mut out = String::new();
    write_float(&mut out, v);
    assert_eq!(out, expected, "formatting {v:?}");
}

#[test]
fn floats_are_spelled_like_prometheus_client() {
    // Expected strings are `prometheus_client.utils.floatToGoString` output.
    for (v, expected) in [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (12.0, "12.0"),
        (-1.0, "-1.0"),
        (0.25, "0.25"),
        (0.001, "0.001"),
        (0.0001, "0.0001"),
        (1e-5, "1e-05"),
        (1.2345e-7, "1.2345e-07"),
        (1e-100, "1e-100"),
        (2560.0, "2560.0"),
        (123456.0, "123456.0"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (-2e6, "-2000000.0"),
        (1745000000.5, "1.7450000005e+09"),
        (12345678901.0, "1.2345678901e+10"),
        (9999999999999998.0, "9.999999999999998e+15"),
        (1e16, "1e+16"),
        (1.5e16, "1.5e+16"),
        (1e22, "1e+22"),
        (1e100, "1e+100"),
        (0.1 + 0.2, "0.30000000000000004"),
        (0.00012345678901234567, "0.00012345678901234567"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ] {
        check_float(v, expected);
    }
}

#[test]
fn label_values_are_escaped() {
    let mut out = String::new();
    write_escaped(&mut out, "a\\b\"c\nd");
    assert_eq!(out, r#"a\\b\"c\nd"#);
}

/// A replica mid-run: a few finished requests, one running LoRA batch.
fn fixture() -> (ReplicaInfo, EngineMetrics, EngineGauges) {
    let info = ReplicaInfo {
        model_name: "meta-llama/Llama-3.1-8B-Instruct".to_string(),
        engine: 0,
        block_size: 16,
        num_gpu_blocks: 27_000,
        enable_prefix_caching: true,
        max_loras: 2,
    };
    let mut m = EngineMetrics::new(2048);
    m.prompt_tokens_total = 1_536;
    m.prompt_tokens_cached_total = 512;
    m.prompt_tokens_local_compute_total = 1_024;
    m.generation_tokens_total = 420;
    m.prefix_cache_queries_total = 1_536;
    m.prefix_cache_hits_total = 512;
    m.num_preemptions_total = 1;
    m.count_finished(FinishReason::Stop);
    m.count_finished(FinishReason::Stop);
    m.count_finished(FinishReason::Length);
    for (ttft, e2e, prompt, generated) in [
        (0.045, 1.25, 512.0, 150.0),
        (0.25, 2.5, 1000.0, 200.0),
        (3.0, 9.75, 24.0, 70.0),
    ] {
        m.time_to_first_token_seconds.observe(ttft);
        m.e2e_request_latency_seconds.observe(e2e);
        m.request_queue_time_seconds.observe(ttft / 2.0);
        m.request_prefill_time_seconds.observe(ttft / 2.0);
        m.request_decode_time_seconds.observe(e2e - ttft);
        m.request_inference_time_seconds.observe(e2e - ttft / 2.0);
        m.request_time_per_output_token_seconds
            .observe((e2e - ttft) / (generated - 1.0));
        m.request_prompt_tokens.observe(prompt);
        m.request_generation_tokens.observe(generated);
        m.request_params_max_tokens.observe(generated + 50.0);
        m.request_prefill_kv_computed_tokens
            .observe(prompt - 512.0_f64.min(prompt));
    }
    // Two client requests: one of n = 2 (its longest choice 200 tokens), one of n = 1.
    for (n, longest) in [(2.0, 200.0), (1.0, 70.0)] {
        m.request_params_n.observe(n);
        m.request_max_num_generation_tokens.observe(longest);
    }
    for itl in [0.008, 0.0125, 0.02, 0.5] {
        m.inter_token_latency_seconds.observe(itl);
    }
    for tokens in [512.0, 1000.0, 3.0, 3.0, 8192.0] {
        m.iteration_tokens_total.observe(tokens);
    }
    let gauges = EngineGauges {
        num_requests_running: 3,
        num_requests_waiting: 1,
        num_requests_waiting_deferred: 1,
        kv_cache_usage_perc: 0.125,
        running_lora_adapters: vec!["sql-lora".to_string(), "tweet-summary".to_string()],
        waiting_lora_adapters: vec![],
    };
    (info, m, gauges)
}

fn render_fixture() -> String {
    let (info, m, gauges) = fixture();
    let mut out = String::new();
    render_prometheus(&mut out, &info, &m, &gauges, 1_745_000_000.5);
    out
}

#[test]
fn output_matches_the_golden_file() {
    let actual = render_fixture();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(GOLDEN, &actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(GOLDEN).unwrap_or_default();
    if actual == expected {
        return;
    }
    let (a, e): (Vec<_>, Vec<_>) = (actual.lines().collect(), expected.lines().collect());
    let first = (0..a.len().max(e.len()))
        .find(|&i| a.get(i) != e.get(i))
        .unwrap_or(0);
    panic!(
        "rendered metrics differ from {GOLDEN} at line {}:\n  expected: {:?}\n  actual:   \
         {:?}\n({} lines expected, {} rendered; rerun with UPDATE_GOLDEN=1 to accept)",
        first + 1,
        e.get(first),
        a.get(first),
        e.len(),
        a.len()
    );
}

/// One parsed sample line.
struct Sample<'a> {
    name: &'a str,
    /// Label names and unescaped values, in line order.
    labels: Vec<(&'a str, String)>,
    value: f64,
}

/// Splits `name{labels} value` (labels optional); `None` if the line is malformed.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, labels)) = head.split_once('{') else {
        return Some(Sample {
            name: head,
            labels: vec![],
            value,
        });
    };
    let mut rest = labels.strip_suffix('}')?;
    let mut pairs = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut val = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => val.push('\n'),
                    c => val.push(c),
                },
                (i, '"') => break i,
                (_, c) => val.push(c),
            }
        };
        pairs.push((key, val));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    (valid_name(name) && pairs.iter().all(|(k, _)| valid_name(k))).then_some(Sample {
        name,
        labels: pairs,
        value,
    })
}

#[test]
fn every_sample_parses_and_every_required_family_is_there() {
    let text = render_fixture();
    let mut names = std::collections::HashSet::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or_default().to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Sample {
            name,
            labels,
            value,
        } = parse_sample(line).unwrap_or_else(|| panic!("malformed sample line {line:?}"));
        assert!(value.is_finite() && value >= 0.0, "odd value in {line:?}");
        let keys: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "labels not sorted in {line:?}");
        names.insert(name.to_string());
    }
    let mut required = vec![
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:lora_requests_info",
        "vllm:cache_config_info",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:num_preemptions_total",
        "vllm:request_success_total",
        "vllm:num_requests_waiting_by_reason",
        "vllm:engine_sleep_state",
        "vllm:prompt_tokens_by_source_total",
        "vllm:prompt_tokens_cached_total",
        "vllm:external_prefix_cache_queries_total",
        "vllm:external_prefix_cache_hits_total",
        "vllm:mm_cache_queries_total",
        "vllm:mm_cache_hits_total",
        "vllm:estimated_flops_per_gpu_total",
        "vllm:estimated_read_bytes_per_gpu_total",
        "vllm:estimated_write_bytes_per_gpu_total",
    ];
    let histograms = [
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:request_time_per_output_token_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_inference_time_seconds",
        "vllm:request_prefill_time_seconds",
        "vllm:request_decode_time_seconds",
        "vllm:request_prompt_tokens",
        "vllm:request_generation_tokens",
        "vllm:iteration_tokens_total",
        "vllm:request_max_num_generation_tokens",
        "vllm:request_params_n",
        "vllm:request_params_max_tokens",
        "vllm:request_prefill_kv_computed_tokens",
    ];
    for name in &required {
        assert!(typed.contains(*name), "no # TYPE line for {name}");
    }
    let series: Vec<String> = histograms
        .iter()
        .flat_map(|h| ["_bucket", "_count", "_sum"].map(|s| format!("{h}{s}")))
        .collect();
    required.extend(series.iter().map(String::as_str));
    for name in required {
        assert!(names.contains(name), "no sample of {name}");
    }
    for h in histograms {
        assert!(typed.contains(h), "no # TYPE line for {h}");
    }
}

#[test]
fn labels_carry_the_replica_and_every_finish_reason() {
    let (mut info, m, gauges) = fixture();
    info.model_name = "odd \"model\"\\name\n".to_string();
    info.engine = 3;
    info.enable_prefix_caching = false;
    let mut text = String::from("existing\n");
    render_prometheus(&mut text, &info, &m, &gauges, 0.0);
    assert!(text.starts_with("existing\n# HELP vllm:estimated_flops_per_gpu_total "));
    let model = r#"model_name="odd \"model\"\\name\n""#;
    assert!(text.contains(&format!(
        "vllm:num_requests_running{{engine=\"3\",{model}}} 3.0\n"
    )));
    for (reason, n) in [("stop", "2.0"), ("length", "1.0"), ("abort", "0.0")] {
        let line = format!(
            "vllm:request_success_total{{engine=\"3\",finished_reason=\"{reason}\",{model}}} {n}\n"
        );
        assert!(text.contains(&line), "missing {line:?}");
    }
    assert!(text.contains("enable_prefix_caching=\"False\",engine=\"3\""));
    let empty = EngineGauges::default();
    let mut text = String::new();
    render_prometheus(&mut text, &info, &m, &empty, 0.0);
    assert!(text.contains(
        "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"\",\
         waiting_lora_adapters=\"\"} 0.0\n"
    ));
}

#[test]
fn cache_config_and_waiting_reasons_follow_the_flags() {
    let (info, m, gauges) = fixture();
    let cache = CacheInfo {
        gpu_memory_utilization: 0.8,
        num_gpu_blocks_override: Some(123),
        user_specified_block_size: true,
    };
    let mut text = String::new();
    render_replica(&mut text, &info, &cache, &m, &gauges, 0.0);
    let line = text
        .lines()
        .find(|l| l.starts_with("vllm:cache_config_info{"))
        .expect("a cache_config_info sample");
    for label in [
        "block_size=\"16\"",
        "enable_prefix_caching=\"True\"",
        "engine=\"0\"",
        "gpu_memory_utilization=\"0.8\"",
        "num_gpu_blocks=\"27000\"",
        "num_gpu_blocks_override=\"123\"",
        "user_specified_block_size=\"True\"",
    ] {
        assert!(line.contains(label), "{label} missing from {line}");
    }
    let model = "model_name=\"meta-llama/Llama-3.1-8B-Instruct\"";
    for expected in [
        format!(
            "vllm:num_requests_waiting_by_reason{{engine=\"0\",{model},reason=\"capacity\"}} 0.0"
        ),
        format!(
            "vllm:num_requests_waiting_by_reason{{engine=\"0\",{model},reason=\"deferred\"}} 1.0"
        ),
        format!("vllm:engine_sleep_state{{engine=\"0\",{model},sleep_state=\"awake\"}} 1.0"),
        format!(
            "vllm:prompt_tokens_by_source_total{{engine=\"0\",{model},source=\"local_cache_hit\"}} \
             512.0"
        ),
        format!("vllm:prompt_tokens_cached_total{{engine=\"0\",{model}}} 512.0"),
    ] {
        assert!(text.lines().any(|l| l == expected), "missing {expected}");
    }
}

//! Tests of the engine specs and extraction: built-in names, selector syntax, selection
//! rules, the simulator's golden text, and errors for missing or unusable values.

use super::*;

const GOLDEN: &str = include_str!("../../../testdata/sim/metrics.golden.txt");
const NOW: Duration = Duration::from_millis(1234);

fn mapping(engine: &str) -> MetricMapping {
    MetricMapping::builtin(engine).expect("built-in engine")
}

fn check(engine: &str, text: &str, expected: Result<EndpointMetrics, ExtractError>) {
    assert_eq!(
        extract(text, &mapping(engine), NOW),
        expected,
        "{engine}: {text}"
    );
}

fn metrics(queue: u64, running: u64, kv: f64) -> EndpointMetrics {
    EndpointMetrics {
        waiting_queue_size: queue,
        running_requests: running,
        kv_cache_usage: kv,
        updated_at: NOW,
        ..EndpointMetrics::default()
    }
}

#[test]
fn builtin_specs_use_the_protocol_names() {
    let names = |engine: &str| {
        let s = EngineMetricsSpec::builtin(engine).unwrap();
        [
            s.queued_requests_spec,
            s.running_requests_spec,
            s.kv_usage_spec,
        ]
    };
    assert_eq!(
        names("vllm"),
        [
            "vllm:num_requests_waiting",
            "vllm:num_requests_running",
            "vllm:kv_cache_usage_perc"
        ]
    );
    assert_eq!(
        names("sglang"),
        [
            "sglang:num_queue_reqs",
            "sglang:num_running_reqs",
            "sglang:token_usage"
        ]
    );
    assert_eq!(
        names("trtllm-serve"),
        [
            "trtllm_num_requests_waiting",
            "trtllm_num_requests_running",
            "trtllm_kv_cache_utilization"
        ]
    );
    assert_eq!(
        names("triton-tensorrt-llm"),
        [
            "nv_trt_llm_request_metrics{request_type=\"waiting\"}",
            "nv_trt_llm_request_metrics{request_type=\"scheduled\"}",
            "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"fraction\"}"
        ]
    );
    for engine in BUILTIN_ENGINES {
        assert!(
            MetricMapping::builtin(engine).is_some(),
            "{engine} compiles"
        );
    }
    assert!(EngineMetricsSpec::builtin("default").is_none());
}

#[test]
fn selector_syntax() {
    let ok = |text: &str, name: &str, labels: &[(&str, &str)]| {
        let sel: Selector = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        let want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!((sel.name.as_str(), sel.labels), (name, want), "{text}");
    };
    ok(
        "vllm:num_requests_waiting",
        "vllm:num_requests_waiting",
        &[],
    );
    ok("  m{}  ", "m", &[]);
    ok("m{a=b}", "m", &[("a", "b")]);
    ok("m{a=\"b\"}", "m", &[("a", "b")]);
    ok("m{a='b c'}", "m", &[("a", "b c")]);
    ok(
        "m { a = b , c = \"d,}\" , }",
        "m",
        &[("a", "b"), ("c", "d,}")],
    );
    ok(r#"m{a="x\"y\\z"}"#, "m", &[("a", "x\"y\\z")]);
    ok("m{a=}", "m", &[("a", "")]);
    for bad in [
        "",
        "9m",
        "m-x",
        "m{a=b",
        "m{a!=b}",
        "m{a=~b}",
        "m{a!~b}",
        "m{a}",
        "m{9=b}",
        "m{a=\"b}",
        "m{a=\"b\" c}",
    ] {
        assert!(bad.parse::<Selector>().is_err(), "{bad:?} should not parse");
    }
    let sel: Selector = "m{a=b,c=\"d\"}".parse().unwrap();
    assert_eq!(sel.to_string(), "m{a=\"b\",c=\"d\"}");
}

#[test]
fn extracts_the_simulators_golden_text() {
    let mut want = metrics(1, 3, 0.125);
    want.active_adapters = vec!["sql-lora".into(), "tweet-summary".into()];
    want.max_active_adapters = 2;
    want.cache_block_size = Some(16);
    want.cache_num_blocks = Some(27000);
    want.served_model = Some("meta-llama/Llama-3.1-8B-Instruct".into());
    check("vllm", GOLDEN, Ok(want));
}

/// The served model comes from the running gauge's `model_name` label; an empty
/// label or none leaves it unknown.
#[test]
fn served_model_is_the_running_gauges_model_name() {
    let text = |label: &str| {
        format!(
            "vllm:num_requests_waiting{{model_name=\"q\"}} 0\n\
             vllm:num_requests_running{label} 1\n\
             vllm:kv_cache_usage_perc{{model_name=\"k\"}} 0.5\n"
        )
    };
    let mut want = metrics(0, 1, 0.5);
    want.served_model = Some("base/m".into());
    check("vllm", &text("{model_name=\"base/m\"}"), Ok(want));
    check("vllm", &text("{model_name=\"\"}"), Ok(metrics(0, 1, 0.5)));
    check("vllm", &text(""), Ok(metrics(0, 1, 0.5)));
}

#[test]
fn vllm_kv_falls_back_to_the_older_name() {
    let old = "vllm:num_requests_waiting 0\nvllm:num_requests_running 1\n\
               vllm:gpu_cache_usage_perc 0.5\n";
    check("vllm", old, Ok(metrics(0, 1, 0.5)));
    let both = format!("{old}vllm:kv_cache_usage_perc 0.25\n");
    check("vllm", &both, Ok(metrics(0, 1, 0.25)));
}

#[test]
fn selection_rules() {
    // Latest timestamp wins; without timestamps (or on a tie) the first series does.
    let text = "q{e=\"0\"} 1 100\nq{e=\"1\"} 2 300\nq{e=\"2\"} 3 200\n\
                r{e=\"0\"} 4\nr{e=\"1\"} 5\n\
                k 0.1 5\nk 0.2 5\n\
                lora{running_lora_adapters=\"old\",max_lora=\"1\"} 100\n\
                lora{running_lora_adapters=\"new, also\",max_lora=\"4\",waiting_lora_adapters=\"w\"} 300\n\
                lora{running_lora_adapters=\"mid\",max_lora=\"2\"} 200\n\
                lora{running_lora_adapters=\"nan\",max_lora=\"9\"} NaN\n";
    let spec = EngineMetricsSpec {
        name: "custom".into(),
        queued_requests_spec: "q".into(),
        running_requests_spec: "r".into(),
        kv_usage_spec: "k".into(),
        lora_spec: "lora".into(),
        ..EngineMetricsSpec::default()
    };
    let m = extract(text, &MetricMapping::new(&spec).unwrap(), NOW).unwrap();
    assert_eq!(
        (m.waiting_queue_size, m.running_requests, m.kv_cache_usage),
        (2, 4, 0.1)
    );
    assert_eq!(m.active_adapters, ["new", "also"]);
    assert_eq!(m.waiting_adapters, ["w"]);
    assert_eq!(m.max_active_adapters, 4);
}

#[test]
fn label_matchers_pick_series() {
    let text = "nv_trt_llm_request_metrics{request_type=\"waiting\",model=\"m\"} 7\n\
                nv_trt_llm_request_metrics{request_type=\"scheduled\",model=\"m\"} 2\n\
                nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"fraction\"} 0.75\n\
                nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"tokens_per\"} 64\n\
                nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"max\"} 5000\n";
    let mut want = metrics(7, 2, 0.75);
    want.cache_block_size = Some(64);
    want.cache_num_blocks = Some(5000);
    check("triton-tensorrt-llm", text, Ok(want));

    let no_waiting = text.replace("\"waiting\"", "\"other\"");
    check(
        "triton-tensorrt-llm",
        &no_waiting,
        Err(ExtractError::NoMatchingSeries {
            family: Family::QueuedRequests,
            selector: "nv_trt_llm_request_metrics{request_type=\"waiting\"}".into(),
        }),
    );
}

#[test]
fn engine_specific_cache_geometry() {
    let sglang = "sglang:num_queue_reqs 1\nsglang:num_running_reqs 2\nsglang:token_usage 0.3\n\
                  sglang:cache_config_info{page_size=\"1\",num_pages=\"900\"} 1\n";
    let mut want = metrics(1, 2, 0.3);
    want.cache_block_size = Some(1);
    want.cache_num_blocks = Some(900);
    check("sglang", sglang, Ok(want));

    let trtllm = "trtllm_num_requests_waiting 0\ntrtllm_num_requests_running 8\n\
                  trtllm_kv_cache_utilization 1.5\ntrtllm_kv_cache_tokens_per_block 32\n";
    let mut want = metrics(0, 8, 1.0);
    want.cache_block_size = Some(32);
    check("trtllm-serve", trtllm, Ok(want));
}

#[test]
fn errors_name_the_family() {
    let base =
        "vllm:num_requests_waiting 0\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5\n";
    let without = |name: &str| {
        base.lines()
            .filter(|l| !l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (metric, family) in [
        ("vllm:num_requests_waiting", Family::QueuedRequests),
        ("vllm:num_requests_running", Family::RunningRequests),
        ("vllm:kv_cache_usage_perc", Family::KvUsage),
    ] {
        let err = extract(&without(metric), &mapping("vllm"), NOW).unwrap_err();
        assert_eq!(
            err,
            ExtractError::MissingFamily {
                family,
                metric: metric.into(),
                malformed: Malformed::default(),
            }
        );
        assert!(err.to_string().contains(family.spec_field()), "{err}");
    }

    let html = "<html>\n<body>not metrics</body>\n</html>\n";
    let err = extract(html, &mapping("vllm"), NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "metric family `vllm:num_requests_waiting` (queuedRequestsSpec) not found \
         (3 malformed lines; first at line 1: invalid metric name)"
    );
    assert!(extract("", &mapping("vllm"), NOW).is_err());

    let bad = |text: &str| extract(&format!("{base}{text}\n"), &mapping("vllm"), NOW);
    let replaced = |from: &str, to: &str| extract(&base.replace(from, to), &mapping("vllm"), NOW);
    assert!(matches!(
        replaced("waiting 0", "waiting -1"),
        Err(ExtractError::InvalidValue { .. })
    ));
    assert!(matches!(
        replaced("running 1", "running +Inf"),
        Err(ExtractError::InvalidValue { .. })
    ));
    assert!(matches!(
        replaced("perc 0.5", "perc NaN"),
        Err(ExtractError::InvalidValue { .. })
    ));
    assert!(matches!(
        bad("vllm:lora_requests_info{max_lora=\"two\"} 1"),
        Err(ExtractError::InvalidLabel { .. })
    ));
    // vLLM reports `None` before profiling its cache: unknown, not an error.
    let m = bad("vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"None\"} 1").unwrap();
    assert_eq!((m.cache_block_size, m.cache_num_blocks), (Some(16), None));
    // A malformed unrelated line does not spoil the scrape.
    assert!(bad("garbage{").is_ok());
}

#[test]
fn disabled_metrics_are_not_required() {
    let spec = EngineMetricsSpec {
        name: "queue-only".into(),
        queued_requests_spec: "q".into(),
        ..EngineMetricsSpec::default()
    };
    let m = extract("q 4\n", &MetricMapping::new(&spec).unwrap(), NOW).unwrap();
    assert_eq!(m, metrics(4, 0, 0.0));
}

#[test]
fn specs_deserialize_with_gie_field_names() {
    let yaml = "\
name: vllm
queuedRequestsSpec: my_queue
runningRequestsSpec: 'my_running{pool=\"a\"}'
kvUsageSpec: my_kv
loraSpec: ''
cacheInfoSpec: my_info
cacheBlockSizeLabelName: bs
cacheNumBlocksLabelName: nb
";
    let spec: EngineMetricsSpec = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(spec.running_requests_spec, "my_running{pool=\"a\"}");
    assert_eq!(spec.cache_block_size_label_name, "bs");
    assert!(serde_saphyr::from_str::<EngineMetricsSpec>("name: x\nkvUsage: y\n").is_err());

    // A configured engine replaces the built-in whole: its missing fields are disabled.
    let engines = EngineMappings::new(&[spec], DEFAULT_ENGINE).unwrap();
    let text = "my_queue 1\nmy_running{pool=\"a\"} 2\nmy_kv 0.5\nmy_info{bs=\"8\",nb=\"10\"} 1\n";
    let m = extract(text, engines.get(Some("vllm")), NOW).unwrap();
    assert_eq!(
        (m.cache_block_size, m.cache_num_blocks),
        (Some(8), Some(10))
    );
    assert_eq!(engines.get(None).engine(), "vllm");
    assert_eq!(engines.get(Some("unknown")).engine(), "vllm");
    assert_eq!(engines.get(Some("sglang")).engine(), "sglang");

    let named = |name: &str| EngineMetricsSpec {
        name: name.into(),
        ..EngineMetricsSpec::default()
    };
    assert!(EngineMappings::new(&[named("default")], DEFAULT_ENGINE).is_err());
    assert!(EngineMappings::new(&[named("a"), named("a")], DEFAULT_ENGINE).is_err());
    assert!(EngineMappings::new(&[], "nope").is_err());
    let bad_selector = EngineMetricsSpec {
        kv_usage_spec: "kv{a!=b}".into(),
        ..named("x")
    };
    let err = EngineMappings::new(&[bad_selector], DEFAULT_ENGINE).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("engine `x`: field `kvUsageSpec`: "),
        "{err}"
    );
}

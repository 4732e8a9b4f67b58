//! The loader: GIE's defaulting (§3.2–§3.3), the ready-made configs, typed host data,
//! accepted-and-ignored GIE plugins, objectives, and a table of bad files whose errors
//! must name the file, plugin and field. Also: no input makes the loader panic.

use rand::rngs::StdRng;

use super::*;
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::saturation::{Detector, UtilizationParams};
use crate::epp::scheduler::testing::{NOW, pod, request, rng};
use crate::epp::scheduler::{CycleState, SchedulingContext};

const HEADER: &str =
    "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n";

fn load(body: &str) -> Result<LoadedConfig, ConfigError> {
    from_yaml_str(&format!("{HEADER}{body}"), "cfg.yaml")
}

/// A profile's plugin references: (pluginRef, weight).
type Refs = Vec<(String, Option<f64>)>;

/// The effective profiles as (name, refs).
fn profiles(c: &LoadedConfig) -> Vec<(String, Refs)> {
    c.spec
        .scheduling_profiles
        .iter()
        .map(|p| {
            let refs = p
                .plugins
                .iter()
                .map(|r| (r.plugin_ref.clone(), r.weight))
                .collect();
            (p.name.clone(), refs)
        })
        .collect()
}

fn plugin_types(c: &LoadedConfig) -> Vec<&str> {
    c.spec
        .plugins
        .iter()
        .map(|p| p.type_name.as_str())
        .collect()
}

/// The parameters of the config's `utilization-detector`.
fn utilization(c: &LoadedConfig) -> &UtilizationParams {
    match &c.saturation {
        Detector::Utilization(d) => d.params(),
        other => panic!("expected utilization-detector, got {other:?}"),
    }
}

fn own(v: &[(&str, Option<f64>)]) -> Refs {
    v.iter().map(|(n, w)| (n.to_string(), *w)).collect()
}

#[test]
fn gie_default_matches_gie() {
    let c = gie_default();
    let want = own(&[
        ("queue-scorer", Some(2.0)),
        ("kv-cache-utilization-scorer", Some(2.0)),
        ("prefix-cache-scorer", Some(3.0)),
        ("max-score-picker", None),
    ]);
    assert_eq!(profiles(&c), [("default".to_string(), want)]);
    for added in [
        "single-profile-handler",
        "max-score-picker",
        "openai-parser",
        "utilization-detector",
    ] {
        assert!(
            plugin_types(&c).contains(&added),
            "{added} in {:?}",
            plugin_types(&c)
        );
    }
    assert_eq!(c.scheduler.profiles()[0].weights(), [2.0, 2.0, 3.0]);
    assert_eq!(c.parser, ParserKind::OpenAi);
    assert_eq!(*utilization(&c), UtilizationParams::default());
    assert_eq!(c.data_layer.len(), 1);
    assert_eq!(c.data_layer[0].extractors.len(), 1);
    // GIE's hermetic "select lower queue and kv cache" with the shipped default.
    let cands = [pod(0, 3, 0.2), pod(1, 0, 0.1), pod(2, 10, 0.2)];
    let mut r = rng(3);
    let mut cycle = CycleState::default();
    let mut ctx = SchedulingContext::new(NOW, &mut r, &mut cycle);
    let res = c
        .scheduler
        .schedule(&request("my-model", "test1"), &cands, &mut ctx);
    assert_eq!(res.unwrap().primary, [1]);
}

#[test]
fn defaulting_builds_gie_default_profile() {
    let c = load("plugins:\n- type: queue-scorer\n- type: kv-cache-utilization-scorer\n- name: prefix\n  type: prefix-cache-scorer\n- type: metrics-data-source\n").unwrap();
    let want = own(&[
        ("queue-scorer", Some(1.0)),
        ("kv-cache-utilization-scorer", Some(1.0)),
        ("prefix", Some(1.0)),
        ("max-score-picker", None),
    ]);
    assert_eq!(profiles(&c), [("default".to_string(), want)]);
    assert_eq!(c.spec.plugins[2].name.as_deref(), Some("prefix"));
    assert_eq!(c.spec.plugins[0].name.as_deref(), Some("queue-scorer"));
    // The declared data source is wired to a default extractor.
    let dl = c.spec.data_layer.as_ref().unwrap();
    assert_eq!(dl.sources[0].plugin_ref, "metrics-data-source");
    assert_eq!(
        dl.sources[0].extractors[0].plugin_ref,
        "core-metrics-extractor"
    );
    assert!(
        c.notes.iter().any(|n| n.contains("profile `default`")),
        "{:?}",
        c.notes
    );
    // An existing picker is reused, not a new max-score-picker.
    let c = load("plugins:\n- type: queue-scorer\n- type: random-picker\n  parameters: {maxNumOfEndpoints: 2}\n").unwrap();
    assert_eq!(
        profiles(&c)[0].1,
        own(&[("queue-scorer", Some(1.0)), ("random-picker", None)])
    );
    assert!(!plugin_types(&c).contains(&"max-score-picker"));
}

/// One scheduling decision and its `on_scheduled`, as the director makes them: the
/// target's index.
fn pick(
    c: &LoadedConfig,
    req: &LlmRequest,
    cands: &[Candidate],
    r: &mut StdRng,
    cycle: &mut CycleState,
) -> usize {
    let mut ctx = SchedulingContext::new(NOW, r, cycle);
    let t = c.scheduler.schedule(req, cands, &mut ctx).unwrap().target();
    c.scheduler.on_scheduled(req, &cands[t], ctx.cycle);
    t
}

#[test]
fn igw_default_loads_and_spreads_bursts() {
    let c = igw_default();
    assert_eq!(c.scheduler.profiles()[0].weights(), [3.0, 1.0, 1.0, 3.0]);
    // 40 requests inside one scrape interval, on endpoints that all looked alike.
    let burst = |prompt: &dyn Fn(usize) -> String| -> Vec<u64> {
        let mut cands: Vec<_> = (0..4).map(|i| pod(i, 0, 0.3)).collect();
        let mut r = rng(5);
        let mut cycle = CycleState::default();
        for k in 0..40 {
            let req = request("m", &prompt(k));
            let t = pick(&c, &req, &cands, &mut r, &mut cycle);
            cands[t].sent_since_scrape += 1;
        }
        cands.iter().map(|c| c.sent_since_scrape).collect()
    };
    // Prompts that share nothing: the load scorer alone spreads them evenly.
    let distinct = burst(&|k| format!("{k:<80}"));
    assert!(distinct.iter().all(|&n| n == 10), "{distinct:?}");
    // Prompts whose first 64 characters are alike: the prefix pulls them together
    // until an endpoint runs `loadSlack` ahead, so the burst still spreads.
    let shared = burst(&|k| format!("{k:>80}"));
    assert!(shared.iter().all(|&n| (7..=13).contains(&n)), "{shared:?}");
}

#[test]
fn gie_token_load_config_routes_by_in_flight_tokens() {
    // A GIE v1.5 file: the producer is accepted (igw books tokens itself) and the
    // scorer alone sends each request to the endpoint holding the fewest tokens.
    let c = load(
        "plugins:\n- type: inflight-load-producer\n- type: token-load-scorer\n  parameters: {queueThresholdTokens: 100000}\n\
         schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: token-load-scorer\n",
    )
    .unwrap();
    let mut cands: Vec<_> = (0..3).map(|i| pod(i, 0, 0.0)).collect();
    let mut r = rng(3);
    let mut cycle = CycleState::default();
    // Request sizes in tokens: each is booked on the endpoint it goes to.
    for size in [900, 500, 400, 300, 700, 100] {
        let t = pick(&c, &request("m", ""), &cands, &mut r, &mut cycle);
        let fewest = cands.iter().map(|c| c.in_flight_tokens).min().unwrap();
        assert_eq!(cands[t].in_flight_tokens, fewest, "size {size}");
        cands[t].in_flight_tokens += size;
    }
    let held: Vec<u64> = cands.iter().map(|c| c.in_flight_tokens).collect();
    let mut sorted = held.clone();
    sorted.sort();
    // 900, 500, 400 to the three; 300 to the 400 (700); 700 to the 500; 100 to the 700.
    assert_eq!(sorted, [800, 900, 1_200], "{held:?}");
}

#[test]
fn host_data_is_typed() {
    let c = load(
        "plugins:
- type: queue-scorer
- name: sat
  type: utilization-detector
  parameters: {queueDepthThreshold: 8, kvCacheUtilThreshold: 0.9, metricsStalenessThreshold: 1s, headroom: 0.1}
- name: src
  type: metrics-data-source
  parameters: {scheme: https, path: /stats}
- name: ext
  type: core-metrics-extractor
  parameters:
    defaultEngine: sglang
    engineConfigs:
    - name: my-engine
      queuedRequestsSpec: my_queue
      kvUsageSpec: 'my_kv{kind=\"gpu\"}'
- type: passthrough-parser
- type: fcfs-ordering-policy
schedulingProfiles:
- name: default
  plugins: [{pluginRef: queue-scorer}]
saturationDetector: {pluginRef: sat}
parser: {pluginRef: passthrough-parser}
dataLayer:
  sources:
  - pluginRef: src
    extractors: [{pluginRef: ext}]
featureGates: [flowControl]
flowControl:
  maxBytes: 1Gi
  defaultRequestTTL: 30s
  priorityBands:
  - {priority: 1, maxRequests: 100}
",
    )
    .unwrap();
    assert_eq!(utilization(&c).queue_depth_threshold, 8);
    assert_eq!(
        utilization(&c).metrics_staleness_threshold.0,
        std::time::Duration::from_secs(1)
    );
    assert_eq!(c.parser, ParserKind::Passthrough);
    assert_eq!(c.data_layer[0].params.scheme, "https");
    let (name, ext) = &c.data_layer[0].extractors[0];
    assert_eq!(name, "ext");
    assert_eq!(ext.default_engine, "sglang");
    assert_eq!(ext.engine_configs[0].kv_usage_spec, "my_kv{kind=\"gpu\"}");
    let fc = c.flow_control.as_ref().unwrap();
    assert_eq!(
        fc.max_bytes.as_ref().and_then(Quantity::value),
        Some(1 << 30)
    );
    assert_eq!(fc.priority_bands[0].max_requests, Some(100));
    assert!(c.feature_gates.flow_control);
    // The detector is not in the explicit profile, so it is no filter there.
    assert_eq!(profiles(&c)[0].1.len(), 2);
    assert!(
        c.notes.iter().any(|n| n.contains("fcfs-ordering-policy")),
        "{:?}",
        c.notes
    );
    // Legacy metrics and no dataLayer: no sources.
    let c = load("featureGates: [enableLegacyMetrics]\nplugins: [{type: queue-scorer}]\n").unwrap();
    assert!(c.data_layer.is_empty());
}

/// Loads `body` (after the header unless it has its own) and checks that the error
/// contains every `want` substring.
fn check(body: &str, want: &[&str]) {
    let whole = body.starts_with("apiVersion") || body.starts_with("kind");
    let text = if whole {
        body.to_string()
    } else {
        format!("{HEADER}{body}")
    };
    let err = match from_yaml_str(&text, "cfg.yaml") {
        Ok(_) => panic!("loaded, expected an error with {want:?}:\n{body}"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with("cfg.yaml"), "{err}");
    for w in want {
        assert!(err.contains(w), "`{w}` not in: {err}");
    }
}

#[test]
fn errors_name_the_file_plugin_and_field() {
    let p = "plugins:\n- type: queue-scorer\n";
    let cases: &[(&str, &[&str])] = &[
        ("foo: 1\nplugins: []\n", &["foo"]),
        (
            "apiVersion: config.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins: []\n",
            &["`apiVersion`", "config.x-k8s.io/v1alpha1"],
        ),
        (
            "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: PickerConfig\nplugins: []\n",
            &["`kind`", "PickerConfig"],
        ),
        (
            "kind: EndpointPickerConfig\nplugins: []\n",
            &["missing field `apiVersion`"],
        ),
        ("schedulingProfiles: []\n", &["plugins"]),
        (
            "featureGates: [fooGate]\nplugins: []\n",
            &["featureGates", "fooGate"],
        ),
        (
            "plugins:\n- type: queue-scorre\n",
            &[
                "plugin `queue-scorre` (type `queue-scorre`)",
                "unknown plugin type",
                "did you mean `queue-scorer`",
            ],
        ),
        ("plugins:\n- type: ''\n", &["plugins[0]", "`type`"]),
        (
            "plugins:\n- name: q\n  type: queue-scorer\n  parameters: {depth: 2}\n",
            &["plugin `q` (type `queue-scorer`)", "depth"],
        ),
        (
            "plugins:\n- type: max-score-picker\n  parameters: {maxEndpoints: 2}\n",
            &["(type `max-score-picker`)", "maxEndpoints"],
        ),
        (
            "plugins:\n- type: max-score-picker\n  parameters: {maxNumOfEndpoints: 0}\n",
            &[
                "(type `max-score-picker`)",
                "parameters.maxNumOfEndpoints",
                "at least 1",
            ],
        ),
        (
            "plugins:\n- type: max-score-picker\n  parameters: {maxNumOfEndpoints: many}\n",
            &["parameters.maxNumOfEndpoints"],
        ),
        (
            "plugins:\n- type: utilization-detector\n  parameters: {kvCacheUtilThreshold: 1.5}\n",
            &[
                "(type `utilization-detector`)",
                "parameters.kvCacheUtilThreshold",
            ],
        ),
        (
            "plugins:\n- type: utilization-detector\n  parameters: {metricsStalenessThreshold: soon}\n",
            &["parameters.metricsStalenessThreshold", "soon"],
        ),
        (
            "plugins:\n- type: prefix-cache-scorer\n  parameters: {blockSizeTokens: -16}\n",
            &["(type `prefix-cache-scorer`)", "parameters.blockSizeTokens"],
        ),
        (
            "plugins:\n- type: prefix-cache-scorer\n  parameters: {lruCapacityPerServer: 0}\n",
            &["parameters.lruCapacityPerServer"],
        ),
        (
            "plugins:\n- type: weighted-round-robin-picker\n  parameters: {weights: {pod-a: 0}}\n",
            &["parameters.weights.pod-a"],
        ),
        (
            "plugins:\n- type: core-metrics-extractor\n  parameters:\n    engineConfigs:\n    - name: e\n      queueSpec: x\n",
            &[
                "(type `core-metrics-extractor`)",
                "engineConfigs[0]",
                "queueSpec",
            ],
        ),
        (
            "plugins:\n- type: metrics-data-source\n  parameters: {scheme: ftp}\n",
            &["parameters.scheme", "ftp"],
        ),
        (
            "plugins:\n- type: openai-parser\n  parameters: {strict: true}\n",
            &["(type `openai-parser`)", "strict"],
        ),
        (
            "plugins:\n- type: vllmgrpc-parser\n",
            &["(type `vllmgrpc-parser`)", "not supported by igw"],
        ),
        (
            "plugins:\n- type: concurrency-detector\n  parameters: {concurrencyMode: hybrid}\n",
            &[
                "(type `concurrency-detector`)",
                "parameters.concurrencyMode",
                "hybrid",
            ],
        ),
        (
            "plugins:\n- type: concurrency-detector\n  parameters: {maxConcurrency: 0}\n",
            &["(type `concurrency-detector`)", "parameters.maxConcurrency"],
        ),
        (
            "plugins:\n- type: token-load-scorer\n  parameters: {queueThresholdTokens: lots}\n",
            &[
                "(type `token-load-scorer`)",
                "parameters.queueThresholdTokens",
            ],
        ),
        (
            "plugins:\n- type: token-load-scorer\n  parameters: {inFlightLoadProducerName: x}\n",
            &["(type `token-load-scorer`)", "inFlightLoadProducerName"],
        ),
        (
            "plugins:\n- name: q\n  type: queue-scorer\n- name: q\n  type: kv-cache-utilization-scorer\n",
            &["duplicate plugin name `q`"],
        ),
        (
            &format!(
                "{p}schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n    weight: -1\n"
            ),
            &[
                "schedulingProfiles `default`",
                "plugin `queue-scorer`",
                "`weight`",
                "-1",
            ],
        ),
        (
            &format!(
                "{p}schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n    weight: .nan\n"
            ),
            &["`weight`", "NaN"],
        ),
        (
            &format!("{p}schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: nope\n"),
            &["schedulingProfiles `default`", "pluginRef", "`nope`"],
        ),
        (
            &format!(
                "{p}schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n    weigth: 2\n"
            ),
            &["weigth"],
        ),
        (
            &format!(
                "{p}- type: random-picker\n- type: max-score-picker\nschedulingProfiles:\n- name: a\n  plugins: [{{pluginRef: random-picker}}, {{pluginRef: max-score-picker}}]\n"
            ),
            &["schedulingProfiles `a`", "more than one picker"],
        ),
        (
            &format!(
                "{p}- type: metrics-data-source\nschedulingProfiles:\n- name: a\n  plugins: [{{pluginRef: metrics-data-source}}]\n"
            ),
            &[
                "plugin `metrics-data-source` (type `metrics-data-source`)",
                "not a filter, scorer or picker",
            ],
        ),
        (
            &format!("{p}schedulingProfiles:\n- name: a\n- name: b\n"),
            &["schedulingProfiles", "profile handler"],
        ),
        (
            &format!(
                "{p}- type: single-profile-handler\nschedulingProfiles:\n- name: a\n- name: b\n"
            ),
            &["single-profile-handler", "2"],
        ),
        (
            &format!(
                "{p}- type: single-profile-handler\n- name: h2\n  type: single-profile-handler\n"
            ),
            &["more than one profile handler"],
        ),
        (
            &format!("{p}parser: {{pluginRef: queue-scorer}}\n"),
            &["parser", "not a parser"],
        ),
        (
            &format!("{p}parser: {{pluginRef: missing}}\n"),
            &["parser", "`missing`"],
        ),
        (
            &format!("{p}saturationDetector: {{pluginRef: queue-scorer}}\n"),
            &["saturationDetector", "not a saturation detector"],
        ),
        (
            &format!("{p}dataLayer:\n  sources: [{{pluginRef: queue-scorer}}]\n"),
            &["dataLayer.sources[0]", "not a data source"],
        ),
        (
            &format!("{p}flowControl: {{maxByte: 10}}\n"),
            &["flowControl", "maxByte"],
        ),
        (
            &format!("{p}flowControl:\n  priorityBands: [{{priority: 1, maxBytes: lots}}]\n"),
            &["flowControl", "priorityBands[0].maxBytes"],
        ),
        ("plugins: [", &["cfg.yaml"]),
    ];
    for (body, want) in cases {
        check(body, want);
    }
}

#[test]
fn no_input_panics() {
    let texts = [GIE_DEFAULT_YAML, IGW_DEFAULT_YAML];
    for text in texts {
        for cut in 0..text.len() {
            let _ = from_yaml_str(&text[..cut], "cut.yaml");
        }
    }
    for text in [
        "",
        "~",
        "[]",
        "- a",
        "plugins: 5",
        "\u{0}",
        "apiVersion: &a [*a]",
        "{{{{",
    ] {
        assert!(from_yaml_str(text, "odd.yaml").is_err(), "{text:?}");
    }
}

#[test]
fn objectives_file() {
    let o = objectives::Objectives::from_yaml_str(
        "objectives:\n- name: interactive\n  priority: 10\n- name: batch\n  priority: -1\n- name: plain\n",
        "obj.yaml",
    )
    .unwrap();
    assert_eq!(o.priority(Some("interactive")), 10);
    assert_eq!(o.priority(Some("batch")), -1);
    assert_eq!(o.priority(Some("plain")), 0);
    assert_eq!(o.priority(Some("unknown")), 0);
    assert_eq!(o.priority(None), 0);
    let bad = [
        (
            "objectives:\n- name: a\n- name: a\n",
            "duplicate objective `a`",
        ),
        ("objectives:\n- name: a\n  prio: 1\n", "prio"),
    ];
    for (text, want) in bad {
        let err = objectives::Objectives::from_yaml_str(text, "obj.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("obj.yaml") && err.contains(want), "{err}");
    }
}

/// What a user sees: no parser-library wording, the line of a semantic error as of a
/// syntax error, duplicate profiles called that, and empty files called empty (an
/// objectives file the same as a configuration).
#[test]
fn user_facing_errors_speak_plainly_and_name_the_line() {
    let text = format!("{HEADER}plugins:\n- type: queue-scorer\n---\napiVersion: x\n");
    let err = from_yaml_str(&text, "cfg.yaml").unwrap_err().to_string();
    assert!(err.contains("more than one YAML document"), "{err}");
    assert!(!err.contains("from_str_multiple"), "{err}");
    let huge = format!(
        "{HEADER}plugins:\n{}",
        "- type: queue-scorer\n".repeat(150_000)
    );
    let err = from_yaml_str(&huge, "cfg.yaml").unwrap_err().to_string();
    assert!(err.contains("too large"), "{err}");
    assert!(!err.contains("budget") && !err.contains("Nodes {"), "{err}");

    let semantic = format!(
        "{HEADER}plugins:\n- type: queue-scorer\n- name: p\n  type: prefix-cache-scorer\n  parameters:\n    blockSize: -4\n"
    );
    let err = from_yaml_str(&semantic, "cfg.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cfg.yaml: line 8: plugin `p`"), "{err}");
    let duplicate = format!(
        "{HEADER}plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: a\n  plugins:\n  - pluginRef: queue-scorer\n- name: a\n  plugins:\n  - pluginRef: queue-scorer\n"
    );
    let err = from_yaml_str(&duplicate, "cfg.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "cfg.yaml: line 9: schedulingProfiles: duplicate profile name `a`"
    );
    let unknown_ref = format!(
        "{HEADER}plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: a\n  plugins:\n  - pluginRef: nope\n"
    );
    let err = from_yaml_str(&unknown_ref, "cfg.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cfg.yaml: line 8: "), "{err}");

    for blank in ["", "\n# nothing yet\n"] {
        let err = from_yaml_str(blank, "cfg.yaml").unwrap_err().to_string();
        assert!(err.starts_with("cfg.yaml: the file is empty"), "{err}");
        let err = objectives::Objectives::from_yaml_str(blank, "obj.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("obj.yaml: the file is empty"), "{err}");
    }
}

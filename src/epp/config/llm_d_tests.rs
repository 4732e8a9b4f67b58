//! llm-d Router's form of the file loads too: its API group, its `requestHandler` and
//! `dataLayer` fields, and its feature gates with `=false` (llm-d-facts §1.3).

use super::*;

#[test]
fn llm_d_router_configs_load() {
    let text = "\
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl=false, haPopulateNonLeaderDatastore]
plugins:
- type: queue-scorer
- type: passthrough-parser
- type: openai-parser
- type: metrics-data-source
- type: core-metrics-extractor
- name: endpoints
  type: file-discovery
  parameters: {path: /etc/llm-d/endpoints.yaml, watchFile: true}
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
requestHandler:
  parsers:
  - pluginRef: passthrough-parser
  - pluginRef: openai-parser
dataLayer:
  injectDefaults: true
  discovery: {pluginRef: endpoints}
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: core-metrics-extractor
";
    let c = from_yaml_str(text, "llm-d.yaml").unwrap();
    assert_eq!(c.parser, ParserKind::Passthrough, "the first parser listed");
    assert!(!c.feature_gates.flow_control);
    let notes = c.notes.join("\n");
    // The earlier `discovery: {pluginRef}` form names the endpoints file.
    assert_eq!(
        c.discovery,
        Some(FileDiscoveryParams {
            path: "/etc/llm-d/endpoints.yaml".into(),
            watch_file: true
        })
    );
    for said in ["one parser per pool", "dataLayer.injectDefaults"] {
        assert!(notes.contains(said), "`{said}` not said in:\n{notes}");
    }
}

#[test]
fn llm_d_mistakes_are_still_errors() {
    let head = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n";
    for (body, want) in [
        (
            "featureGates: [flowControl=maybe]\n",
            "unknown feature gate",
        ),
        ("requestHandler: {parsers: [], extra: 1}\n", "extra"),
        (
            "dataLayer: {sources: [], discover: {pluginRef: x}}\n",
            "discover",
        ),
        (
            "parser: {pluginRef: openai-parser}\nrequestHandler: {parsers: [{pluginRef: openai-parser}]}\n",
            "not both",
        ),
        (
            "dataLayer: {discovery: {endpoints: {pluginRef: queue-scorer}}}\n",
            "llm-d.yaml: dataLayer.discovery.endpoints: plugin `queue-scorer` (type `queue-scorer`) is not a discovery plugin",
        ),
        (
            "dataLayer: {discovery: {endpoints: {pluginRef: nowhere}}}\n",
            "nowhere",
        ),
        (
            "dataLayer: {discovery: {}}\n",
            "name the discovery plugin in `endpoints.pluginRef`",
        ),
        (
            "- {name: f, type: file-discovery}\ndataLayer: {discovery: {pluginRef: f}}\n",
            "field `parameters.path`: the endpoints file is required",
        ),
        (
            "- {name: f, type: file-discovery, parameters: {path: e.yaml, watch: true}}\n",
            "watch",
        ),
    ] {
        let err = from_yaml_str(&format!("{head}{body}"), "llm-d.yaml")
            .err()
            .unwrap_or_else(|| panic!("loaded: {body}"))
            .to_string();
        assert!(err.contains(want), "{body}: {err}");
    }
    let err = from_yaml_str(
        "apiVersion: llm-d.ai/v2\nkind: EndpointPickerConfig\nplugins: []\n",
        "x.yaml",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("llm-d.ai/v1alpha1") && err.contains("llm-d.ai/v2"),
        "{err}"
    );
}

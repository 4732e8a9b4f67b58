//! Tests of the static pool: the fixtures in `testdata/epp/`, rank expansion and
//! naming, the quick `--endpoints` form, and errors that name the file and field.

use super::*;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/epp")
        .join(name)
}

fn names_and_addresses(pool: &StaticPool) -> Vec<(String, String)> {
    pool.endpoints
        .iter()
        .map(|e| (e.name.clone(), e.address.to_string()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn full_pool_file() {
    let pool = StaticPool::from_file(&fixture("pool.yaml")).unwrap();
    assert_eq!(
        (pool.name.as_str(), pool.namespace.as_str()),
        ("llama", "serving")
    );
    assert_eq!(pool.target_ports, [8000, 8001]);
    assert_eq!(pool.app_protocol, AppProtocol::Http);
    assert_eq!(pool.match_labels["app"], "vllm-llama3-8b");
    let epp = pool.endpoint_picker_ref.as_ref().unwrap();
    assert_eq!(
        (
            epp.kind.as_str(),
            epp.name.as_str(),
            epp.port,
            epp.failure_mode
        ),
        (
            "Service",
            "llama-epp",
            Some(Port { number: 9002 }),
            FailureMode::FailOpen
        )
    );
    assert_eq!(
        names_and_addresses(&pool),
        pairs(&[
            ("llama-10.0.0.1-rank-0", "10.0.0.1:8000"),
            ("llama-10.0.0.1-rank-1", "10.0.0.1:8001"),
            ("llama-10.0.0.2-9000", "10.0.0.2:9000"),
            ("llama-fd00::7-rank-0", "[fd00::7]:8000"),
            ("llama-fd00::7-rank-1", "[fd00::7]:8001"),
        ])
    );
}

#[test]
fn local_pool_file_defaults() {
    let pool = StaticPool::from_file(&fixture("pool-local.yaml")).unwrap();
    assert_eq!(pool.namespace, DEFAULT_NAMESPACE);
    assert!(pool.endpoint_picker_ref.is_none() && pool.match_labels.is_empty());
    assert_eq!(
        names_and_addresses(&pool),
        pairs(&[
            ("local-127.0.0.1-8001", "127.0.0.1:8001"),
            ("local-127.0.0.1-8002", "127.0.0.1:8002"),
        ])
    );
}

#[test]
fn selector_only_pool_needs_kubernetes() {
    let path = fixture("pool-selector-only.yaml");
    let err = StaticPool::from_file(&path).unwrap_err().to_string();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(
        err.contains("field `spec.endpoints`: required in a pool file"),
        "{err}"
    );
}

#[test]
fn missing_file_is_named() {
    let err = StaticPool::from_file(Path::new("/nonexistent/pool.yaml")).unwrap_err();
    assert!(matches!(err, PoolError::Read { .. }));
    assert!(
        err.to_string().starts_with("/nonexistent/pool.yaml: "),
        "{err}"
    );
}

/// Each case edits the local fixture and expects an error naming `field`.
#[test]
fn invalid_pools_name_the_field() {
    let base = std::fs::read_to_string(fixture("pool-local.yaml")).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("kind: InferencePool", "kind: Service", "kind"),
        (
            "inference.networking.k8s.io/v1",
            "inference.networking.x-k8s.io/v1alpha2",
            "apiVersion",
        ),
        ("  name: local", "  name: ''", "metadata.name"),
        ("  name: local", "  name: local\n  uid: x", "metadata.uid"),
        (
            "  - number: 8000",
            "  - number: 8000\n    name: http",
            "spec.targetPorts[0].name",
        ),
        (
            "  - number: 8000",
            "  - number: 70000",
            "spec.targetPorts[0].number",
        ),
        (
            "  - number: 8000",
            "  - number: 0",
            "spec.targetPorts[0].number",
        ),
        (
            "  - number: 8000",
            "  - number: 8000\n  - number: 8000",
            "spec.targetPorts[1].number",
        ),
        (
            "  - number: 8000",
            "  - number: eighty",
            "spec.targetPorts[0].number",
        ),
        ("  targetPorts:\n  - number: 8000\n", "", "spec"),
        (
            "  targetPorts:\n  - number: 8000",
            "  targetPorts: []",
            "spec.targetPorts",
        ),
        ("spec:", "spec:\n  appProtocol: grpc", "spec.appProtocol"),
        ("spec:", "spec:\n  selectr: {}", "spec.selectr"),
        (
            "spec:",
            "spec:\n  endpointPickerRef: {name: epp}",
            "spec.endpointPickerRef.port",
        ),
        (
            "spec:",
            "spec:\n  endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: Maybe}",
            "spec.endpointPickerRef.failureMode",
        ),
        (
            "[\"127.0.0.1:8001\", \"127.0.0.1:8002\"]",
            "[]",
            "spec.endpoints",
        ),
        (
            "\"127.0.0.1:8002\"",
            "\"model-0.svc:8000\"",
            "spec.endpoints[1]",
        ),
        (
            "\"127.0.0.1:8002\"",
            "\"127.0.0.1:8001\"",
            "spec.endpoints[1]",
        ),
        ("\"127.0.0.1:8002\"", "\"127.0.0.1:0\"", "spec.endpoints[1]"),
        ("\"127.0.0.1:8002\"", "\"[::1\"", "spec.endpoints[1]"),
    ];
    for (from, to, field) in cases {
        assert!(base.contains(from), "{from:?} not in the fixture");
        let text = base.replacen(from, to, 1);
        let err = StaticPool::from_yaml(&text, "pool.yaml")
            .map(|p| format!("{p:?}"))
            .expect_err(&format!("{to:?} should fail"));
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("pool.yaml: field `{field}`: ")),
            "{to:?}: {message}"
        );
    }
}

#[test]
fn endpoints_flag() {
    let pool = StaticPool::from_endpoints_flag("pool", "127.0.0.1:8001, 127.0.0.1:8002,[::1]:9000")
        .unwrap();
    assert!(pool.target_ports.is_empty());
    assert_eq!(
        names_and_addresses(&pool),
        pairs(&[
            ("pool-127.0.0.1-8001", "127.0.0.1:8001"),
            ("pool-127.0.0.1-8002", "127.0.0.1:8002"),
            ("pool-::1-9000", "[::1]:9000"),
        ])
    );
    for bad in [
        "",
        " , ",
        "127.0.0.1",
        "localhost:8000",
        "127.0.0.1:1,127.0.0.1:1",
    ] {
        let err = StaticPool::from_endpoints_flag("pool", bad).unwrap_err();
        assert!(
            err.to_string().starts_with("--endpoints: "),
            "{bad:?}: {err}"
        );
    }
}

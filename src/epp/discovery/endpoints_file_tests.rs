//! The endpoints file: llm-d's examples load, JSON too, repeats keep the last, and
//! every mistake names the file and the entry's field.

use super::*;

fn names(f: &EndpointsFile) -> Vec<(String, String)> {
    f.endpoints
        .iter()
        .map(|e| (e.endpoint.name.clone(), e.endpoint.address.to_string()))
        .collect()
}

#[test]
fn llm_d_examples_load() {
    let yaml = r#"
endpoints:
  - name: tp-rank-0
    namespace: inference
    address: "192.168.1.10"
    port: "8000"
    labels:
      rank: "0"
      job: tp-job-42
  - name: tp-rank-1
    namespace: inference
    address: "192.168.1.11"
    port: "8000"
    metricsHost: "192.168.1.11:8000"
"#;
    let f = EndpointsFile::parse(yaml, "endpoints.yaml").unwrap();
    assert_eq!(
        names(&f),
        [
            ("tp-rank-0".into(), "192.168.1.10:8000".into()),
            ("tp-rank-1".into(), "192.168.1.11:8000".into())
        ]
    );
    assert_eq!(f.endpoints[0].namespace, "inference");
    assert_eq!(f.endpoints[0].labels["job"], "tp-job-42");
    // The same address as the serving one is no separate metrics host.
    assert_eq!(f.endpoints[1].metrics_host, None);

    let json = r#"{"endpoints": [{"name": "vllm-0", "address": "10.0.0.1", "port": "8000"},
                                 {"name": "vllm-1", "address": "::1", "port": 8001,
                                  "metricsHost": "10.0.0.9:9090"}]}"#;
    let f = EndpointsFile::parse(json, "endpoints.json").unwrap();
    assert_eq!(
        names(&f),
        [
            ("vllm-0".into(), "10.0.0.1:8000".into()),
            ("vllm-1".into(), "[::1]:8001".into())
        ]
    );
    assert_eq!(f.endpoints[0].namespace, "default");
    assert_eq!(
        f.endpoints[1].metrics_host.as_deref(),
        Some("10.0.0.9:9090")
    );
}

#[test]
fn a_repeated_entry_is_taken_from_its_last_occurrence() {
    let yaml = "
endpoints:
- {name: a, address: 10.0.0.1, port: '8000'}
- {name: b, address: 10.0.0.2, port: '8000'}
- {name: a, address: 10.0.0.3, port: '8000'}
";
    let f = EndpointsFile::parse(yaml, "e.yaml").unwrap();
    assert_eq!(
        names(&f),
        [
            ("a".into(), "10.0.0.3:8000".into()),
            ("b".into(), "10.0.0.2:8000".into())
        ]
    );
    let empty = EndpointsFile::parse("endpoints: []", "e.yaml").unwrap();
    assert!(empty.endpoints.is_empty());
}

#[test]
fn mistakes_name_the_file_and_the_field() {
    for (text, want) in [
        (
            "endpoints:\n- {name: a, address: 10.0.0.1.5, port: '8000'}\n",
            "e.yaml: field `endpoints[0].address`: `10.0.0.1.5` is not an IP address",
        ),
        (
            "endpoints:\n- {name: a, address: 10.0.0.1, port: '8000'}\n- {name: b, address: 10.0.0.2, port: '0'}\n",
            "e.yaml: field `endpoints[1].port`: `0` is not a port in 1-65535",
        ),
        (
            "endpoints:\n- {name: a, address: 10.0.0.1, port: 70000}\n",
            "e.yaml: field `endpoints[0].port`: 70000 is not a port in 1-65535",
        ),
        (
            "endpoints:\n- {name: ' ', address: 10.0.0.1, port: '1'}\n",
            "e.yaml: field `endpoints[0].name`: an endpoint needs a name",
        ),
        (
            "endpoints:\n- {name: a, address: 10.0.0.1, port: '1'}\n- {name: a, namespace: x, address: 10.0.0.2, port: '1'}\n",
            "e.yaml: field `endpoints[1].name`: `a` is also an endpoint in namespace `default`",
        ),
        (
            "endpoints:\n- {name: a, adress: 10.0.0.1, port: '1'}\n",
            "e.yaml: field `endpoints[0]",
        ),
        ("endpoint: []\n", "e.yaml: field `"),
        ("endpoints: [\n", "e.yaml: field `"),
    ] {
        let err = EndpointsFile::parse(text, "e.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{text:?}: {err}");
    }
    let huge = format!("# {}\nendpoints: []\n", "x".repeat(MAX_FILE_BYTES as usize));
    let err = EndpointsFile::parse(&huge, "e.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 1 MiB"), "{err}");
}

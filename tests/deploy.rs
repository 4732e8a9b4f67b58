//! `deploy/`: the CRD manifests are the ones the Rust types generate (a test that
//! rewrites a stale file and fails, so the change is committed); every manifest
//! parses, and those of igw's kinds name the API versions the CRDs serve and decode
//! into the types; and `kubectl kustomize deploy/` renders them all (a real kubectl).

use std::path::{Path, PathBuf};
use std::process::Command;

use igw::api::crds::{self, InferencePool};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

const HEADER: &str =
    "# Generated from src/api/crds by tests/deploy.rs; edit the types, not this file.\n";

#[test]
fn the_crd_manifests_are_generated_from_the_types() {
    let mut stale = Vec::new();
    for (file, crd) in crds::all() {
        let text = format!("{HEADER}{}", serde_saphyr::to_string(&crd).unwrap());
        let path = deploy().join("crds").join(&file);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, &text).unwrap();
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "deploy/crds was stale and is now rewritten; commit: {stale:?}"
    );
}

/// Every YAML document of the Kubernetes manifests under `deploy/` (Envoy's own
/// configs in `deploy/envoy/` aside), with its file.
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [deploy(), deploy().join("crds")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.strip_prefix(deploy()).unwrap().display().to_string();
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("deploy/{name} does not parse: {e}"));
        for v in values {
            docs.push((name.clone(), v));
        }
    }
    docs
}

#[test]
fn every_manifest_parses_and_igws_kinds_match_the_crds() {
    let served: Vec<(String, String)> = crds::all()
        .into_iter()
        .flat_map(|(_, crd)| {
            let group = crd.spec.group.clone();
            let kind = crd.spec.names.kind.clone();
            crd.spec
                .versions
                .into_iter()
                .map(move |v| (format!("{group}/{}", v.name), kind.clone()))
        })
        .collect();
    let docs = manifests();
    assert!(docs.len() >= 10, "{} documents", docs.len());
    let mut kinds = Vec::new();
    for (file, doc) in &docs {
        let api = doc["apiVersion"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no apiVersion"));
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        assert!(
            doc["metadata"]["name"].is_string() || kind == "Kustomization",
            "{file}: {kind} without a name"
        );
        kinds.push(kind.to_string());
        let ours = [
            "InferencePool",
            "InferenceObjective",
            "InferenceModelRewrite",
        ];
        if ours.contains(&kind) {
            assert!(
                served.contains(&(api.to_string(), kind.to_string())),
                "{file}: {api} {kind} is not served by the CRDs: {served:?}"
            );
        }
        if kind == "InferencePool" {
            let pool: InferencePool = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{file}: not an InferencePool: {e}"));
            assert!(!pool.spec.target_ports.is_empty());
        }
        if kind == "CustomResourceDefinition" {
            let name = doc["metadata"]["name"].as_str().unwrap();
            assert_eq!(file, &format!("crds/{name}.yaml"));
        }
    }
    for kind in [
        "Deployment",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "InferencePool",
        "InferenceObjective",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} in deploy/: {kinds:?}"
        );
    }
    // Every file the kustomization lists exists, and every manifest is listed.
    let k = docs
        .iter()
        .find(|(f, _)| f == "kustomization.yaml")
        .unwrap();
    let listed: Vec<&str> = k.1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let files: std::collections::BTreeSet<&str> = docs
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| *f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        files
    );
}

/// kubectl: on PATH, or `IGW_KUBECTL`. `.ci/run` installs Debian's when absent.
fn kubectl() -> String {
    let k = std::env::var("IGW_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    match Command::new(&k).args(["version", "--client"]).output() {
        Ok(o) if o.status.success() => k,
        _ => panic!(
            "this test needs kubectl (`apt-get install kubernetes-client`, or set IGW_KUBECTL)"
        ),
    }
}

#[test]
fn kubectl_kustomize_renders_deploy() {
    let out = Command::new(kubectl())
        .args(["kustomize"])
        .arg(deploy())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/ failed: {stderr}"
    );
    let rendered: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
    // Every document of every listed file, nothing lost.
    let expected = manifests()
        .iter()
        .filter(|(f, _)| f != "kustomization.yaml")
        .count();
    assert_eq!(rendered.len(), expected, "{stderr}");
}

//! The picker on llm-d Router's endpoints file (`--endpoints-file`, or a
//! `file-discovery` plugin in the config): endpoints added, removed and moved in the
//! file reach the pool and serve; a broken edit is refused with the old endpoints
//! still serving; and a pool given twice is an error at start.
//!
//! Simulator replicas and the picker run in-process on 127.0.0.1:0. Every wait is on
//! the picker's own reload counter or its admin view, under a deadline.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use igw::epp::config;
use igw::epp::discovery::Reloads;
use igw::epp::run::{EppOptions, start, start_with_config};
use igw::sim::options::EngineOptions;
use support::epp::*;
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(10);

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("igw-endpoints-file-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The file for `endpoints` (name, address), in llm-d's form.
fn endpoints_yaml(endpoints: &[(&str, SocketAddr)]) -> String {
    let mut text = String::from("endpoints:\n");
    for (name, addr) in endpoints {
        text.push_str(&format!(
            "- name: {name}\n  namespace: inference\n  address: \"{}\"\n  port: \"{}\"\n  labels: {{app: vllm}}\n",
            addr.ip(),
            addr.port()
        ));
    }
    text
}

/// Replaces `path` as editors and ConfigMap mounts do: a new file renamed onto it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_reload(
    reloads: &mut watch::Receiver<Reloads>,
    what: &str,
    ok: impl Fn(&Reloads) -> bool,
) -> Reloads {
    let got = tokio::time::timeout(DEADLINE, reloads.wait_for(|r| ok(r)))
        .await
        .map(|r| r.map(|r| r.clone()));
    match got {
        Ok(Ok(r)) => r,
        _ => panic!("no {what} within {DEADLINE:?}: {:?}", *reloads.borrow()),
    }
}

fn names(picker: &Picker) -> Vec<String> {
    picker
        .epp
        .pool
        .endpoints()
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_to_the_endpoints_file_reach_the_pool_and_a_broken_one_keeps_the_old() {
    let sims = replicas(3, sim_config(EngineOptions::default(), 1000.0)).await;
    let [a, b, c] = [sims.addrs()[0], sims.addrs()[1], sims.addrs()[2]];
    let dir = scratch("edits");
    let file = dir.join("endpoints.yaml");
    std::fs::write(&file, endpoints_yaml(&[("vllm-0", a), ("vllm-1", b)])).unwrap();
    let picker = picker(&[], |o| {
        o.endpoints = None;
        o.endpoints_file = Some(file.clone());
    })
    .await;
    let mut reloads = picker
        .epp
        .discovery_reloads
        .clone()
        .expect("a watched file");
    assert_eq!(names(&picker), ["vllm-0", "vllm-1"]);
    picker.wait_healthy(&[a, b]).await;
    assert_eq!(picker.send(&short_request("first"), None).await.status, 200);

    // One removed, one added.
    replace(&file, &endpoints_yaml(&[("vllm-1", b), ("vllm-2", c)]));
    wait_reload(&mut reloads, "first reload", |r| r.applied == 1).await;
    assert_eq!(names(&picker), ["vllm-1", "vllm-2"]);
    picker.wait_healthy(&[b, c]).await;
    for i in 0..6 {
        let reply = picker
            .send(&short_request(&format!("after {i}")), None)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let served = reply.served.unwrap();
        assert_ne!(
            served,
            a.to_string(),
            "routed to an endpoint the file dropped"
        );
    }

    // One moved to another address: the same name, a new endpoint.
    replace(&file, &endpoints_yaml(&[("vllm-1", a), ("vllm-2", c)]));
    wait_reload(&mut reloads, "second reload", |r| r.applied == 2).await;
    let moved = picker.epp.pool.endpoints();
    assert_eq!(moved[0].address, a);

    // A broken edit: refused, said once, the endpoints before it keep serving.
    replace(
        &file,
        "endpoints:\n- {name: vllm-3, address: 10.0.0.300, port: '8000'}\n",
    );
    let r = wait_reload(&mut reloads, "refusal", |r| r.refused == 1).await;
    assert_eq!(r.applied, 2);
    let why = r.last_error.unwrap();
    assert!(why.contains("endpoints[0].address"), "{why}");
    assert!(why.contains(&file.display().to_string()), "{why}");
    assert_eq!(names(&picker), ["vllm-1", "vllm-2"]);
    picker.wait_healthy(&[a, c]).await;
    assert_eq!(picker.send(&short_request("kept"), None).await.status, 200);

    // The file gone is refused too; fixed again, it is taken.
    std::fs::remove_file(&file).unwrap();
    wait_reload(&mut reloads, "refusal of a missing file", |r| {
        r.refused == 2
    })
    .await;
    assert_eq!(names(&picker), ["vllm-1", "vllm-2"]);
    replace(&file, &endpoints_yaml(&[("vllm-0", a)]));
    wait_reload(&mut reloads, "third reload", |r| r.applied == 3).await;
    assert_eq!(names(&picker), ["vllm-0"]);
    picker.epp.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_discovery_plugin_in_the_config_gives_the_pool() {
    let sims = replicas(2, sim_config(EngineOptions::default(), 1000.0)).await;
    let [a, b] = [sims.addrs()[0], sims.addrs()[1]];
    let dir = scratch("config");
    let file = dir.join("endpoints.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"endpoints": [{{"name": "a", "address": "{}", "port": "{}"}}, {{"name": "b", "address": "{}", "port": {}}}]}}"#,
            a.ip(),
            a.port(),
            b.ip(),
            b.port()
        ),
    )
    .unwrap();
    // llm-d Router's documented form, `discovery.endpoints.pluginRef`.
    let text = format!(
        "apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- name: file-disc
  type: file-discovery
  parameters: {{path: '{}'}}
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
dataLayer:
  discovery:
    endpoints:
      pluginRef: file-disc
",
        file.display()
    );
    let loaded = config::from_yaml_str(&text, "epp.yaml").unwrap();
    let mut opts = EppOptions::local(&[]);
    opts.endpoints = None;
    let epp = start_with_config(&opts, loaded).await.unwrap();
    let got: Vec<_> = epp
        .pool
        .endpoints()
        .iter()
        .map(|e| (e.name.clone(), e.address))
        .collect();
    assert_eq!(got, [("a".to_string(), a), ("b".to_string(), b)]);
    // `watchFile` unset: read once, no reloads to follow.
    let reloads = epp.discovery_reloads.clone().unwrap();
    assert_eq!(*reloads.borrow(), Reloads::default());
    epp.shutdown().await;

    // The pool given twice, by a flag and by the config, is an error naming both.
    let loaded = config::from_yaml_str(&text, "epp.yaml").unwrap();
    let opts = EppOptions::local(&[a]);
    let err = start_with_config(&opts, loaded)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(
            "--endpoints and the file-discovery plugin of epp.yaml both give the pool's endpoints"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_endpoints_file_or_none_at_all_stops_the_start() {
    let dir = scratch("bad");
    let file = dir.join("endpoints.yaml");
    std::fs::write(
        &file,
        "endpoints:\n- {name: a, address: 10.0.0.1, port: 'http'}\n",
    )
    .unwrap();
    let mut opts = EppOptions::local(&[]);
    opts.endpoints = None;
    opts.endpoints_file = Some(file.clone());
    let err = start(&opts).await.err().unwrap().to_string();
    assert_eq!(
        err,
        format!(
            "{}: field `endpoints[0].port`: `http` is not a port in 1-65535",
            file.display()
        )
    );
    opts.endpoints_file = None;
    let err = start(&opts).await.err().unwrap().to_string();
    assert!(
        err.starts_with("give the pool with --pool-file, --endpoints or --endpoints-file"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

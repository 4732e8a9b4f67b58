//! The pool from the Kubernetes API: an InferencePool and the pods its selector picks,
//! served by a fake API server on loopback that speaks the real list/watch JSON. Pods
//! becoming ready, unready and deleted change the endpoints; a target port added to
//! the pool adds a rank per pod; a selector changed restarts the pod watch; a watch
//! dropped by the server and resumed into 410 Gone lists again; a missing pool and a
//! 403 Forbidden are errors naming what could not be read.
//!
//! Waits are on the endpoint sets the source hands over, under a one-second deadline
//! (GIE's promise for a change to reach the picker).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use igw::epp::discovery::kubernetes::KubernetesPool;
use igw::epp::discovery::{Discovery, EndpointSink};
use igw::epp::endpoint::Endpoint;
use igw::sim::options::EngineOptions;
use serde_json::{Value, json};
use support::epp::{picker, replica_at, short_request, sim_config, view};
use support::fake_kube::FakeKube;
use tokio::sync::watch;

const NS: &str = "inference";
const WITHIN: Duration = Duration::from_secs(1);

/// Records every endpoint set it is given.
struct Recorder(Mutex<watch::Sender<Vec<(String, String)>>>);

impl EndpointSink for Recorder {
    fn set_endpoints(&self, endpoints: Vec<Endpoint>) {
        let set = endpoints
            .into_iter()
            .map(|e| (e.name, e.address.to_string()))
            .collect();
        self.0.lock().unwrap().send_replace(set);
    }
}

fn pool(selector: Value, ports: &[u16]) -> Value {
    json!({
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "llama", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": selector},
            "targetPorts": ports.iter().map(|p| json!({"number": p})).collect::<Vec<_>>(),
            "endpointPickerRef": {"name": "llama-epp", "port": {"number": 9002}}
        }
    })
}

fn pod(name: &str, ip: &str, app: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
        "status": {
            "podIP": ip,
            "conditions": [
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]
        }
    })
}

async fn wait(rx: &mut watch::Receiver<Vec<(String, String)>>, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect();
    let got = tokio::time::timeout(WITHIN, rx.wait_for(|set| *set == want))
        .await
        .is_ok();
    assert!(
        got,
        "not {want:?} within {WITHIN:?}; last: {:?}",
        *rx.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_pods_of_the_pool_are_its_endpoints_and_changes_follow() {
    let kube = FakeKube::start().await;
    kube.apply("inferencepools", pool(json!({"app": "vllm"}), &[8000]));
    kube.apply("pods", pod("vllm-0", "10.0.0.1", "vllm", true));
    kube.apply("pods", pod("vllm-1", "10.0.0.2", "vllm", false));
    kube.apply("pods", pod("other-0", "10.0.0.9", "other", true));

    let source = KubernetesPool::open(kube.client(), NS, "llama")
        .await
        .unwrap();
    let initial: Vec<_> = source
        .initial()
        .into_iter()
        .map(|e| (e.name, e.address.to_string()))
        .collect();
    assert_eq!(
        initial,
        [("vllm-0-rank-0".to_string(), "10.0.0.1:8000".to_string())]
    );
    assert_eq!(
        source.describe(),
        "InferencePool inference/llama on the Kubernetes API"
    );

    let (tx, mut rx) = watch::channel(initial);
    let sink = Arc::new(Recorder(Mutex::new(tx)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Box::new(source).run(
        sink,
        Box::pin(async move {
            let _ = stop_rx.await;
        }),
    ));

    // A pod becomes ready.
    kube.apply("pods", pod("vllm-1", "10.0.0.2", "vllm", true));
    wait(
        &mut rx,
        &[
            ("vllm-0-rank-0", "10.0.0.1:8000"),
            ("vllm-1-rank-0", "10.0.0.2:8000"),
        ],
    )
    .await;
    // One becomes unready, a new one arrives ready.
    kube.apply("pods", pod("vllm-0", "10.0.0.1", "vllm", false));
    kube.apply("pods", pod("vllm-2", "10.0.0.3", "vllm", true));
    wait(
        &mut rx,
        &[
            ("vllm-1-rank-0", "10.0.0.2:8000"),
            ("vllm-2-rank-0", "10.0.0.3:8000"),
        ],
    )
    .await;
    // One is deleted.
    kube.delete("pods", "vllm-1");
    wait(&mut rx, &[("vllm-2-rank-0", "10.0.0.3:8000")]).await;
    // A second target port: one endpoint per rank.
    kube.apply(
        "inferencepools",
        pool(json!({"app": "vllm"}), &[8000, 8001]),
    );
    wait(
        &mut rx,
        &[
            ("vllm-2-rank-0", "10.0.0.3:8000"),
            ("vllm-2-rank-1", "10.0.0.3:8001"),
        ],
    )
    .await;
    // The selector now picks the other app: the pod watch restarts on it.
    kube.apply("inferencepools", pool(json!({"app": "other"}), &[8000]));
    wait(&mut rx, &[("other-0-rank-0", "10.0.0.9:8000")]).await;
    // A bookmark moves the watch's version on without a change.
    kube.bookmark("pods", "Pod", "v1");
    // The server drops its watches and compacts past a change the pod watch never saw
    // (a pod its selector does not pick); then a pod arrives while nobody watches.
    // Resuming from its old version gets 410 Gone, the watcher lists again, and the
    // endpoints follow the list.
    kube.apply("pods", pod("unrelated-0", "10.0.0.50", "nobody", true));
    kube.compact();
    kube.apply("pods", pod("other-1", "10.0.0.10", "other", true));
    wait(
        &mut rx,
        &[
            ("other-0-rank-0", "10.0.0.9:8000"),
            ("other-1-rank-0", "10.0.0.10:8000"),
        ],
    )
    .await;
    assert!(
        kube.gone_served() >= 1,
        "the resumed watch was not answered 410 Gone"
    );
    kube.apply("pods", pod("unrelated-1", "10.0.0.51", "nobody", true));
    kube.compact();
    kube.delete("pods", "other-1");
    wait(&mut rx, &[("other-0-rank-0", "10.0.0.9:8000")]).await;
    assert!(kube.gone_served() >= 2);
    // A pod being deleted (terminating) leaves at once.
    let mut terminating = pod("other-0", "10.0.0.9", "other", true);
    terminating["metadata"]["deletionTimestamp"] = json!("2026-12-08T00:00:00Z");
    kube.apply("pods", terminating);
    wait(&mut rx, &[]).await;

    let _ = stop_tx.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn a_missing_pool_or_missing_access_is_an_error_naming_it() {
    let kube = FakeKube::start().await;
    let open = |pool: &'static str| {
        let client = kube.client();
        async move {
            KubernetesPool::open(client, NS, pool)
                .await
                .err()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(
        open("nowhere").await,
        "InferencePool inference/nowhere not found"
    );

    kube.apply("inferencepools", pool(json!({"app": "vllm"}), &[8000]));
    kube.forbid("pods");
    let err = open("llama").await;
    assert!(
        err.starts_with("cannot list the pods of inference/llama: "),
        "{err}"
    );
    assert!(err.contains("forbidden"), "{err}");
    kube.forbid("inferencepools");
    let err = open("llama").await;
    assert!(
        err.starts_with("cannot read InferencePool inference/llama: "),
        "{err}"
    );
    assert!(err.contains("forbidden"), "{err}");
}

/// A kubeconfig for `server`, namespace `inference`, written to a scratch file.
fn kubeconfig(server: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("igw-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: '{server}'}}
users:
- name: epp
  user: {{}}
contexts:
- name: fake
  context: {{cluster: fake, user: epp, namespace: {NS}}}
current-context: fake
"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `igw epp run --pool-name llama --pool-namespace inference --kubeconfig F`: the
/// picker finds its replicas as the pool's ready pods (two simulators on their own
/// loopback addresses, one port, as pods are) and stops routing to one that turns
/// unready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_picker_routes_to_the_pools_ready_pods() {
    // A port free on 127.0.0.2, then both "pods" on it at their own IPs.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let b: std::net::SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let config = || sim_config(EngineOptions::default(), 1000.0);
    let _sim_a = replica_at(a, config()).await;
    let _sim_b = replica_at(b, config()).await;

    let kube = FakeKube::start().await;
    kube.apply("inferencepools", pool(json!({"app": "vllm"}), &[port]));
    kube.apply("pods", pod("vllm-0", "127.0.0.2", "vllm", true));
    kube.apply("pods", pod("vllm-1", "127.0.0.3", "vllm", true));
    let file = kubeconfig(&kube.url);
    let p = picker(&[], |o| {
        o.endpoints = None;
        o.kubeconfig = Some(file.clone());
        o.pool_name = "llama".into();
        o.pool_namespace = NS.into();
    })
    .await;
    p.wait_healthy(&[a, b]).await;
    let names: Vec<_> = p
        .epp
        .pool
        .endpoints()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, ["vllm-0-rank-0", "vllm-1-rank-0"]);
    assert_eq!(p.send(&short_request("both"), None).await.status, 200);

    kube.apply("pods", pod("vllm-0", "127.0.0.2", "vllm", false));
    p.wait_for("only vllm-1 left", |v| {
        v.len() == 1 && view(v, b)["health"] == "healthy"
    })
    .await;
    for i in 0..4 {
        let r = p.send(&short_request(&format!("after {i}")), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.served.as_deref(), Some(b.to_string().as_str()));
    }
    p.epp.shutdown().await;
    let _ = std::fs::remove_file(&file);
}

//! The pool from the Kubernetes API, as GIE's EPP finds it (gie-facts §6.1; llm-d's
//! `docs/discovery.md`): the InferencePool `--pool-name` in `--pool-namespace` gives
//! the selector and target ports; every pod the selector picks whose `Ready`
//! condition is `True`, that is not being deleted and has an IP, is one endpoint per
//! target port, named `<pod>-rank-<idx>` at `podIP:port`.
//!
//! Both are watched (list, then watch from its resourceVersion, re-listed after a 410
//! Gone, by kube's watcher; retried after 100 ms, doubling, when a watch fails), and every change recomputes the endpoint set and hands
//! it to the sink when it differs. A pool whose selector changes restarts the pod
//! watch with the new one. Readiness decides membership; stale metrics only make an
//! endpoint untrusted for the scorers (the datastore's rule), they do not remove it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};

use super::source::{Discovery, EndpointSink, SourceFuture};
use crate::api::crds::InferencePool;
use crate::epp::endpoint::Endpoint;

/// The pool's shape as far as endpoints go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PoolShape {
    selector: BTreeMap<String, String>,
    ports: Vec<u16>,
}

impl PoolShape {
    fn of(pool: &InferencePool) -> PoolShape {
        PoolShape {
            selector: pool.spec.selector.match_labels.clone(),
            ports: pool
                .spec
                .target_ports
                .iter()
                .filter_map(|p| u16::try_from(p.number).ok())
                .collect(),
        }
    }

    /// `k=v,k=v`, the label selector of the pod watch.
    fn label_selector(&self) -> String {
        self.selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Whether `pod` may serve: `Ready` is `True`, no deletion timestamp, an IP.
fn ready_ip(pod: &Pod) -> Option<IpAddr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

/// The endpoints of `pods` under `shape`, in pod-name order, ranks together.
fn endpoints(shape: &PoolShape, pods: &BTreeMap<String, Pod>) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for (name, pod) in pods {
        let Some(ip) = ready_ip(pod) else { continue };
        for (rank, &port) in shape.ports.iter().enumerate() {
            out.push(Endpoint {
                name: format!("{name}-rank-{rank}"),
                address: SocketAddr::new(ip, port),
            });
        }
    }
    out
}

/// Waits between a failed watch and the next try: 100 ms, doubling to 30 s, back
/// to 100 ms once an event arrives. kube's default starts at 800 ms with jitter, so a
/// watch the API server dropped (compaction, 410 Gone) took over a second to list
/// again; the picker's endpoints should follow the cluster within one.
struct Reconnect {
    next: Duration,
}

const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

impl Default for Reconnect {
    fn default() -> Reconnect {
        Reconnect {
            next: RECONNECT_FIRST,
        }
    }
}

impl Iterator for Reconnect {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(RECONNECT_MAX);
        Some(now)
    }
}

impl Backoff for Reconnect {
    fn reset(&mut self) {
        self.next = RECONNECT_FIRST;
    }
}

/// The pool watched on the Kubernetes API.
pub struct KubernetesPool {
    client: Client,
    namespace: String,
    pool: String,
    shape: PoolShape,
    pods: BTreeMap<String, Pod>,
}

impl KubernetesPool {
    /// Reads the pool and its pods once; an error says which and why (the pool
    /// missing, access forbidden, the API unreachable).
    pub async fn open(client: Client, namespace: &str, pool: &str) -> anyhow::Result<Self> {
        let pools: Api<InferencePool> = Api::namespaced(client.clone(), namespace);
        let found = pools
            .get_opt(pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read InferencePool {namespace}/{pool}: {e}"))?;
        let Some(found) = found else {
            anyhow::bail!("InferencePool {namespace}/{pool} not found");
        };
        let shape = PoolShape::of(&found);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let listed = pods
            .list(&ListParams::default().labels(&shape.label_selector()))
            .await
            .map_err(|e| anyhow::anyhow!("cannot list the pods of {namespace}/{pool}: {e}"))?;
        let pods = listed
            .items
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect();
        Ok(KubernetesPool {
            client,
            namespace: namespace.to_string(),
            pool: pool.to_string(),
            shape,
            pods,
        })
    }

    async fn watch_loop(mut self, sink: Arc<dyn EndpointSink>) {
        let pools: Api<InferencePool> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut pool_events = watcher::watcher(
            pools,
            watcher::Config::default().fields(&format!("metadata.name={}", self.pool)),
        )
        .backoff(Reconnect::default())
        .boxed();
        let mut current = endpoints(&self.shape, &self.pods);
        'selector: loop {
            let config = watcher::Config::default().labels(&self.shape.label_selector());
            let mut pod_events = watcher::watcher(pods.clone(), config)
                .backoff(Reconnect::default())
                .boxed();
            // Pods listed afresh by a (re)started watch, held until its list ends.
            let mut relisting: Option<BTreeMap<String, Pod>> = None;
            loop {
                tokio::select! {
                    Some(event) = pool_events.next() => {
                        let shape = match event {
                            Ok(Event::Apply(p) | Event::InitApply(p)) => PoolShape::of(&p),
                            Ok(Event::Delete(_)) => {
                                tracing::warn!(pool = %self.pool, "InferencePool deleted; its endpoints keep serving until it returns");
                                continue;
                            }
                            Ok(_) => continue,
                            Err(e) => {
                                tracing::warn!(pool = %self.pool, error = %e, "InferencePool watch failed; retrying");
                                continue;
                            }
                        };
                        if shape != self.shape {
                            let restart = shape.selector != self.shape.selector;
                            self.shape = shape;
                            if restart {
                                self.pods.clear();
                                continue 'selector;
                            }
                        }
                    }
                    Some(event) = pod_events.next() => match event {
                        Ok(Event::Init) => relisting = Some(BTreeMap::new()),
                        Ok(Event::InitApply(p)) => {
                            if let Some(fresh) = &mut relisting {
                                fresh.insert(p.name_any(), p);
                            }
                        }
                        Ok(Event::InitDone) => {
                            if let Some(fresh) = relisting.take() {
                                self.pods = fresh;
                            }
                        }
                        Ok(Event::Apply(p)) => {
                            self.pods.insert(p.name_any(), p);
                        }
                        Ok(Event::Delete(p)) => {
                            self.pods.remove(&p.name_any());
                        }
                        Err(e) => {
                            tracing::warn!(pool = %self.pool, error = %e, "pod watch failed; retrying");
                            continue;
                        }
                    },
                    else => return,
                }
                let next = endpoints(&self.shape, &self.pods);
                if next != current {
                    tracing::info!(pool = %self.pool, endpoints = next.len(), "pool endpoints changed");
                    sink.set_endpoints(next.clone());
                    current = next;
                }
            }
        }
    }
}

impl Discovery for KubernetesPool {
    fn describe(&self) -> String {
        format!(
            "InferencePool {}/{} on the Kubernetes API",
            self.namespace, self.pool
        )
    }

    fn initial(&self) -> Vec<Endpoint> {
        endpoints(&self.shape, &self.pods)
    }

    fn run(self: Box<Self>, sink: Arc<dyn EndpointSink>, stop: SourceFuture) -> SourceFuture {
        Box::pin(async move {
            tokio::select! {
                () = stop => {}
                () = self.watch_loop(sink) => {}
            }
        })
    }
}

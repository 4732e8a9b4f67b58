//! A fake Kubernetes API server on loopback, speaking the real list/watch JSON for the
//! resources igw reads: `GET` of one object, lists (`labelSelector`, `fieldSelector`
//! `metadata.name=`) with a `resourceVersion`, and watches (`watch=true`) streaming
//! newline-delimited `ADDED`/`MODIFIED`/`DELETED` events from the version asked,
//! held open, with BOOKMARK events on demand. [`FakeKube::compact`] drops the open
//! watches and the history, so a watcher resuming from an old resourceVersion gets
//! 410 Gone and must list again. The test changes objects through [`FakeKube`]; every
//! change gets the next resourceVersion, as etcd's revision does. A real kube-apiserver cannot run
//! here; kube's client talks to this one as to a cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// One change, as a watch sends it.
#[derive(Clone, Debug)]
struct Change {
    collection: String,
    version: u64,
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, or `END` (close the watches: the
    /// server dropped them, as an API server does on compaction or restart).
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    version: u64,
    /// collection (`pods`, `inferencepools`) → name → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    history: Vec<Change>,
    /// Versions at or below this are compacted away: a watch from one gets 410 Gone.
    compacted: u64,
    /// Watches answered 410 Gone.
    gone: u64,
    /// Collections every request for is answered 403 Forbidden (RBAC missing).
    forbidden: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    store: Arc<Mutex<Store>>,
    changes: broadcast::Sender<Change>,
}

/// The running fake and its handle for changing objects.
pub struct FakeKube {
    pub url: String,
    shared: Shared,
}

impl FakeKube {
    pub async fn start() -> FakeKube {
        let shared = Shared {
            store: Arc::default(),
            changes: broadcast::channel(1024).0,
        };
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/{collection}", get(list_or_watch))
            .route("/api/v1/namespaces/{ns}/{collection}/{name}", get(get_one))
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{collection}",
                get(list_or_watch_grouped),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{collection}/{name}",
                get(get_one_grouped),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKube {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// A kube client for this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Creates or replaces `object` (by `metadata.name`) in `collection`.
    pub fn apply(&self, collection: &str, mut object: Value) {
        let mut s = self.shared.store.lock().unwrap();
        s.version += 1;
        let version = s.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let objects = s.objects.entry(collection.to_string()).or_default();
        let kind = if objects.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        objects.insert(name, object.clone());
        let change = Change {
            collection: collection.to_string(),
            version,
            kind,
            object,
        };
        s.history.push(change.clone());
        let _ = self.shared.changes.send(change);
    }

    /// Ends every open watch and forgets the history up to now, as etcd's compaction
    /// does: a watcher that resumes from an older resourceVersion gets 410 Gone and
    /// must list again.
    pub fn compact(&self) {
        let mut s = self.shared.store.lock().unwrap();
        s.compacted = s.version;
        s.history.clear();
        let _ = self.shared.changes.send(Change {
            collection: String::new(),
            version: u64::MAX,
            kind: "END",
            object: Value::Null,
        });
    }

    /// Sends a BOOKMARK event (the current resourceVersion, no object change) on the
    /// open watches of `collection`.
    pub fn bookmark(&self, collection: &str, kind: &str, api_version: &str) {
        let s = self.shared.store.lock().unwrap();
        let _ = self.shared.changes.send(Change {
            collection: collection.to_string(),
            version: u64::MAX,
            kind: "BOOKMARK",
            object: json!({
                "kind": kind, "apiVersion": api_version,
                "metadata": {"resourceVersion": s.version.to_string()}
            }),
        });
    }

    /// Answers every request for `collection` 403 Forbidden, as the API server does
    /// for a service account its Role does not cover.
    pub fn forbid(&self, collection: &str) {
        self.shared
            .store
            .lock()
            .unwrap()
            .forbidden
            .push(collection.to_string());
    }

    /// How many watches were answered 410 Gone.
    pub fn gone_served(&self) -> u64 {
        self.shared.store.lock().unwrap().gone
    }

    /// Deletes the object `name` from `collection`.
    pub fn delete(&self, collection: &str, name: &str) {
        let mut s = self.shared.store.lock().unwrap();
        s.version += 1;
        let version = s.version;
        let Some(mut object) = s.objects.get_mut(collection).and_then(|o| o.remove(name)) else {
            return;
        };
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let change = Change {
            collection: collection.to_string(),
            version,
            kind: "DELETED",
            object,
        };
        s.history.push(change.clone());
        let _ = self.shared.changes.send(change);
    }
}

/// Whether `object` passes the request's `labelSelector` and `fieldSelector`.
fn selected(object: &Value, query: &BTreeMap<String, String>) -> bool {
    if let Some(labels) = query.get("labelSelector").filter(|l| !l.is_empty()) {
        for pair in labels.split(',') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if object["metadata"]["labels"][k] != v {
                return false;
            }
        }
    }
    if let Some(fields) = query.get("fieldSelector").filter(|f| !f.is_empty()) {
        for pair in fields.split(',') {
            if let Some(name) = pair.strip_prefix("metadata.name=")
                && object["metadata"]["name"] != name
            {
                return false;
            }
        }
    }
    true
}

async fn list_or_watch(
    State(s): State<Shared>,
    Path((_ns, collection)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    serve_collection(s, collection, query)
}

async fn list_or_watch_grouped(
    State(s): State<Shared>,
    Path((_group, _version, _ns, collection)): Path<(String, String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    serve_collection(s, collection, query)
}

async fn get_one(
    State(s): State<Shared>,
    Path((_ns, collection, name)): Path<(String, String, String)>,
) -> Response {
    serve_one(s, collection, name)
}

async fn get_one_grouped(
    State(s): State<Shared>,
    Path((_group, _version, _ns, collection, name)): Path<(String, String, String, String, String)>,
) -> Response {
    serve_one(s, collection, name)
}

/// The API server's 403 for `collection`, when it is forbidden.
fn forbidden(store: &Store, collection: &str) -> Option<Response> {
    store.forbidden.iter().any(|c| c == collection).then(|| {
        (
            StatusCode::FORBIDDEN,
            axum::Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{collection} is forbidden: User \"system:serviceaccount:inference:epp\" cannot list resource \"{collection}\""),
                "reason": "Forbidden", "code": 403
            })),
        )
            .into_response()
    })
}

fn serve_one(s: Shared, collection: String, name: String) -> Response {
    let store = s.store.lock().unwrap();
    if let Some(denied) = forbidden(&store, &collection) {
        return denied;
    }
    match store.objects.get(&collection).and_then(|o| o.get(&name)) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{collection} \"{name}\" not found"),
                "reason": "NotFound", "code": 404
            })),
        )
            .into_response(),
    }
}

fn serve_collection(s: Shared, collection: String, query: BTreeMap<String, String>) -> Response {
    let mut store = s.store.lock().unwrap();
    if let Some(denied) = forbidden(&store, &collection) {
        return denied;
    }
    if query.get("watch").is_none_or(|w| w != "true" && w != "1") {
        let items: Vec<Value> = store
            .objects
            .get(&collection)
            .into_iter()
            .flat_map(|o| o.values())
            .filter(|o| selected(o, &query))
            .cloned()
            .collect();
        return axum::Json(json!({
            "kind": "List", "apiVersion": "v1",
            "metadata": {"resourceVersion": store.version.to_string()},
            "items": items,
        }))
        .into_response();
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if from != 0 && from < store.compacted {
        store.gone += 1;
        let gone = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({})", store.compacted),
            "reason": "Expired", "code": 410
        }});
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(format!("{gone}\n")))
            .unwrap();
    }
    // Subscribed under the lock, so no change falls between history and live.
    let live = s.changes.subscribe();
    let past: Vec<Change> = store
        .history
        .iter()
        .filter(|c| c.collection == collection && c.version > from)
        .cloned()
        .collect();
    drop(store);
    let line = |c: &Change| {
        let mut text = json!({"type": c.kind, "object": c.object}).to_string();
        text.push('\n');
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(text))
    };
    let query = Arc::new(query);
    let past_lines: Vec<_> = past
        .iter()
        .filter(|c| selected(&c.object, &query))
        .map(line)
        .collect();
    let live = futures::stream::unfold(live, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(c) if c.kind == "END" => return None,
                Ok(c) => return Some((c, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let live = {
        let query = query.clone();
        live.filter(move |c| {
            let keep = c.collection == collection
                && c.version > from
                && (c.kind == "BOOKMARK" || selected(&c.object, &query));
            async move { keep }
        })
        .map(move |c| line(&c))
    };
    let stream = futures::stream::iter(past_lines).chain(live);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

//! The standalone gateway's data plane through a real pool whose picker returns every
//! endpoint in pool order: forwarding, streaming pass-through, fallback on refused
//! connections, usage and load accounting (the decision's in-flight booking), and
//! GIE's error codes. Real HTTP on 127.0.0.1:0 throughout.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use igw::epp::config::gie_default;
use igw::epp::endpoint::{Candidate, Endpoint, EndpointLoad, EndpointMetrics};
use igw::epp::lifecycle::outlier::OutlierPolicy;
use igw::epp::pool::Pool;
use igw::epp::proxy::{GatewayConfig, app};
use igw::epp::request::{Completion, LlmRequest};
use igw::epp::scheduler::plugins::NoParams;
use igw::epp::scheduler::plugins::single_profile::SingleProfileHandler;
use igw::epp::scheduler::{
    Picker, Plugin, Scheduler, SchedulingContext, SchedulingProfile, Scored,
};
use igw::sim::options::EngineOptions;
use igw::sim::server::{Listen, SimServer, SimServerConfig, spawn};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const MODEL: &str = "test-model";

/// A picker that returns every candidate in pool order (the first is the primary),
/// and records how each response ended.
#[derive(Default)]
struct InOrder {
    completed: Mutex<Vec<(String, Completion)>>,
    /// The estimated tokens of each request picked.
    routed_tokens: Mutex<Vec<u64>>,
}

impl Plugin for InOrder {
    fn on_scheduled(
        &self,
        request: &LlmRequest,
        _: &Candidate,
        _: &mut igw::epp::scheduler::CycleState,
    ) {
        self.routed_tokens
            .lock()
            .unwrap()
            .push(request.estimated_tokens());
    }

    fn on_response_complete(&self, _: &LlmRequest, served: &Endpoint, done: &Completion) {
        self.completed
            .lock()
            .unwrap()
            .push((served.name.clone(), done.clone()));
    }
}

impl Picker for InOrder {
    fn pick(
        &self,
        _: &[Candidate],
        scored: &mut [Scored],
        _: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    ) {
        let mut all: Vec<usize> = scored.iter().map(|s| s.index).collect();
        all.sort_unstable();
        picked.extend(all);
    }
}

/// A pool of `endpoints` (name, address), in that order, every one routable (metrics
/// published on a clock that never moves), routed by [`InOrder`].
fn pool(endpoints: &[(&str, SocketAddr)]) -> (Arc<Pool>, Arc<InOrder>) {
    let picker = Arc::new(InOrder::default());
    let mut config = gie_default();
    config.scheduler = Scheduler::new(
        Arc::new(SingleProfileHandler::new(NoParams {})),
        vec![SchedulingProfile::new("in-order", picker.clone())],
    );
    let endpoints: Vec<(&str, SocketAddr, EndpointMetrics)> = endpoints
        .iter()
        .map(|(name, address)| (*name, *address, EndpointMetrics::default()))
        .collect();
    let pool = support::epp::fixed_pool(config, &endpoints, OutlierPolicy::default());
    (pool, picker)
}

/// The shared load counters of the endpoint named `name`.
fn load(pool: &Pool, name: &str) -> Arc<EndpointLoad> {
    pool.snapshot().get(name).unwrap().load.clone()
}

/// Requests refused, by GIE error code, as the pool's metrics count them.
fn errors(pool: &Pool, code: &str) -> u64 {
    let label = format!("error_code=\"{code}\"");
    support::epp::metric_sum(
        &pool.metrics().render(),
        "inference_objective_request_error_total",
        &[&label],
    ) as u64
}

/// An address nothing listens on.
async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

async fn sims(n: usize) -> SimServer {
    let engine = EngineOptions {
        max_loras: 1,
        ..Default::default()
    }
    .engine_config()
    .unwrap();
    let mut config = SimServerConfig::new(MODEL, engine);
    config.speedup = 100.0;
    spawn(config, Listen::local(n)).await.unwrap()
}

async fn gateway(pool: Arc<Pool>, config: GatewayConfig) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(pool, config)).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn forwards_and_records_usage_and_releases_load() {
    let sim = sims(1).await;
    let (pool, picker) = pool(&[("a", sim.addrs()[0])]);
    let url = gateway(pool.clone(), GatewayConfig::default()).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(
            &json!({"model": MODEL, "prompt": "hello there", "max_tokens": 5, "ignore_eos": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.headers()["x-gateway-destination-endpoint-served"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(served, sim.addrs()[0].to_string());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 5);
    let completed = picker.completed.lock().unwrap().clone();
    assert_eq!(completed.len(), 1);
    let (name, done) = &completed[0];
    assert_eq!(
        (name.as_str(), done.status, done.complete),
        ("a", 200, true)
    );
    assert_eq!(done.usage.unwrap().completion_tokens, 5);
    let a = load(&pool, "a");
    assert_eq!(a.in_flight(), 0, "the guard was released");
    assert_eq!(a.sent_since_scrape(), 1);
}

#[tokio::test]
async fn falls_back_when_the_first_endpoint_refuses() {
    let sim = sims(1).await;
    let (pool, _) = pool(&[("dead", dead_address().await), ("live", sim.addrs()[0])]);
    let url = gateway(pool.clone(), GatewayConfig::default()).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let snap = pool.snapshot();
    let dead = snap.get("dead").unwrap();
    assert_eq!(dead.health, igw::epp::datastore::Health::Unhealthy);
    assert!(
        dead.last_error
            .as_deref()
            .unwrap()
            .contains("request forwarding failed"),
        "{:?}",
        dead.last_error
    );
    assert_eq!(dead.load.in_flight(), 0);
    assert_eq!(
        snap.get("live").unwrap().health,
        igw::epp::datastore::Health::Healthy
    );
}

#[tokio::test]
async fn every_endpoint_refusing_is_a_503() {
    let (pool, _) = pool(&[("dead", dead_address().await)]);
    let url = gateway(pool.clone(), GatewayConfig::default()).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": MODEL, "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let text = resp.text().await.unwrap();
    let message = support::error_message(&text, 503);
    assert!(
        message.starts_with("inference error: ServiceUnavailable - "),
        "{message}"
    );
    assert_eq!(errors(&pool, "ServiceUnavailable"), 1);
}

#[tokio::test]
async fn bad_requests_get_gies_codes() {
    let (pool, _) = pool(&[("dead", dead_address().await)]);
    let url = gateway(
        pool.clone(),
        GatewayConfig {
            max_body_bytes: 1024,
            ..Default::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let cases: [(&str, Vec<u8>, u16, &str); 4] = [
        (
            "/v1/completions",
            b"{oops".to_vec(),
            400,
            "the request body is not valid JSON",
        ),
        (
            "/v1/completions",
            br#"{"prompt":"x"}"#.to_vec(),
            400,
            "model not found in request body",
        ),
        ("/v1/completions", vec![b' '; 4096], 413, "PayloadTooLarge"),
        (
            "/v1/completions",
            b"{\"model\":\"m\",\"prompt\":\"\xff\"}".to_vec(),
            400,
            "BadRequest",
        ),
    ];
    for (path, body, status, needle) in cases {
        let resp = client
            .post(format!("{url}{path}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{needle}");
        let text = resp.text().await.unwrap();
        let message = support::error_message(&text, status);
        assert!(message.contains(needle), "{message}");
    }
    assert_eq!(errors(&pool, "BadRequest"), 3);
    assert_eq!(errors(&pool, "PayloadTooLarge"), 1);
}

/// An upstream that sends one SSE frame, then waits for the test before the rest: if
/// the gateway buffered the stream, the first frame would never arrive on its own.
#[tokio::test]
async fn streams_pass_through_frame_by_frame() {
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let upstream = axum::Router::new().route(
        "/v1/completions",
        axum::routing::post(move || {
            let release_rx = release_rx.clone();
            async move {
                let first = futures::stream::once(async {
                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"data: {\"choices\":[{\"text\":\"a\"}]}\n\n"))
                });
                let rest = futures::stream::once(async move {
                    if let Some(rx) = release_rx.lock().await.take() {
                        let _ = rx.await;
                    }
                    Ok(bytes::Bytes::from_static(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n"))
                });
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(axum::body::Body::from_stream(first.chain(rest)))
                    .unwrap()
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, upstream).await });
    let (pool, picker) = pool(&[("up", up_addr)]);
    let url = gateway(pool.clone(), GatewayConfig::default()).await;
    let up = load(&pool, "up");
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": MODEL, "prompt": "x", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the first frame arrives before the upstream finishes")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"data: {\"choices\":[{\"text\":\"a\"}]}"));
    assert_eq!(up.in_flight(), 1, "in flight while streaming");
    let booked = picker.routed_tokens.lock().unwrap()[0];
    assert!(booked > 0);
    assert_eq!(
        up.in_flight_tokens(),
        booked,
        "the request's estimated tokens are booked while it streams"
    );
    release_tx.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(rest.ends_with(b"data: [DONE]\n\n"));
    let done = picker.completed.lock().unwrap()[0].1.clone();
    assert!(done.complete);
    assert_eq!(done.usage.unwrap().prompt_tokens, 1);
    assert_eq!(up.in_flight(), 0);
    assert_eq!(up.in_flight_tokens(), 0, "and released with the last frame");
}

#[tokio::test]
async fn a_client_leaving_mid_stream_releases_load_and_the_server_slot() {
    let sim = sims(1).await;
    let (pool, picker) = pool(&[("a", sim.addrs()[0])]);
    let url = gateway(pool.clone(), GatewayConfig::default()).await;
    let a = load(&pool, "a");
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": MODEL, "prompt": "tell me", "stream": true, "max_tokens": 2000, "ignore_eos": true}))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    // The gateway notices the client is gone, drops the upstream body and the guard;
    // the simulator then aborts the request. Wait for both by polling, not sleeping.
    let metrics_url = format!("{}/metrics", sim.base_urls()[0]);
    for _ in 0..2000 {
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let running = text
            .lines()
            .find(|l| l.starts_with("vllm:num_requests_running{"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .to_string();
        if a.in_flight() == 0 && running == "0.0" {
            let done = picker.completed.lock().unwrap()[0].1.clone();
            assert!(!done.complete, "reported as abandoned");
            assert_eq!(a.in_flight_tokens(), 0);
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("load was not released after the client left");
}

#[tokio::test]
async fn models_lists_what_the_pool_serves() {
    let sim = sims(2).await;
    let (pool, _) = pool(&[
        ("a", sim.addrs()[0]),
        ("b", sim.addrs()[1]),
        ("dead", dead_address().await),
    ]);
    let url = gateway(pool, GatewayConfig::default()).await;
    let list: Value = reqwest::get(format!("{url}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![MODEL]);
    assert_eq!(list["object"], "list");
}

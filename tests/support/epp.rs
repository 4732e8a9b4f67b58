//! What the picker's end-to-end tests share: simulator replicas of a given engine
//! shape, a running picker (`igw epp run` in-process) with a client for its gateway
//! and admin ports, long requests that keep a replica busy, and a bounded poll of the
//! picker's view of its endpoints.
//!
//! Waiting is always on observable state (`GET /admin/endpoints`, `/ready`) with a
//! deadline that fails the test naming what never happened; nothing sleeps to
//! synchronise. The short pause between polls only keeps the loop from spinning.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use igw::epp::run::{EppOptions, RunningEpp, start};
use igw::sim::options::EngineOptions;
use igw::sim::server::{Listen, SimServer, SimServerConfig, spawn};
use serde_json::{Value, json};

pub use super::MODEL;

pub const ADAPTER: &str = "sql-lora";
/// The picker's response header naming the endpoint that served.
pub const SERVED: &str = "x-gateway-destination-endpoint-served";
pub const OBJECTIVE: &str = "x-gateway-inference-objective";

/// How long any wait on the picker's view may take before the test fails. Scrapes run
/// every 50 ms, so state the test caused shows within a few rounds.
const DEADLINE: Duration = Duration::from_secs(10);
const POLL_PAUSE: Duration = Duration::from_millis(5);

/// `testdata/epp/<name>`.
pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/epp")
        .join(name)
}

/// A replica serving [`MODEL`] with [`ADAPTER`] loaded, one adapter slot, a fixed
/// seed, and `engine`'s shape; `speedup` 1.0 is real time.
pub fn sim_config(engine: EngineOptions, speedup: f64) -> SimServerConfig {
    let engine = EngineOptions {
        max_loras: 1,
        seed: 7,
        ..engine
    }
    .engine_config()
    .expect("engine options are valid");
    let mut c = SimServerConfig::new(MODEL, engine);
    c.lora_modules = vec![ADAPTER.parse().expect("adapter flag")];
    c.speedup = speedup;
    c
}

/// `n` replicas on free loopback ports.
pub async fn replicas(n: usize, config: SimServerConfig) -> SimServer {
    spawn(config, Listen::local(n))
        .await
        .expect("replicas start")
}

/// One replica on exactly `addr` (an address a pool already names).
pub async fn replica_at(addr: SocketAddr, config: SimServerConfig) -> SimServer {
    let listen = Listen {
        host: addr.ip().to_string(),
        port: addr.port(),
        replicas: 1,
    };
    spawn(config, listen)
        .await
        .expect("replica starts on its port")
}

/// An address nothing listens on (a port just released).
pub async fn dead_address() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A running picker and where to reach it.
pub struct Picker {
    pub epp: RunningEpp,
    /// `http://` base of the gateway (OpenAI API).
    pub gateway: String,
    /// `http://` base of the metrics and admin port.
    pub admin: String,
    pub client: reqwest::Client,
}

/// Starts a picker over `pool`, with [`EppOptions::local`] changed by `configure`.
pub async fn picker(pool: &[SocketAddr], configure: impl FnOnce(&mut EppOptions)) -> Picker {
    let mut opts = EppOptions::local(pool);
    configure(&mut opts);
    let epp = start(&opts).await.expect("the picker starts");
    Picker {
        gateway: format!("http://{}", epp.proxy_addr.expect("the gateway serves")),
        admin: format!("http://{}", epp.metrics_addr),
        epp,
        client: reqwest::Client::new(),
    }
}

/// A finished response from the gateway.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// [`SERVED`], when an endpoint served.
    pub served: Option<String>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

impl Picker {
    /// `POST /v1/completions` with `body`, returning once the headers are in.
    pub async fn open(&self, body: &Value, objective: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/v1/completions", self.gateway))
            .json(body);
        if let Some(o) = objective {
            req = req.header(OBJECTIVE, o);
        }
        req.send().await.expect("the gateway answers")
    }

    /// `POST /v1/completions` with `body`, read to the end.
    pub async fn send(&self, body: &Value, objective: Option<&str>) -> Reply {
        let resp = self.open(body, objective).await;
        reply(resp).await
    }

    /// `POST /v1/completions` with a raw body.
    pub async fn send_raw(&self, body: Vec<u8>) -> Reply {
        let resp = self
            .client
            .post(format!("{}/v1/completions", self.gateway))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the gateway answers");
        reply(resp).await
    }

    /// `GET` on the admin port: status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let resp = self
            .client
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .expect("the admin port answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("admin body"))
    }

    /// `GET /admin/endpoints`'s `endpoints`.
    pub async fn endpoints(&self) -> Vec<Value> {
        let (status, text) = self.admin_get("/admin/endpoints").await;
        assert_eq!(status, 200, "{text}");
        let view: Value = serde_json::from_str(&text).expect("admin JSON");
        view["endpoints"].as_array().expect("endpoints").clone()
    }

    /// Polls `/admin/endpoints` until `ok` holds; fails the test with `what` and the
    /// last view if it does not within the deadline.
    pub async fn wait_for(&self, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let view = self.endpoints().await;
            if ok(&view) {
                return view;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the picker never saw {what} within {DEADLINE:?}; last view: {view:#?}");
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    /// Waits until every endpoint in `addrs` is healthy.
    pub async fn wait_healthy(&self, addrs: &[SocketAddr]) -> Vec<Value> {
        self.wait_for("every endpoint healthy", |v| {
            addrs.iter().all(|a| view(v, *a)["health"] == "healthy")
        })
        .await
    }

    /// Polls `GET /ready` until it answers `status`.
    pub async fn wait_ready(&self, status: u16) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (got, text) = self.admin_get("/ready").await;
            if got == status {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("/ready never answered {status} within {DEADLINE:?}; last: {got} {text}");
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let served = resp
        .headers()
        .get(SERVED)
        .map(|v| v.to_str().expect("ASCII header").to_string());
    let text = resp.text().await.expect("body read");
    Reply {
        status,
        served,
        text,
    }
}

/// The endpoint at `addr` in an `/admin/endpoints` view.
pub fn view(endpoints: &[Value], addr: SocketAddr) -> &Value {
    let addr = addr.to_string();
    endpoints
        .iter()
        .find(|e| e["address"] == addr.as_str())
        .unwrap_or_else(|| panic!("no endpoint {addr} in {endpoints:#?}"))
}

/// A number field of an endpoint view (0 when the endpoint has no metrics yet).
pub fn field(endpoint: &Value, name: &str) -> f64 {
    endpoint[name].as_f64().unwrap_or(0.0)
}

/// A short completion request; `tag` makes the prompt unique and too short (< 64
/// bytes) to match any prefix.
pub fn short_request(tag: &str) -> Value {
    json!({"model": MODEL, "prompt": format!("say hi ({tag})"), "max_tokens": 2})
}

/// Long streaming requests sent straight to one replica, bypassing the picker. They
/// generate until dropped, which disconnects them and makes the replica abort them.
pub struct Busy {
    _streams: Vec<reqwest::Response>,
}

/// Starts `n` requests for `model` at `addr` that run for far longer than a test, each
/// with a prompt of about `prompt_tokens` tokens. Returns once the replica accepted
/// them all.
pub async fn keep_busy(addr: SocketAddr, model: &str, n: usize, prompt_tokens: usize) -> Busy {
    let client = reqwest::Client::new();
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let prompt = format!("busy {i} {}", "lorem ipsum ".repeat(prompt_tokens / 2));
        let resp = client
            .post(format!("http://{addr}/v1/completions"))
            .json(&json!({
                "model": model,
                "prompt": prompt,
                "max_tokens": 4000,
                "ignore_eos": true,
                "stream": true,
            }))
            .send()
            .await
            .expect("the replica answers");
        assert_eq!(resp.status(), 200, "a long request was refused");
        streams.push(resp);
    }
    Busy { _streams: streams }
}

/// A pool over `endpoints` (name, address, the metrics the picker sees of it) routed by
/// `config`, with no scrape loop: the metrics are published once on a clock that never
/// moves, so they stay exactly as given. Outlier detection as `outlier` says.
pub fn fixed_pool(
    config: igw::epp::config::LoadedConfig,
    endpoints: &[(&str, SocketAddr, igw::epp::endpoint::EndpointMetrics)],
    outlier: igw::epp::lifecycle::outlier::OutlierPolicy,
) -> std::sync::Arc<igw::epp::pool::Pool> {
    fixed_pool_with(config, endpoints, outlier, Default::default())
}

/// [`fixed_pool`] with request objectives.
pub fn fixed_pool_with(
    config: igw::epp::config::LoadedConfig,
    endpoints: &[(&str, SocketAddr, igw::epp::endpoint::EndpointMetrics)],
    outlier: igw::epp::lifecycle::outlier::OutlierPolicy,
    objectives: igw::epp::config::objectives::Objectives,
) -> std::sync::Arc<igw::epp::pool::Pool> {
    use igw::epp::datastore::ScrapeOutcome;
    use igw::epp::endpoint::{Endpoint, EndpointMetrics};
    use igw::epp::pool::{Pool, PoolParts};
    let clock = std::sync::Arc::new(igw::epp::clock::ManualClock::new(Duration::from_secs(1)));
    let pool = std::sync::Arc::new(
        Pool::new(PoolParts {
            name: "test".into(),
            endpoints: endpoints
                .iter()
                .map(|(name, address, _)| Endpoint {
                    name: name.to_string(),
                    address: *address,
                })
                .collect(),
            config,
            objectives,
            refresh_interval: Duration::from_millis(50),
            staleness_threshold: Duration::from_secs(2),
            clock,
            seed: 0,
            outlier,
        })
        .expect("the pool builds"),
    );
    let now = pool.now();
    let snap = pool.snapshot();
    let outcomes = snap
        .endpoints
        .iter()
        .zip(endpoints)
        .map(|(state, (_, _, metrics))| ScrapeOutcome {
            endpoint: state.endpoint.clone(),
            result: Ok(EndpointMetrics {
                updated_at: now,
                ..metrics.clone()
            }),
            timed_out: false,
        })
        .collect();
    pool.datastore().publish(outcomes, now);
    pool
}

/// Serves the standalone gateway over `pool` on a free loopback port; returns its URL.
pub async fn serve_gateway(
    pool: std::sync::Arc<igw::epp::pool::Pool>,
    config: igw::epp::proxy::GatewayConfig,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = igw::epp::proxy::app(pool, config);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The sum of a metric's samples in Prometheus text whose line contains every one of
/// `labels` (e.g. `reason="stall"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

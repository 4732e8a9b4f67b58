//! `igw bbr run` behind a real Envoy 1.40: client → Envoy (ext_proc, FULL_DUPLEX_STREAMED
//! both ways, gie-facts §1.2) → a route chosen by `X-Gateway-Model-Name` → one of two
//! `igw sim serve` backends serving different models.
//!
//! Envoy runs `deploy/envoy/bbr.yaml`, the user-facing example, with its fixed ports
//! swapped for the test's (listener and admin on port 0, read back from the admin
//! API), so the example is what is tested. BBR serves TLS with its self-signed
//! certificate, which the example's cluster accepts without verifying. Everything
//! waits on replies or on Envoy's admin API under a deadline; nothing sleeps.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use igw::epp::bbr::{BbrOptions, RunningBbr};
use igw::sim::engine::EngineConfig;
use igw::sim::profile::LatencyProfile;
use igw::sim::server::{Listen, SimServer, SimServerConfig, spawn};
use serde_json::{Value, json};
use support::envoy::{self, Envoy};

const LLAMA: &str = "meta-llama/Llama-3.1-8B-Instruct";
const QWEN: &str = "Qwen/Qwen2.5-7B-Instruct";

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/envoy/bbr.yaml")
}

async fn sim(model: &str) -> SimServer {
    let profile = LatencyProfile::builtin("h100-llama3-8b").expect("built-in profile");
    let mut engine = EngineConfig::from_profile(profile);
    // Room for the 220 KB prompt (about 50,000 tokens), prefilled in chunks.
    engine.max_model_len = 131_072;
    let mut c = SimServerConfig::new(model, engine);
    c.speedup = 1000.0;
    spawn(c, Listen::local(1)).await.expect("simulator starts")
}

/// Everything one test runs: two simulators, BBR, and Envoy in front.
struct Stack {
    url: String,
    client: reqwest::Client,
    envoy: Envoy,
    bbr: RunningBbr,
    _sims: (SimServer, SimServer),
}

/// `text` with `from` replaced by `to`, which must occur exactly once.
fn swap(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "`{from}` in deploy/envoy/bbr.yaml"
    );
    text.replace(from, to)
}

fn port(addr: SocketAddr) -> String {
    format!("port_value: {}", addr.port())
}

async fn stack(name: &str) -> Stack {
    let sims = (sim(LLAMA).await, sim(QWEN).await);
    let bbr = igw::epp::bbr::start(&BbrOptions {
        secure_serving: true,
        ..BbrOptions::local()
    })
    .await
    .expect("bbr starts");
    let text = std::fs::read_to_string(example()).expect("read the example");
    let text = swap(&text, "port_value: 9901", "port_value: 0");
    let text = swap(&text, "port_value: 8081", "port_value: 0");
    let text = swap(&text, "port_value: 9004", &port(bbr.grpc_addr));
    let text = swap(&text, "port_value: 8000", &port(sims.0.addrs()[0]));
    let text = swap(&text, "port_value: 8001", &port(sims.1.addrs()[0]));
    let envoy = Envoy::start(name, &text).await;
    let url = format!("http://{}", envoy.listener("ingress").await);
    Stack {
        url,
        client: reqwest::Client::new(),
        envoy,
        bbr,
        _sims: sims,
    }
}

/// A finished reply through Envoy.
struct Reply {
    status: u16,
    route: String,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

impl Stack {
    async fn post(&self, body: Vec<u8>) -> Reply {
        let resp = self
            .client
            .post(format!("{}/v1/completions", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request through envoy: {e}\n{}", self.envoy.log()));
        let status = resp.status().as_u16();
        let route = resp
            .headers()
            .get("x-igw-route")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.expect("reply body");
        Reply {
            status,
            route,
            text,
        }
    }

    async fn completion(&self, body: Value) -> Reply {
        self.post(serde_json::to_vec(&body).unwrap()).await
    }
}

#[tokio::test]
async fn the_example_config_validates() {
    envoy::validate(&example()).expect("deploy/envoy/bbr.yaml is valid");
}

#[tokio::test]
async fn each_model_lands_on_its_backend_and_no_model_on_the_default_route() {
    let s = stack("route").await;
    for (model, route) in [(LLAMA, "llama"), (QWEN, "qwen"), (LLAMA, "llama")] {
        let r = s
            .completion(json!({"model": model, "prompt": "Hello", "max_tokens": 4}))
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        assert_eq!(r.route, route, "{model}");
        assert_eq!(
            r.json()["model"],
            model,
            "served by the backend for {model}"
        );
    }
    // No model: the simulator behind the default route answers with its base model.
    let r = s
        .completion(json!({"prompt": "Hello", "max_tokens": 4}))
        .await;
    assert_eq!((r.status, r.route.as_str()), (200, "default"), "{}", r.text);
    assert_eq!(r.json()["model"], LLAMA);
    // Not JSON: passed through untouched to the default route, whose server says why.
    let r = s.post(b"{not json".to_vec()).await;
    assert_eq!(r.route, "default");
    assert_eq!(r.status, 400, "{}", r.text);
    let metrics = reqwest::get(format!("http://{}/metrics", s.bbr.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("bbr_success_total 3"), "{metrics}");
    assert!(
        metrics.contains("bbr_body_field_not_found_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_sent_model_header_cannot_pick_the_route() {
    let s = stack("spoof").await;
    let resp = s
        .client
        .post(format!("{}/v1/completions", s.url))
        .header("X-Gateway-Model-Name", QWEN)
        .json(&json!({"model": LLAMA, "prompt": "Hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-igw-route"], "llama");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn streaming_responses_pass_through_envoy() {
    let s = stack("stream").await;
    let resp = s
        .client
        .post(format!("{}/v1/completions", s.url))
        .json(&json!({"model": QWEN, "prompt": "Count", "max_tokens": 8, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-igw-route"], "qwen");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let text = resp.text().await.unwrap();
    let frames: Vec<&str> = text
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| f.strip_prefix("data: ").unwrap_or_else(|| panic!("{f:?}")))
        .collect();
    assert_eq!(frames.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f).expect("chunk JSON"))
        .collect();
    assert!(chunks.len() >= 2, "{text}");
    assert!(chunks.iter().all(|c| c["model"] == QWEN), "{text}");
}

#[tokio::test]
async fn a_220_kb_body_is_routed_whole() {
    let s = stack("large").await;
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(5000);
    let body =
        serde_json::to_vec(&json!({"model": QWEN, "prompt": prompt, "max_tokens": 2})).unwrap();
    assert!(body.len() > 220_000, "{}", body.len());
    let r = s.post(body).await;
    assert_eq!((r.status, r.route.as_str()), (200, "qwen"), "{}", r.text);
    let usage = &r.json()["usage"];
    // Every word of the prompt reached the backend: ten tokens or so per sentence.
    let prompt_tokens = usage["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 40_000, "{usage}");
}

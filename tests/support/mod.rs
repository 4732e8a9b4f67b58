//! What the `igw sim serve` HTTP tests share: a test server configuration, a small
//! client, an SSE frame splitter and a Prometheus sample reader; [`epp`] adds what
//! the picker's end-to-end tests need on top, [`envoy`] a real Envoy, [`fake_kube`] a
//! loopback Kubernetes API server, and [`venv`] the Python environments real tools
//! come in.
//!
//! Nothing here asserts on timing or sleeps in place of waiting for something: it
//! sends requests and parses what comes back, and [`epp`] polls observable state
//! under a deadline.

#![allow(dead_code)] // each test binary uses a different subset

pub mod envoy;
pub mod epp;
pub mod extproc;
pub mod fake_kube;
pub mod venv;

use igw::sim::engine::EngineConfig;
use igw::sim::profile::LatencyProfile;
use igw::sim::server::{Listen, SimServer, SimServerConfig, spawn};
use serde_json::Value;

pub const MODEL: &str = "sim-llama";

pub fn config() -> SimServerConfig {
    let profile = LatencyProfile::builtin("h100-llama3-8b").expect("built-in profile");
    let mut c = SimServerConfig::new(MODEL, EngineConfig::from_profile(profile));
    c.lora_modules = vec!["sql-lora=/adapters/sql".parse().expect("adapter flag")];
    c.speedup = 1000.0;
    c
}

pub async fn start(c: SimServerConfig) -> (SimServer, String) {
    let sim = spawn(c, Listen::local(1)).await.expect("server starts");
    let url = sim.base_urls()[0].clone();
    (sim, url)
}

pub async fn post(url: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body read");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body read");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The `data:` payloads of an SSE response, in order.
pub async fn sse(url: &str, body: Value) -> Vec<String> {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let text = resp.text().await.expect("body read");
    text.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {frame:?}"))
                .to_string()
        })
        .collect()
}

pub fn parse_chunks(frames: &[String]) -> Vec<Value> {
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f).expect("chunk is JSON"))
        .collect()
}

pub async fn metrics_text(url: &str) -> String {
    let resp = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("metrics body")
}

/// Sum of the samples of `name` whose label list contains every `labels` entry.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn assert_error(status: u16, body: &Value, want_status: u16, want_type: &str) {
    assert_eq!(status, want_status, "{body}");
    let e = &body["error"];
    assert!(e["message"].is_string(), "{body}");
    assert_eq!(e["type"], want_type, "{body}");
    assert!(e["param"].is_null() || e["param"].is_string(), "{body}");
    assert_eq!(e["code"], want_status, "{body}");
}

/// The `message` of an OpenAI/vLLM JSON error body (`{"error": {"message", "type",
/// "param", "code"}}`), after checking the shape and that `code` is `status`.
pub fn error_message(text: &str, status: u16) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let e = &v["error"];
    assert_eq!(e["code"], status, "{text}");
    assert!(
        e["type"].as_str().is_some_and(|t| t.ends_with("Error")),
        "{text}"
    );
    assert!(e.get("param").is_some(), "{text}");
    e["message"].as_str().expect("a message").to_string()
}

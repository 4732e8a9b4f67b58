//! `igw sim serve` over HTTP, the operational side: a client that leaves mid-stream,
//! several replicas, `/metrics` with the driver-lag families, failure injection
//! (sim-facts §1.9), pod identity headers and concurrent streams.
//!
//! Real replicas run in-process on 127.0.0.1:0; tests await responses or poll
//! `/metrics`, and never sleep.

mod support;

use std::time::Duration;

use igw::sim::server::{Listen, spawn};
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_client_that_leaves_mid_stream_frees_its_request() {
    let mut c = config();
    // Real time: the request would take ~30 s to finish on its own.
    c.speedup = 1.0;
    let (_sim, url) = start(c).await;
    let mut resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(
            &json!({"prompt": "long", "max_tokens": 4000, "ignore_eos": true,
                      "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while seen.matches("data: ").count() < 3 {
        let chunk = resp.chunk().await.unwrap().expect("stream still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let text = metrics_text(&url).await;
    assert_eq!(metric(&text, "vllm:num_requests_running", &[]), 1.0);
    assert!(metric(&text, "vllm:kv_cache_usage_perc", &[]) > 0.0);
    drop(resp);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(&url).await;
        let aborted = metric(
            &text,
            "vllm:request_success_total",
            &["finished_reason=\"abort\""],
        );
        if aborted == 1.0 {
            assert_eq!(metric(&text, "vllm:num_requests_running", &[]), 0.0);
            assert_eq!(metric(&text, "vllm:kv_cache_usage_perc", &[]), 0.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never aborted:\n{text}"
        );
    }
}

#[tokio::test]
async fn replicas_serve_on_their_own_ports_with_their_own_engines() {
    let sim = spawn(config(), Listen::local(2)).await.unwrap();
    let urls = sim.base_urls();
    assert_eq!(urls.len(), 2);
    assert_ne!(sim.addrs()[0].port(), sim.addrs()[1].port());
    for url in &urls {
        let resp = reqwest::get(format!("{url}/health")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "");
    }
    let (status, _) = post(
        &format!("{}/v1/completions", urls[1]),
        json!({"prompt": "x", "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200);
    let first = metrics_text(&urls[0]).await;
    let second = metrics_text(&urls[1]).await;
    assert!(second.contains("engine=\"1\""), "{second}");
    let done = |t: &str| metric(t, "vllm:request_success_total", &[]);
    assert_eq!((done(&first), done(&second)), (0.0, 1.0));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_end_with_the_driver_lag_families() {
    let (_sim, url) = start(config()).await;
    post(
        &format!("{url}/v1/completions"),
        json!({"prompt": "x", "max_tokens": 3, "ignore_eos": true}),
    )
    .await;
    let resp = reqwest::get(format!("{url}/metrics")).await.unwrap();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.unwrap();
    let last_vllm = text.rfind("vllm:").unwrap();
    let lag = text.find("igw_sim_step_lag_seconds").unwrap();
    assert!(lag > last_vllm, "igw families come after vLLM's");
    assert!(metric(&text, "igw_sim_steps_total", &[]) >= 3.0);
    assert_eq!(
        metric(&text, "igw_sim_step_lag_seconds_count", &[]),
        metric(&text, "igw_sim_steps_total", &[])
    );
    // Every step costs at least the profile's fixed 6.9 ms of engine time.
    let steps = metric(&text, "igw_sim_steps_total", &[]);
    let modelled = metric(&text, "igw_sim_step_modelled_seconds_total", &[]);
    assert!(
        modelled >= 0.0069 * steps,
        "{modelled} s over {steps} steps"
    );
}

#[tokio::test]
async fn failure_injection_at_100_percent_always_fails() {
    let mut c = config();
    c.failure_rate = 100.0;
    let (_sim, url) = start(c).await;
    for _ in 0..12 {
        let (status, body) = post(
            &format!("{url}/v1/completions"),
            json!({"prompt": "x", "max_tokens": 2}),
        )
        .await;
        assert!(
            [400, 401, 404, 429, 503].contains(&status),
            "{status} {body}"
        );
        assert_eq!(body["error"]["code"], status);
        assert!(body["error"]["type"].is_string());
    }
    // Health and metrics are never failed.
    assert_eq!(
        reqwest::get(format!("{url}/health"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn pod_identity_is_echoed_in_headers() {
    let mut c = config();
    c.pod_name = Some("sim-0".into());
    c.pod_namespace = Some("inference".into());
    let (sim, url) = start(c).await;
    let resp = reqwest::get(format!("{url}/v1/models")).await.unwrap();
    let h = resp.headers();
    assert_eq!(h["x-inference-pod"], "sim-0");
    assert_eq!(h["x-inference-namespace"], "inference");
    assert_eq!(
        h["x-inference-port"].to_str().unwrap(),
        sim.addrs()[0].port().to_string()
    );
}

#[tokio::test]
async fn concurrent_streams_share_the_engine_and_all_finish() {
    let (_sim, url) = start(config()).await;
    let streams = (0..16).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            let req = json!({"prompt": format!("request {i}"), "max_tokens": 20 + i,
                             "ignore_eos": true, "stream": true,
                             "stream_options": {"include_usage": true}});
            let frames = sse(&format!("{url}/v1/completions"), req).await;
            let chunks = parse_chunks(&frames);
            (i, chunks.len(), chunks.last().cloned())
        })
    });
    for s in streams {
        let (i, n, usage) = s.await.expect("stream task");
        // Tokens, the finish chunk, the usage chunk.
        assert_eq!(n, 20 + i + 2);
        assert_eq!(usage.unwrap()["usage"]["completion_tokens"], 20 + i);
    }
    let text = metrics_text(&url).await;
    assert_eq!(
        metric(
            &text,
            "vllm:request_success_total",
            &["finished_reason=\"length\""]
        ),
        16.0
    );
    assert_eq!(metric(&text, "vllm:num_requests_running", &[]), 0.0);
    assert_eq!(metric(&text, "vllm:kv_cache_usage_perc", &[]), 0.0);
}

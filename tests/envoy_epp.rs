//! `igw epp run` behind a real Envoy 1.40: client → Envoy → igw's ext_proc (TLS, its
//! self-signed certificate) → the endpoint it names, through an ORIGINAL_DST cluster →
//! `igw sim serve` replicas. And the chained example: BBR, then each pool's own picker,
//! and a plain backend.
//!
//! Envoy runs the user-facing examples `deploy/envoy/epp.yaml` and
//! `deploy/envoy/bbr-two-pools.yaml` with their fixed ports swapped for the test's, so
//! the examples are what is tested. Which replica served is read from each replica's
//! own request counter. Waits are on replies, Envoy's admin API or the picker's
//! `/admin/endpoints`, under deadlines; nothing sleeps to let things happen.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use igw::epp::run::{EppOptions, RunningEpp, start};
use igw::sim::options::EngineOptions;
use igw::sim::server::SimServer;
use serde_json::{Value, json};
use support::envoy::{self, Envoy};
use support::epp::{MODEL, field, keep_busy, metric_sum, picker, replicas, sim_config, view};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/envoy")
        .join(name)
}

/// `text` with `from` replaced by `to`; `from` must occur exactly once.
fn swap(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "`{from}` in the example");
    text.replace(from, to)
}

fn port(addr: SocketAddr) -> String {
    format!("port_value: {}", addr.port())
}

/// `deploy/envoy/epp.yaml` pointed at the picker on `epp`, listener and admin on 0.
async fn envoy_for(name: &str, epp: SocketAddr) -> (Envoy, String) {
    let text = std::fs::read_to_string(example("epp.yaml")).unwrap();
    let text = swap(&text, "port_value: 9901", "port_value: 0");
    let text = swap(&text, "port_value: 8081", "port_value: 0");
    let text = swap(&text, "port_value: 9002", &port(epp));
    let envoy = Envoy::start(name, &text).await;
    let url = format!("http://{}", envoy.listener("ingress").await);
    (envoy, url)
}

/// Requests each replica of `sims` has finished, from its own `/metrics`.
async fn served(sims: &SimServer) -> Vec<f64> {
    let mut out = Vec::new();
    for url in sims.base_urls() {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        out.push(metric_sum(&text, "vllm:request_success_total", &[]));
    }
    out
}

fn diff(after: &[f64], before: &[f64]) -> Vec<f64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

async fn post(url: &str, path: &str, body: &Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .expect("envoy answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn tls_picker(o: &mut EppOptions) {
    o.secure_serving = true;
}

#[tokio::test]
async fn the_example_configs_validate() {
    for name in ["epp.yaml", "bbr-two-pools.yaml"] {
        envoy::validate(&example(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Completions and chat, streaming and not, all through Envoy; they land on the
/// pool's replicas and spread over them. A 220 KB body is served too.
#[tokio::test]
async fn requests_through_envoy_land_on_pool_endpoints_and_spread() {
    let sims = replicas(4, sim_config(long_prompts(), 100.0)).await;
    let p = picker(sims.addrs(), tls_picker).await;
    p.wait_healthy(sims.addrs()).await;
    assert!(p.epp.grpc_certificate_pem.is_some(), "TLS is on");
    let (_envoy, url) = envoy_for("spread", p.epp.grpc_addr).await;
    let before = served(&sims).await;
    for i in 0..24 {
        let (path, body) = match i % 4 {
            0 => (
                "/v1/completions",
                json!({"model": MODEL, "prompt": format!("hi {i}"), "max_tokens": 3}),
            ),
            1 => (
                "/v1/completions",
                json!({"model": MODEL, "prompt": format!("hi {i}"), "max_tokens": 3, "stream": true}),
            ),
            2 => (
                "/v1/chat/completions",
                json!({"model": MODEL, "messages": [{"role": "user", "content": format!("hi {i}")}], "max_tokens": 3}),
            ),
            _ => (
                "/v1/chat/completions",
                json!({"model": MODEL, "messages": [{"role": "user", "content": format!("hi {i}")}], "max_tokens": 3, "stream": true}),
            ),
        };
        let (status, text) = post(&url, path, &body).await;
        assert_eq!(status, 200, "{path} #{i}: {text}");
        if body["stream"] == true {
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["model"], MODEL);
        }
    }
    let got = diff(&served(&sims).await, &before);
    assert_eq!(
        got.iter().sum::<f64>(),
        24.0,
        "every request reached a replica: {got:?}"
    );
    let used = got.iter().filter(|&&n| n > 0.0).count();
    assert!(used >= 2, "the requests did not spread: {got:?}");

    let big = "lorem ipsum ".repeat(220 * 1024 / 12);
    let (status, text) = post(
        &url,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": big, "max_tokens": 1}),
    )
    .await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
}

/// Room for a 220 KB prompt (about 56,000 tokens).
fn long_prompts() -> EngineOptions {
    EngineOptions {
        max_model_len: Some(131_072),
        ..Default::default()
    }
}

/// Server-sent events come through Envoy and the picker chunk by chunk: the client
/// holds the first token while the replica is still generating.
#[tokio::test]
async fn sse_arrives_chunk_by_chunk() {
    // Real time: a token every few milliseconds.
    let sims = replicas(1, sim_config(EngineOptions::default(), 1.0)).await;
    let p = picker(sims.addrs(), tls_picker).await;
    p.wait_healthy(sims.addrs()).await;
    let (_envoy, url) = envoy_for("sse", p.epp.grpc_addr).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": MODEL, "prompt": "count", "max_tokens": 40, "ignore_eos": true, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: {"), "{first:?}");
    assert!(
        !first.windows(6).any(|w| w == b"[DONE]"),
        "the whole stream came at once"
    );
    let mut reads = 1;
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
        reads += 1;
    }
    assert!(rest.ends_with(b"data: [DONE]\n\n"));
    assert!(reads >= 10, "40 tokens arrived in only {reads} reads");
}

/// GIE's 400s through Envoy, and a replica kept busy avoided.
#[tokio::test]
async fn bad_bodies_and_a_busy_replica() {
    let engine = EngineOptions {
        max_num_seqs: Some(1),
        kv_blocks: Some(1000),
        ..Default::default()
    };
    let sims = replicas(2, sim_config(engine, 1.0)).await;
    let (a, b) = (sims.addrs()[0], sims.addrs()[1]);
    let p = picker(sims.addrs(), tls_picker).await;
    p.wait_healthy(&[a, b]).await;
    let (_envoy, url) = envoy_for("bodies", p.epp.grpc_addr).await;

    let (status, text) = post(&url, "/v1/completions", &json!({"prompt": "no model"})).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(
        text,
        "inference error: BadRequest - model not found in request body"
    );
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("error unmarshaling request bodyMap"),
        "{text}"
    );

    let _load = keep_busy(a, MODEL, 3, 400).await;
    p.wait_for("A queueing with its KV cache in use, B idle", |v| {
        let (va, vb) = (view(v, a), view(v, b));
        field(va, "waiting_queue_size") >= 2.0
            && field(va, "kv_cache_usage") > 0.0
            && field(vb, "waiting_queue_size") == 0.0
    })
    .await;
    let before = served(&sims).await;
    for i in 0..5 {
        let (status, text) = post(
            &url,
            "/v1/completions",
            &json!({"model": MODEL, "prompt": format!("quick {i}"), "max_tokens": 2}),
        )
        .await;
        assert_eq!(status, 200, "{text}");
    }
    let got = diff(&served(&sims).await, &before);
    assert_eq!(got, vec![0.0, 5.0], "the busy replica was not avoided");
}

/// The subset hint a front puts in `x-gateway-destination-endpoint-subset` reaches the
/// picker as `envoy.lb.subset_hint` metadata: only the named replica serves; a hint
/// naming none of the pool is a 503.
#[tokio::test]
async fn the_subset_hint_is_honoured() {
    let sims = replicas(3, sim_config(EngineOptions::default(), 100.0)).await;
    let p = picker(sims.addrs(), tls_picker).await;
    p.wait_healthy(sims.addrs()).await;
    let (_envoy, url) = envoy_for("subset", p.epp.grpc_addr).await;
    let only = sims.addrs()[2].to_string();
    let before = served(&sims).await;
    let client = reqwest::Client::new();
    for i in 0..6 {
        let resp = client
            .post(format!("{url}/v1/completions"))
            .header("x-gateway-destination-endpoint-subset", &only)
            .json(&json!({"model": MODEL, "prompt": format!("s {i}"), "max_tokens": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(diff(&served(&sims).await, &before), vec![0.0, 0.0, 6.0]);
    let resp = client
        .post(format!("{url}/v1/completions"))
        .header("x-gateway-destination-endpoint-subset", "10.9.9.9:8000")
        .json(&json!({"model": MODEL, "prompt": "nowhere", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
}

/// Envoy fails closed while the picker is down, and routes again once a new picker
/// serves on the same port.
#[tokio::test]
async fn envoy_fails_closed_without_the_picker_and_recovers_when_it_returns() {
    let sims = replicas(2, sim_config(EngineOptions::default(), 100.0)).await;
    let p = picker(sims.addrs(), tls_picker).await;
    p.wait_healthy(sims.addrs()).await;
    let grpc = p.epp.grpc_addr;
    let (envoy, url) = envoy_for("restart", grpc).await;
    let body = json!({"model": MODEL, "prompt": "hello", "max_tokens": 2});
    assert_eq!(post(&url, "/v1/completions", &body).await.0, 200);

    p.epp.shutdown().await;
    let (status, text) = post(&url, "/v1/completions", &body).await;
    assert!((500..600).contains(&status), "{status} {text}");

    let mut opts = EppOptions::local(sims.addrs());
    opts.secure_serving = true;
    opts.grpc_port = grpc.port();
    let again: RunningEpp = start(&opts).await.expect("a new picker starts on the port");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = post(&url, "/v1/completions", &body).await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "envoy never routed through the new picker (last {status}):\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    again.shutdown().await;
}

/// `deploy/envoy/bbr-two-pools.yaml`: BBR reads the model, each pool's route asks its
/// own picker, and the self-hosted model goes straight to its backend.
#[tokio::test]
async fn bbr_two_pools_and_a_plain_backend_route_by_model_name() {
    const LLAMA: &str = "meta-llama/Llama-3.1-8B-Instruct";
    const MISTRAL: &str = "mistralai/Mistral-7B-Instruct-v0.3";
    const QWEN: &str = "Qwen/Qwen2.5-7B-Instruct";
    let sim = |model: &str, n: usize| {
        let mut c = sim_config(long_prompts(), 100.0);
        c.model = model.to_string();
        c.lora_modules.clear();
        replicas(n, c)
    };
    let (llama, mistral, qwen) = (
        sim(LLAMA, 2).await,
        sim(MISTRAL, 2).await,
        sim(QWEN, 1).await,
    );
    let pl = picker(llama.addrs(), |o| {
        o.secure_serving = true;
        o.pool_name = "llama".into();
    })
    .await;
    let pm = picker(mistral.addrs(), |o| {
        o.secure_serving = true;
        o.pool_name = "mistral".into();
    })
    .await;
    pl.wait_healthy(llama.addrs()).await;
    pm.wait_healthy(mistral.addrs()).await;
    let bbr = igw::epp::bbr::start(&igw::epp::bbr::BbrOptions {
        secure_serving: true,
        ..igw::epp::bbr::BbrOptions::local()
    })
    .await
    .expect("bbr starts");
    let text = std::fs::read_to_string(example("bbr-two-pools.yaml")).unwrap();
    let text = swap(&text, "port_value: 9901", "port_value: 0");
    let text = swap(&text, "port_value: 8081", "port_value: 0");
    let text = swap(&text, "port_value: 9004", &port(bbr.grpc_addr));
    let text = swap(&text, "port_value: 9002", &port(pl.epp.grpc_addr));
    let text = swap(&text, "port_value: 9012", &port(pm.epp.grpc_addr));
    let text = swap(&text, "port_value: 8200", &port(qwen.addrs()[0]));
    let envoy = Envoy::start("two-pools", &text).await;
    let url = format!("http://{}", envoy.listener("ingress").await);

    let before = (
        served(&llama).await,
        served(&mistral).await,
        served(&qwen).await,
    );
    let client = reqwest::Client::new();
    for (model, route) in [
        (LLAMA, "llama"),
        (MISTRAL, "mistral"),
        (QWEN, "self-hosted"),
        (LLAMA, "llama"),
        (MISTRAL, "mistral"),
    ] {
        let resp = client
            .post(format!("{url}/v1/completions"))
            .json(&json!({"model": model, "prompt": "Hello", "max_tokens": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}\n{}", envoy.log());
        assert_eq!(resp.headers()["x-igw-route"], route, "{model}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["model"], model);
    }
    // A 220 KB body through both ext_proc filters.
    let big = "lorem ipsum ".repeat(220 * 1024 / 12);
    let resp = client
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": MISTRAL, "prompt": big, "max_tokens": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sum = |v: Vec<f64>| v.iter().sum::<f64>();
    assert_eq!(sum(diff(&served(&llama).await, &before.0)), 2.0);
    assert_eq!(sum(diff(&served(&mistral).await, &before.1)), 3.0);
    assert_eq!(sum(diff(&served(&qwen).await, &before.2)), 1.0);
    // Each picker saw only its own pool's requests.
    let routed = |p: &support::epp::Picker| {
        let p = p.admin.clone();
        async move {
            let text = reqwest::get(format!("{p}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metric_sum(&text, "inference_objective_request_total", &[])
        }
    };
    assert_eq!(routed(&pl).await, 2.0);
    assert_eq!(routed(&pm).await, 3.0);
}

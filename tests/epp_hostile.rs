//! The standalone gateway against hostile clients and broken endpoints: request
//! targets that are not origin-form, model servers' admin routes, floods of distinct
//! model names, replicas that die or fail before answering, streams that stall or
//! break off, and flag values no task could live with. After each attack, normal
//! requests are still served.
//!
//! Real HTTP on 127.0.0.1:0; simulators as model servers, or small hand-written
//! upstreams where a test needs a server to misbehave in one exact way.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use igw::epp::config::gie_default;
use igw::epp::endpoint::EndpointMetrics;
use igw::epp::lifecycle::outlier::OutlierPolicy;
use igw::epp::proxy::GatewayConfig;
use igw::epp::run::{EppOptions, start};
use serde_json::json;
use support::epp::{
    MODEL, dead_address, fixed_pool, metric_sum, picker, replicas, serve_gateway, short_request,
    sim_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the picker sees of an endpoint: `queue` waiting, `kv` cache use.
fn metrics(queue: u64, kv: f64) -> EndpointMetrics {
    EndpointMetrics {
        waiting_queue_size: queue,
        kv_cache_usage: kv,
        ..EndpointMetrics::default()
    }
}

/// Sends raw bytes on a new connection and returns the status code of the answer.
async fn raw_status(addr: SocketAddr, request: &str) -> u16 {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

/// `OPTIONS *`, absolute-form and authority-form targets get a 4xx before routing, and
/// none of them counts against an endpoint: a flood of them leaves the pool whole.
#[tokio::test]
async fn request_targets_that_are_not_origin_form_get_4xx_and_never_touch_the_pool() {
    let sim = replicas(2, sim_config(Default::default(), 100.0)).await;
    let p = picker(sim.addrs(), |_| {}).await;
    p.wait_healthy(sim.addrs()).await;
    let gateway = p.epp.proxy_addr.unwrap();
    for i in 0..50 {
        let (target, status) = match i % 3 {
            0 => ("OPTIONS * HTTP/1.1\r\nHost: g\r\n\r\n", 400),
            1 => (
                "POST http://evil.example/v1/completions HTTP/1.1\r\nHost: g\r\ncontent-length: 2\r\n\r\n{}",
                400,
            ),
            _ => (
                "GET http://127.0.0.1:1/v1/models HTTP/1.1\r\nHost: g\r\n\r\n",
                400,
            ),
        };
        assert_eq!(raw_status(gateway, target).await, status, "{target}");
    }
    let view = p.endpoints().await;
    for e in &view {
        assert_eq!(e["health"], "healthy", "{e}");
        assert!(e["last_error"].is_null(), "{e}");
    }
    let r = p.send(&short_request("after the flood"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// The model servers' admin routes are not reachable through the gateway.
#[tokio::test]
async fn model_server_admin_routes_are_not_forwarded() {
    let sim = replicas(1, sim_config(Default::default(), 100.0)).await;
    let p = picker(sim.addrs(), |_| {}).await;
    p.wait_healthy(sim.addrs()).await;
    let load = p
        .client
        .post(format!("{}/v1/load_lora_adapter", p.gateway))
        .json(&json!({"lora_name": "evil", "lora_path": "/tmp/evil"}))
        .send()
        .await
        .unwrap();
    assert_eq!(load.status(), 404);
    let text = load.text().await.unwrap();
    let message = support::error_message(&text, 404);
    assert!(
        message.starts_with("inference error: NotFound - "),
        "{message}"
    );
    for path in [
        "/metrics",
        "/v1/unload_lora_adapter",
        "/sleep",
        "/reset_prefix_cache",
    ] {
        let r = p
            .client
            .get(format!("{}{path}", p.gateway))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let models: serde_json::Value = reqwest::get(format!("{}/v1/models", sim.base_urls()[0]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(!ids.contains(&"evil"), "the adapter was loaded: {ids:?}");
}

/// Distinct client-chosen model names (in the body, and in the model-name rewrite
/// header) do not become metric series: they are counted under `other`, while the
/// model the pool serves keeps its own label.
#[tokio::test]
async fn floods_of_model_names_do_not_grow_the_metrics() {
    let sim = replicas(1, sim_config(Default::default(), 100.0)).await;
    let p = picker(sim.addrs(), |_| {}).await;
    p.wait_healthy(sim.addrs()).await;
    let filler = "m".repeat(4096);
    for i in 0..150 {
        let body = json!({"model": format!("{filler}-{i}"), "prompt": "x", "max_tokens": 1});
        let r = p.send(&body, None).await;
        assert_eq!(r.status, 404, "the model server refuses unknown models");
        let r = p
            .client
            .post(format!("{}/v1/completions", p.gateway))
            .header(
                "x-gateway-model-name-rewrite",
                format!("rewrite-{filler}-{i}"),
            )
            .json(&short_request("rewritten"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = p.send(&short_request("real"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, text) = p.admin_get("/metrics").await;
    // The flooded names alone would be 150 × 2 × 4 KB per series; the page with both
    // generations' names and a few `other` series is under 100 KB.
    assert!(text.len() < 256 * 1024, "/metrics is {} bytes", text.len());
    assert!(!text.contains(&filler), "a flooded name became a label");
    let other = r#"model_name="other""#;
    assert!(
        metric_sum(&text, "inference_objective_request_total", &[other]) >= 150.0,
        "{text}"
    );
    let rewritten = r#"target_model_name="other""#;
    assert!(metric_sum(&text, "inference_objective_request_total", &[rewritten]) >= 150.0);
    let real = format!(r#"model_name="{MODEL}""#);
    assert!(metric_sum(&text, "inference_objective_request_total", &[&real]) >= 1.0);
}

/// A replica that died (nothing listens) while its metrics still look best: the
/// request is sent to a healthy one instead of failing, and the re-send is counted.
#[tokio::test]
async fn a_request_to_a_replica_that_just_died_is_sent_to_a_healthy_one() {
    let live = replicas(1, sim_config(Default::default(), 100.0)).await;
    let dead = dead_address().await;
    // The dead one looks idle, the live one busy: the default profile picks the dead.
    let pool = fixed_pool(
        gie_default(),
        &[
            ("dead", dead, metrics(0, 0.0)),
            ("live", live.addrs()[0], metrics(8, 0.5)),
        ],
        OutlierPolicy::default(),
    );
    let url = serve_gateway(pool.clone(), GatewayConfig::default()).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&short_request("retry me"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.headers()["x-gateway-destination-endpoint-served"].clone();
    assert_eq!(served.to_str().unwrap(), live.addrs()[0].to_string());
    let text = pool.metrics().render();
    assert_eq!(
        metric_sum(
            &text,
            "igw_epp_request_retries_total",
            &[r#"reason="connect""#]
        ),
        1.0,
        "{text}"
    );
}

/// Another way nothing reaches a model server: the connection opens, then closes
/// before any response (a replica going down, a pooled connection it dropped).
#[tokio::test]
async fn a_connection_closed_before_any_response_is_sent_elsewhere() {
    let live = replicas(1, sim_config(Default::default(), 100.0)).await;
    let closer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closing = closer.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = closer.accept().await {
            drop(conn);
        }
    });
    let pool = fixed_pool(
        gie_default(),
        &[
            ("closing", closing, metrics(0, 0.0)),
            ("live", live.addrs()[0], metrics(8, 0.5)),
        ],
        OutlierPolicy::default(),
    );
    let url = serve_gateway(pool.clone(), GatewayConfig::default()).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&short_request("closed on me"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = pool.metrics().render();
    assert_eq!(
        metric_sum(
            &text,
            "igw_epp_request_retries_total",
            &[r#"reason="closed""#]
        ),
        1.0,
        "{text}"
    );
}

/// Re-sends are bounded: with every endpoint dead the client gets a 503 after
/// `max_retries` re-sends, naming what failed.
#[tokio::test]
async fn re_sends_are_bounded_when_every_endpoint_is_dead() {
    let dead: Vec<SocketAddr> = futures::future::join_all((0..4).map(|_| dead_address())).await;
    let endpoints: Vec<(&str, SocketAddr, EndpointMetrics)> = ["a", "b", "c", "d"]
        .into_iter()
        .zip(&dead)
        .map(|(n, a)| (n, *a, metrics(0, 0.0)))
        .collect();
    let pool = fixed_pool(gie_default(), &endpoints, OutlierPolicy::default());
    let url = serve_gateway(
        pool.clone(),
        GatewayConfig {
            max_retries: 2,
            ..GatewayConfig::default()
        },
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&short_request("nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.unwrap();
    assert!(body.contains("failed before responding"), "{body}");
    let text = pool.metrics().render();
    assert_eq!(metric_sum(&text, "igw_epp_request_retries_total", &[]), 2.0);
}

/// An upstream that answers every inference request with 500 while its metrics look
/// best: after five failures in a row it is ejected, and requests go elsewhere.
#[tokio::test]
async fn an_endpoint_whose_requests_keep_failing_is_ejected() {
    let live = replicas(1, sim_config(Default::default(), 100.0)).await;
    let broken = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken") });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broken_addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, broken).await });
    let pool = fixed_pool(
        gie_default(),
        &[
            ("broken", broken_addr, metrics(0, 0.0)),
            ("live", live.addrs()[0], metrics(8, 0.5)),
        ],
        OutlierPolicy::default(),
    );
    let url = serve_gateway(pool.clone(), GatewayConfig::default()).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = client
            .post(format!("{url}/v1/completions"))
            .json(&short_request(&format!("try {i}")))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [500, 500, 500, 500, 500, 200, 200, 200]);
    let snap = pool.snapshot();
    assert!(snap.get("broken").unwrap().outlier.ejected(pool.now()));
    let text = pool.metrics().render();
    assert_eq!(
        metric_sum(&text, "igw_epp_outlier_ejections_total", &[]),
        1.0
    );
}

/// An SSE upstream that sends its headers and one event, then either stalls or breaks
/// off: the client's stream ends with vLLM's error event and `[DONE]`, not a hang or
/// a cut connection, and it is counted.
#[tokio::test]
async fn a_stream_that_stalls_or_breaks_off_ends_with_an_error_event() {
    for (mode, reason) in [("stall", "stall"), ("break", "upstream")] {
        // Breaks the upstream's body once the client has the first event, so the
        // break comes after the response has surely begun.
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let released = release.clone();
        let upstream = axum::Router::new().fallback(move || {
            let released = released.clone();
            async move {
                let first = futures::stream::once(async {
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                        b"data: {\"choices\":[{\"text\":\"a\"}]}\n\n",
                    ))
                });
                let rest = futures::stream::once(async move {
                    if mode == "stall" {
                        std::future::pending::<()>().await;
                    }
                    released.notified().await;
                    Err(std::io::Error::other("replica died"))
                });
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(axum::body::Body::from_stream(first.chain(rest)))
                    .unwrap()
            }
        });
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, upstream).await });
        let pool = fixed_pool(
            gie_default(),
            &[("up", addr, metrics(0, 0.0))],
            OutlierPolicy::off(),
        );
        let url = serve_gateway(
            pool.clone(),
            GatewayConfig {
                stall_timeout: Some(Duration::from_millis(300)),
                ..GatewayConfig::default()
            },
        )
        .await;
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/completions"))
            .json(&json!({"model": MODEL, "prompt": "x", "stream": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{mode}");
        let mut stream = resp.bytes_stream();
        let mut body = stream.next().await.unwrap().unwrap().to_vec();
        release.notify_one();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.expect("the stream ends cleanly"));
        }
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with("data: {\"choices\""), "{mode}: {body}");
        assert!(body.contains("data: {\"error\":"), "{mode}: {body}");
        assert!(body.ends_with("data: [DONE]\n\n"), "{mode}: {body}");
        let text = pool.metrics().render();
        let label = format!("reason=\"{reason}\"");
        assert_eq!(
            metric_sum(&text, "igw_epp_responses_broken_total", &[&label]),
            1.0,
            "{mode}: {text}"
        );
        assert_eq!(pool.snapshot().get("up").unwrap().load.in_flight(), 0);
    }
}

/// Flag values that would kill a background task are refused at start, naming the
/// flag.
#[tokio::test]
async fn flag_values_no_task_could_live_with_are_refused_at_start() {
    let addr = dead_address().await;
    type Set = fn(&mut EppOptions);
    let cases: [(&str, Set); 4] = [
        ("--refresh-metrics-interval", |o| {
            o.refresh_metrics_interval = Duration::ZERO
        }),
        ("--metrics-staleness-threshold", |o| {
            o.metrics_staleness_threshold = Duration::ZERO
        }),
        ("--response-timeout", |o| {
            o.response_timeout = Duration::ZERO
        }),
        ("--metrics-staleness-threshold", |o| {
            o.metrics_staleness_threshold = Duration::from_millis(10)
        }),
    ];
    for (flag, set) in cases {
        let mut opts = EppOptions::local(&[addr]);
        set(&mut opts);
        let err = match start(&opts).await {
            Ok(_) => panic!("{flag}: started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.starts_with(flag), "{err}");
    }
}

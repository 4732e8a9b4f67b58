//! The picker's ext_proc protocol over real gRPC streams, case for case with GIE's
//! hermetic integration tests (gie-facts §9.1): a test client plays Envoy's side of one
//! stream against a pool whose endpoints' metrics are fixed, as GIE's tests fake them
//! (`P(index, queue, kv, models)`, pods at `192.168.1.<index+1>:8000`). Nothing serves
//! on those addresses: the picker only decides; Envoy (here, the test) forwards.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use envoy_types::pb::envoy::service::ext_proc::v3::{ProcessingResponse, processing_response};
use igw::epp::config::objectives::Objectives;
use igw::epp::config::{self, LoadedConfig, gie_default};
use igw::epp::endpoint::EndpointMetrics;
use igw::epp::lifecycle::outlier::OutlierPolicy;
use igw::epp::pool::Pool;
use support::epp::{fixed_pool_with, metric_sum};
use support::extproc::*;

/// A pod as GIE's tests write it: index, waiting queue, KV-cache use, running adapters.
struct P(u8, u64, f64, &'static [&'static str]);

fn addr(index: u8) -> SocketAddr {
    SocketAddr::from(([192, 168, 1, index + 1], 8000))
}

fn lora_config() -> LoadedConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/epp/lora-affinity.yaml");
    config::load(&path).expect("the test config loads")
}

fn pool(config: LoadedConfig, pods: &[P]) -> Arc<Pool> {
    let objectives = Objectives::from_yaml_str(
        "objectives:\n- name: critical\n  priority: 2\n- name: sheddable\n  priority: -1\n- name: sql-lora-sheddable\n",
        "objectives",
    )
    .unwrap();
    let names: Vec<String> = pods.iter().map(|p| format!("pod-{}", p.0)).collect();
    let endpoints: Vec<(&str, SocketAddr, EndpointMetrics)> = pods
        .iter()
        .zip(&names)
        .map(|(p, name)| {
            (
                name.as_str(),
                addr(p.0),
                EndpointMetrics {
                    waiting_queue_size: p.1,
                    kv_cache_usage: p.2,
                    active_adapters: p.3.iter().map(|s| s.to_string()).collect(),
                    max_active_adapters: 2,
                    ..EndpointMetrics::default()
                },
            )
        })
        .collect();
    fixed_pool_with(config, &endpoints, OutlierPolicy::default(), objectives)
}

async fn stream(pool: &Arc<Pool>) -> Envoy {
    let addr = serve_ext_proc(pool.clone(), 16 << 20).await;
    Envoy::connect(addr).await
}

/// Sends one request (headers, then `body` in one message) and returns the replies.
async fn send(envoy: &mut Envoy, headers: &[(&str, &str)], body: &str) -> Vec<ProcessingResponse> {
    envoy
        .send(request_headers("/v1/completions", headers, false))
        .await;
    envoy.send(request_body(body.as_bytes(), true)).await;
    envoy.request_replies(false).await
}

/// The success shape GIE checks: a request-headers reply that clears the route cache
/// and names the destination in a header and in `envoy.lb` metadata (the same value),
/// with `Content-Length` and `x-request-id`, then the body, end of stream on the last.
fn destination(replies: &[ProcessingResponse], body_len: usize) -> String {
    assert!(replies.len() >= 2, "{replies:#?}");
    let headers = &replies[0];
    assert!(
        matches!(
            headers.response,
            Some(processing_response::Response::RequestHeaders(_))
        ),
        "{headers:#?}"
    );
    assert!(clears_route_cache(headers));
    let set = set_headers(headers);
    let dest = set["x-gateway-destination-endpoint"].clone();
    assert_eq!(
        destination_metadata(headers).as_deref(),
        Some(dest.as_str())
    );
    assert_eq!(set["content-length"], body_len.to_string());
    assert!(!set["x-request-id"].is_empty());
    let body: Vec<u8> = replies[1..].iter().flat_map(body_bytes).collect();
    assert_eq!(body.len(), body_len);
    assert!(body_eos(replies.last().unwrap(), true));
    dest
}

fn completion(model: &str) -> String {
    format!(r#"{{"model":"{model}","prompt":"test1","temperature":0}}"#)
}

#[tokio::test]
async fn select_lower_queue_and_kv_cache() {
    let pool = pool(
        gie_default(),
        &[P(0, 3, 0.2, &[]), P(1, 0, 0.1, &[]), P(2, 10, 0.2, &[])],
    );
    let mut envoy = stream(&pool).await;
    let body = completion("my-model");
    let replies = send(
        &mut envoy,
        &[("x-gateway-inference-objective", "critical")],
        &body,
    )
    .await;
    assert_eq!(destination(&replies, body.len()), "192.168.1.2:8000");
    let text = pool.metrics().render();
    assert_eq!(
        metric_sum(
            &text,
            "inference_objective_request_total",
            &[r#"priority="2""#]
        ),
        1.0,
        "{text}"
    );
    pool.metrics().set_pool(&pool.pool_stats());
    let text = pool.metrics().render();
    assert_eq!(metric_sum(&text, "inference_pool_ready_pods", &[]), 3.0);
}

#[tokio::test]
async fn select_active_lora_low_queue() {
    let pool = pool(
        lora_config(),
        &[
            P(0, 0, 0.2, &["foo", "bar"]),
            P(1, 0, 0.1, &["foo", "sql-lora-1fdg2"]),
            P(2, 10, 0.2, &["foo", "bar"]),
        ],
    );
    let mut envoy = stream(&pool).await;
    let body = completion("sql-lora-1fdg2");
    let replies = send(&mut envoy, &[], &body).await;
    assert_eq!(destination(&replies, body.len()), "192.168.1.2:8000");
}

#[tokio::test]
async fn select_lora_despite_higher_kv_cache() {
    let pool = pool(
        lora_config(),
        &[
            P(0, 0, 0.2, &["foo", "bar"]),
            P(1, 0, 0.4, &["foo", "sql-lora-1fdg3"]),
            P(2, 10, 0.3, &["foo"]),
        ],
    );
    let mut envoy = stream(&pool).await;
    let body = completion("sql-lora-1fdg3");
    let replies = send(&mut envoy, &[], &body).await;
    assert_eq!(destination(&replies, body.len()), "192.168.1.2:8000");
}

#[tokio::test]
async fn no_backend_pods_available() {
    let pool = pool(gie_default(), &[]);
    let mut envoy = stream(&pool).await;
    envoy
        .send(request_headers("/v1/completions", &[], true))
        .await;
    let replies = envoy.request_replies(true).await;
    let (status, body, headers) = immediate(&replies[0]).expect("an immediate response");
    assert_eq!(status, 500);
    assert_eq!(
        body,
        "inference error: Internal - no pods available in datastore"
    );
    assert_eq!(
        headers["x-llm-d-request-dropped-reason"],
        "rejected-no-endpoints"
    );
}

#[tokio::test]
async fn request_missing_model_field() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    let replies = send(&mut envoy, &[], r#"{"prompt":"test1","temperature":0}"#).await;
    let (status, body, _) = immediate(&replies[0]).expect("an immediate response");
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "inference error: BadRequest - model not found in request body"
    );
}

#[tokio::test]
async fn invalid_json_body() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    let replies = send(&mut envoy, &[], "{not json").await;
    let (status, body, _) = immediate(&replies[0]).expect("an immediate response");
    assert_eq!(status, 400);
    assert!(
        body.starts_with("inference error: BadRequest - error unmarshaling request bodyMap"),
        "{body}"
    );
}

#[tokio::test]
async fn do_not_shed_requests_by_default() {
    // Saturated pods; priority 0 (no objective) is never shed.
    let pool = pool(gie_default(), &[P(0, 300, 0.95, &[]), P(1, 400, 0.98, &[])]);
    let mut envoy = stream(&pool).await;
    let body = completion("my-model");
    let replies = send(&mut envoy, &[], &body).await;
    destination(&replies, body.len());
    // A sheddable one is, with GIE's 429 and llm-d's reason.
    let mut envoy = stream(&pool).await;
    let replies = send(
        &mut envoy,
        &[("x-llm-d-inference-objective", "sheddable")],
        &body,
    )
    .await;
    let (status, text, headers) = immediate(&replies[0]).expect("shed");
    assert_eq!(status, 429);
    assert!(
        text.contains("system saturated, sheddable request dropped"),
        "{text}"
    );
    assert_eq!(
        headers["x-llm-d-request-dropped-reason"],
        "rejected-saturated"
    );
}

#[tokio::test]
async fn split_body_across_chunks() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[]), P(1, 5, 0.5, &[])]);
    let mut envoy = stream(&pool).await;
    let body = completion("my-model");
    let (a, b) = body.split_at(10);
    envoy
        .send(request_headers("/v1/completions", &[], false))
        .await;
    envoy.send(request_body(a.as_bytes(), false)).await;
    envoy.send(request_body(b.as_bytes(), true)).await;
    let replies = envoy.request_replies(false).await;
    assert_eq!(destination(&replies, body.len()), "192.168.1.1:8000");
    let sent: Vec<u8> = replies[1..].iter().flat_map(body_bytes).collect();
    assert_eq!(sent, body.as_bytes(), "reassembled in order");
}

#[tokio::test]
async fn passthrough_parser_success() {
    let mut config = config::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/epp/passthrough.yaml"),
    )
    .expect("the passthrough config loads");
    config.notes.clear();
    let pool = pool(config, &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    let body = "arbitrary \u{0} bytes, no JSON";
    let replies = send(
        &mut envoy,
        &[("x-gateway-inference-objective", "critical")],
        body,
    )
    .await;
    assert_eq!(destination(&replies, body.len()), "192.168.1.1:8000");
    let text = pool.metrics().render();
    assert_eq!(
        metric_sum(
            &text,
            "inference_objective_request_total",
            &[r#"priority="2""#]
        ),
        1.0
    );
}

#[tokio::test]
async fn passthrough_model_not_in_objectives() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    let body = completion("direct-model");
    let replies = send(
        &mut envoy,
        &[
            ("x-gateway-model-name-rewrite", "direct-model"),
            ("x-gateway-inference-objective", "sql-lora-sheddable"),
        ],
        &body,
    )
    .await;
    assert_eq!(destination(&replies, body.len()), "192.168.1.1:8000");
    let sent: Vec<u8> = replies[1..].iter().flat_map(body_bytes).collect();
    assert_eq!(sent, body.as_bytes(), "the model is unchanged");
}

#[tokio::test]
async fn rewrite_request_model() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    let body = completion("public-name");
    let replies = send(
        &mut envoy,
        &[("x-llm-d-model-name-rewrite", "sql-lora-v2")],
        &body,
    )
    .await;
    let sent: Vec<u8> = replies[1..].iter().flat_map(body_bytes).collect();
    let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent["model"], "sql-lora-v2");
    destination(&replies, serde_json::to_vec(&sent).unwrap().len());
}

#[tokio::test]
async fn subsetting_select_best_from_subset() {
    let pool = pool(
        gie_default(),
        &[P(0, 0, 0.1, &[]), P(1, 5, 0.2, &[]), P(2, 3, 0.15, &[])],
    );
    let mut envoy = stream(&pool).await;
    let body = completion("my-model");
    envoy
        .send(with_subset(
            request_headers("/v1/completions", &[], false),
            &["192.168.1.2:8000", "192.168.1.3:8000"],
        ))
        .await;
    envoy.send(request_body(body.as_bytes(), true)).await;
    let replies = envoy.request_replies(false).await;
    assert_eq!(destination(&replies, body.len()), "192.168.1.3:8000");
}

#[tokio::test]
async fn subsetting_partial_match() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[]), P(1, 50, 0.9, &[])]);
    let mut envoy = stream(&pool).await;
    let body = completion("my-model");
    envoy
        .send(with_subset(
            request_headers("/v1/completions", &[], false),
            &["192.168.1.2:8000", "192.168.1.9:8000"],
        ))
        .await;
    envoy.send(request_body(body.as_bytes(), true)).await;
    let replies = envoy.request_replies(false).await;
    assert_eq!(
        destination(&replies, body.len()),
        "192.168.1.2:8000",
        "only the listed pod, loaded as it is"
    );
}

#[tokio::test]
async fn subsetting_no_pods_match() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    envoy
        .send(with_subset(
            request_headers("/v1/completions", &[], false),
            &["10.0.0.99:8000"],
        ))
        .await;
    envoy
        .send(request_body(completion("my-model").as_bytes(), true))
        .await;
    let replies = envoy.request_replies(false).await;
    let (status, body, _) = immediate(&replies[0]).expect("an immediate response");
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request"
    );
}

#[tokio::test]
async fn protocol_simple_get_header_only() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    envoy.send(request_headers("/v1/models", &[], true)).await;
    let replies = envoy.request_replies(true).await;
    assert_eq!(replies.len(), 1);
    let set = set_headers(&replies[0]);
    assert_eq!(set["x-gateway-destination-endpoint"], "192.168.1.1:8000");
    assert_eq!(
        destination_metadata(&replies[0]).as_deref(),
        Some("192.168.1.1:8000")
    );
}

/// Routes one request, then plays the response side: headers, then `chunks`.
async fn respond(
    pool: &Arc<Pool>,
    request_headers_: &[(&str, &str)],
    model: &str,
    content_type: &str,
    chunks: &[&[u8]],
) -> (Envoy, Vec<ProcessingResponse>) {
    let mut envoy = stream(pool).await;
    send(&mut envoy, request_headers_, &completion(model)).await;
    envoy
        .send(response_headers(
            200,
            &[("content-type", content_type)],
            Some("192.168.1.1:8000"),
        ))
        .await;
    let headers = envoy.reply().await;
    for (i, chunk) in chunks.iter().enumerate() {
        envoy
            .send(response_body(chunk, i + 1 == chunks.len()))
            .await;
    }
    let mut replies = vec![headers];
    loop {
        let r = envoy.reply().await;
        let last = body_eos(&r, false);
        replies.push(r);
        if last {
            return (envoy, replies);
        }
    }
}

#[tokio::test]
async fn response_buffering_multi_chunk_json() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let first = br#"{"id":"cmpl-1","object":"text_completion","model":"sql-lora-v2","#;
    let second =
        br#""choices":[],"usage":{"prompt_tokens":7,"completion_tokens":10,"total_tokens":17}}"#;
    let (_envoy, replies) = respond(
        &pool,
        &[("x-gateway-model-name-rewrite", "sql-lora-v2")],
        "public-name",
        "application/json",
        &[first, second],
    )
    .await;
    let set = set_headers(&replies[0]);
    assert_eq!(set["x-went-into-resp-headers"], "true");
    // Held until the end, re-emitted whole, the model turned back.
    assert_eq!(replies.len(), 2, "{replies:#?}");
    let body = String::from_utf8(body_bytes(&replies[1])).unwrap();
    assert!(body.contains(r#""model":"public-name""#), "{body}");
    assert!(!body.contains("sql-lora-v2"), "{body}");
    let text = pool.metrics().render();
    assert_eq!(
        metric_sum(&text, "inference_objective_output_tokens_sum", &[]),
        10.0,
        "{text}"
    );
}

#[tokio::test]
async fn response_buffering_invalid_json() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let garbage: &[u8] = b"this is { not json";
    let (_envoy, replies) = respond(&pool, &[], "my-model", "application/json", &[garbage]).await;
    let body: Vec<u8> = replies[1..].iter().flat_map(body_bytes).collect();
    assert_eq!(body, garbage, "passed through unchanged");
}

#[tokio::test]
async fn response_buffering_empty_eos_chunk_json() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let json: &[u8] =
        br#"{"object":"text_completion","usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    let (_envoy, replies) = respond(&pool, &[], "my-model", "application/json", &[json, b""]).await;
    let body: Vec<u8> = replies[1..].iter().flat_map(body_bytes).collect();
    assert_eq!(body, json);
    let text = pool.metrics().render();
    assert_eq!(
        metric_sum(&text, "inference_objective_input_tokens_sum", &[]),
        3.0
    );
}

#[tokio::test]
async fn response_streaming_sse_token_counting() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let chunks: [&[u8]; 4] = [
        b"data: {\"choices\":[{\"text\":\"a\"}]}\n\n",
        b"data: {\"choices\":[{\"text\":\"b\"}]}\n\n",
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n",
        b"data: [DONE]\n\n",
    ];
    let (_envoy, replies) = respond(&pool, &[], "my-model", "text/event-stream", &chunks).await;
    // Echoed one for one, end of stream on the last only.
    assert_eq!(replies.len(), 1 + chunks.len(), "{replies:#?}");
    for (reply, chunk) in replies[1..].iter().zip(chunks) {
        assert_eq!(body_bytes(reply), chunk);
    }
    assert!(replies[1..4].iter().all(|r| !body_eos(r, false)));
    let text = pool.metrics().render();
    assert_eq!(
        metric_sum(&text, "inference_objective_input_tokens_sum", &[]),
        7.0
    );
}

#[tokio::test]
async fn served_endpoint_moves_the_in_flight_booking() {
    // A primary and one fallback, in order.
    let two = config::from_yaml_str(
        &format!(
            "{}- type: max-score-picker\n  parameters: {{maxNumOfEndpoints: 2}}\n",
            config::GIE_DEFAULT_YAML
                .split("schedulingProfiles:")
                .next()
                .unwrap()
        ),
        "two targets",
    )
    .unwrap();
    let pool = pool(two, &[P(0, 0, 0.1, &[]), P(1, 5, 0.5, &[])]);
    let mut envoy = stream(&pool).await;
    let body = completion("my-model");
    let replies = send(&mut envoy, &[], &body).await;
    assert_eq!(
        destination(&replies, body.len()),
        "192.168.1.1:8000,192.168.1.2:8000"
    );
    let load = |name: &str| pool.snapshot().get(name).unwrap().load.in_flight();
    assert_eq!((load("pod-0"), load("pod-1")), (1, 0));
    // Envoy reports that a fallback served it.
    envoy
        .send(response_headers(
            200,
            &[("content-type", "application/json")],
            Some("192.168.1.2:8000"),
        ))
        .await;
    envoy.reply().await;
    assert_eq!((load("pod-0"), load("pod-1")), (0, 1));
    envoy.send(response_body(b"{}", true)).await;
    envoy.reply().await;
    assert_eq!(
        (load("pod-0"), load("pod-1")),
        (0, 0),
        "released at the end"
    );
}

#[tokio::test]
async fn a_stream_that_ends_early_releases_its_booking() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    let body = completion("my-model");
    send(&mut envoy, &[], &body).await;
    let load = pool.snapshot().get("pod-0").unwrap().load.clone();
    assert_eq!(load.in_flight(), 1);
    envoy.close();
    // The server notices the stream's end and drops the decision.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while load.in_flight() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "never released");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn request_trailers_end_the_request() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    let body = completion("my-model");
    envoy
        .send(request_headers("/v1/completions", &[], false))
        .await;
    envoy.send(request_body(body.as_bytes(), false)).await;
    envoy.send(request_trailers()).await;
    let headers = envoy.reply().await;
    assert_eq!(
        set_headers(&headers)["x-gateway-destination-endpoint"],
        "192.168.1.1:8000"
    );
    let chunk = envoy.reply().await;
    assert_eq!(body_bytes(&chunk), body.as_bytes());
    assert!(
        !body_eos(&chunk, true),
        "trailers follow, so no end of stream"
    );
    let trailers = envoy.reply().await;
    assert!(matches!(
        trailers.response,
        Some(processing_response::Response::RequestTrailers(_))
    ));
}

#[tokio::test]
async fn a_body_over_the_cap_is_413() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let addr = serve_ext_proc(pool.clone(), 1024).await;
    let mut envoy = Envoy::connect(addr).await;
    envoy
        .send(request_headers("/v1/completions", &[], false))
        .await;
    envoy.send(request_body(&[b' '; 2000], true)).await;
    let replies = envoy.request_replies(false).await;
    let (status, body, _) = immediate(&replies[0]).unwrap();
    assert_eq!(status, 413);
    assert!(body.contains("PayloadTooLarge"), "{body}");
}

#[tokio::test]
async fn a_220_kb_body_is_rechunked_with_eos_on_the_last() {
    let pool = pool(gie_default(), &[P(0, 0, 0.1, &[])]);
    let mut envoy = stream(&pool).await;
    let prompt = "x".repeat(220 * 1024);
    let body = format!(r#"{{"model":"m","prompt":"{prompt}"}}"#);
    let replies = send(&mut envoy, &[], &body).await;
    destination(&replies, body.len());
    let chunks = &replies[1..];
    assert_eq!(chunks.len(), body.len().div_ceil(62_000));
    assert!(chunks.iter().all(|c| body_bytes(c).len() <= 62_000));
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| !body_eos(c, true))
    );
}

//! The picker's ext_proc protocol over real gRPC streams, case for case with GIE's
//! hermetic integration tests (gie-facts §9.1): a test client plays Envoy's side of one
//! stream against a pool whose endpoints' metrics are fixed, as GIE's tests fake them
//! (`P(index, queue, kv, models)`, pods at `192.168.1.<index+1>:8000`). Nothing serves
//! on those addresses: the picker only decides; Envoy (here, the test) forwards. The
//! response-path cases are in `epp_extproc_response.rs`.

mod support;

use std::path::PathBuf;

use envoy_types::pb::envoy::service::ext_proc::v3::processing_response;
use igw::epp::config::{self, gie_default};
use support::epp::metric_sum;
use support::extproc::*;

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

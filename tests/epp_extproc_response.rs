//! The picker's ext_proc response path over real gRPC streams, case for case with
//! GIE's hermetic tests (gie-facts §9.1): bodies held for the model-name rewrite or
//! streamed chunk by chunk, usage read, an empty end-of-stream chunk, bodies that are
//! not JSON, and the served endpoint moving the in-flight booking.

mod support;

use std::sync::Arc;

use envoy_types::pb::envoy::service::ext_proc::v3::ProcessingResponse;
use igw::epp::config::{self, gie_default};
use igw::epp::pool::Pool;
use support::epp::metric_sum;
use support::extproc::*;

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

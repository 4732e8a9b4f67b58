//! `igw bbr run` over real gRPC on 127.0.0.1:0, driven by the envoy-types ext_proc
//! client as Envoy drives it in FULL_DUPLEX_STREAMED mode. The first three cases are
//! GIE's BBR integration tests (gie-facts §9.2); the rest cover igw's pass-through of
//! unparsable bodies, header-only requests, the base-model map, the body cap, and
//! re-chunking of large bodies.
//!
//! Each stream's messages are sent and the client half closed; the test then reads
//! every reply until the server ends the stream, so nothing waits on time.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    CommonResponse, HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse, body_mutation,
    processing_request::Request as Q, processing_response::Response as R,
};
use igw::epp::bbr::{BbrOptions, RunningBbr, start};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const MODEL_HEADER: &str = "X-Gateway-Model-Name";
const BASE_HEADER: &str = "X-Gateway-Base-Model-Name";
const CHUNK: usize = 62_000;

async fn bbr(opts: BbrOptions) -> RunningBbr {
    start(&opts).await.expect("bbr starts")
}

async fn client(bbr: &RunningBbr) -> ExternalProcessorClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", bbr.grpc_addr))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    ExternalProcessorClient::new(channel)
}

/// Sends `messages` on one stream, half-closes it, and returns every reply.
async fn exchange(
    client: &mut ExternalProcessorClient<Channel>,
    messages: Vec<ProcessingRequest>,
) -> Vec<ProcessingResponse> {
    let mut inbound = client
        .process(futures::stream::iter(messages))
        .await
        .expect("stream opens")
        .into_inner();
    let mut replies = Vec::new();
    while let Some(reply) = inbound.message().await.expect("no stream error") {
        replies.push(reply);
    }
    replies
}

fn msg(request: Q) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(request),
        ..Default::default()
    }
}

fn request_headers(end_of_stream: bool) -> ProcessingRequest {
    let headers = [
        (":method", "POST"),
        (":path", "/v1/completions"),
        ("content-type", "application/json"),
    ];
    msg(Q::RequestHeaders(HttpHeaders {
        headers: Some(HeaderMap {
            headers: headers
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: k.to_string(),
                    raw_value: v.as_bytes().to_vec(),
                    ..Default::default()
                })
                .collect(),
        }),
        end_of_stream,
        ..Default::default()
    }))
}

fn request_body(bytes: &[u8], end_of_stream: bool) -> ProcessingRequest {
    msg(Q::RequestBody(HttpBody {
        body: bytes.to_vec(),
        end_of_stream,
        ..Default::default()
    }))
}

/// Headers, then `body` in chunks of `chunk` bytes, the last with end_of_stream.
fn request(body: &[u8], chunk: usize) -> Vec<ProcessingRequest> {
    let mut out = vec![request_headers(false)];
    let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        out.push(request_body(piece, i + 1 == pieces.len()));
    }
    if pieces.is_empty() {
        out.push(request_body(b"", true));
    }
    out
}

/// The common response of a request-headers reply.
fn headers_reply(reply: &ProcessingResponse) -> &CommonResponse {
    match &reply.response {
        Some(R::RequestHeaders(h)) => h.response.as_ref().expect("common response"),
        other => panic!("expected a request headers reply, got {other:?}"),
    }
}

/// The headers a reply sets, as (name, value).
fn set_headers(common: &CommonResponse) -> Vec<(String, String)> {
    common
        .header_mutation
        .iter()
        .flat_map(|m| &m.set_headers)
        .filter_map(|h| h.header.as_ref())
        .map(|h| {
            (
                h.key.clone(),
                String::from_utf8_lossy(&h.raw_value).into_owned(),
            )
        })
        .collect()
}

/// The streamed chunks of request-body replies: (bytes, end_of_stream).
fn body_chunks(replies: &[ProcessingResponse]) -> Vec<(Vec<u8>, bool)> {
    replies
        .iter()
        .map(|r| {
            let Some(R::RequestBody(b)) = &r.response else {
                panic!("expected a request body reply, got {r:?}");
            };
            let mutation = b.response.as_ref().and_then(|c| c.body_mutation.as_ref());
            match mutation.and_then(|m| m.mutation.as_ref()) {
                Some(body_mutation::Mutation::StreamedResponse(s)) => {
                    (s.body.clone(), s.end_of_stream)
                }
                other => panic!("expected a streamed body, got {other:?}"),
            }
        })
        .collect()
}

/// A routed request: the headers reply sets `want` and clears the route cache, and
/// the body comes back whole in one chunk with end_of_stream.
fn assert_routed(replies: &[ProcessingResponse], body: &[u8], want: &[(&str, &str)]) {
    assert_eq!(replies.len(), 2, "{replies:?}");
    let common = headers_reply(&replies[0]);
    assert!(common.clear_route_cache);
    let mut set = set_headers(common);
    set.sort();
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.push(("content-length".into(), body.len().to_string()));
    want.sort();
    assert_eq!(set, want);
    assert_eq!(body_chunks(&replies[1..]), vec![(body.to_vec(), true)]);
}

/// A request passed through untouched: no header set, the body back unchanged.
fn assert_untouched(replies: &[ProcessingResponse], body: &[u8]) {
    assert_eq!(replies.len(), 2, "{replies:?}");
    let common = headers_reply(&replies[0]);
    assert_eq!(common.header_mutation, None, "nothing is set or removed");
    assert_eq!(body_chunks(&replies[1..]), vec![(body.to_vec(), true)]);
}

async fn metrics(bbr: &RunningBbr) -> String {
    reqwest::get(format!("http://{}/metrics", bbr.metrics_addr))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test]
async fn full_duplex_streamed_simple_body_sets_the_model_header() {
    let bbr = bbr(BbrOptions::local()).await;
    let mut c = client(&bbr).await;
    let body = br#"{"max_tokens":100,"model":"foo","prompt":"test1","temperature":0}"#;
    let replies = exchange(&mut c, request(body, body.len())).await;
    assert_routed(&replies, body, &[(MODEL_HEADER, "foo")]);
    assert!(metrics(&bbr).await.contains("bbr_success_total 1"));
    bbr.shutdown().await;
}

#[tokio::test]
async fn full_duplex_streamed_split_body_is_buffered_until_the_end() {
    let bbr = bbr(BbrOptions::local()).await;
    let mut c = client(&bbr).await;
    let body =
        br#"{"max_tokens":100,"model":"sql-lora-sheddable","prompt":"test6","temperature":0}"#;
    // Three chunks, split inside the model's value: only the whole body can be read.
    let replies = exchange(&mut c, request(body, 30)).await;
    assert_routed(&replies, body, &[(MODEL_HEADER, "sql-lora-sheddable")]);
    bbr.shutdown().await;
}

#[tokio::test]
async fn full_duplex_streamed_missing_model_field_is_skipped() {
    let bbr = bbr(BbrOptions::local()).await;
    let mut c = client(&bbr).await;
    let body = br#"{"max_tokens":100,"prompt":"test3","temperature":0}"#;
    let replies = exchange(&mut c, request(body, 10)).await;
    assert_untouched(&replies, body);
    assert!(headers_reply(&replies[0]).clear_route_cache);
    let empty = br#"{"model":"","prompt":"x"}"#;
    assert_untouched(&exchange(&mut c, request(empty, 100)).await, empty);
    let text = metrics(&bbr).await;
    assert!(text.contains("bbr_body_field_not_found_total 1"), "{text}");
    assert!(text.contains("bbr_body_field_empty_total 1"), "{text}");
    assert!(text.contains("bbr_success_total 0"), "{text}");
    bbr.shutdown().await;
}

#[tokio::test]
async fn invalid_json_passes_through_untouched() {
    let bbr = bbr(BbrOptions::local()).await;
    let mut c = client(&bbr).await;
    for body in [
        &b"{\"model\": \"foo\", \"prompt\": "[..],
        b"not json at all",
        b"[\"model\", \"foo\"]",
        b"{\"model\":\"a\\nb\"}",
        &[0xff, 0x00, 0xfe][..],
    ] {
        let replies = exchange(&mut c, request(body, 7)).await;
        assert_untouched(&replies, body);
    }
    // An empty body after non-EoS headers: still one (empty) chunk with end_of_stream.
    assert_untouched(&exchange(&mut c, request(b"", 1)).await, b"");
    bbr.shutdown().await;
}

#[tokio::test]
async fn header_only_request_is_answered_at_once_and_the_response_passes() {
    let bbr = bbr(BbrOptions::local()).await;
    let mut c = client(&bbr).await;
    let response_body = vec![b'r'; CHUNK + 10];
    let messages = vec![
        request_headers(true),
        msg(Q::ResponseHeaders(HttpHeaders::default())),
        msg(Q::ResponseBody(HttpBody {
            body: response_body.clone(),
            end_of_stream: false,
            ..Default::default()
        })),
        msg(Q::ResponseBody(HttpBody {
            body: b"tail".to_vec(),
            end_of_stream: true,
            ..Default::default()
        })),
    ];
    let replies = exchange(&mut c, messages).await;
    assert_eq!(headers_reply(&replies[0]), &CommonResponse::default());
    assert!(matches!(replies[1].response, Some(R::ResponseHeaders(_))));
    let mut echoed = Vec::new();
    let mut flags = Vec::new();
    for r in &replies[2..] {
        let Some(R::ResponseBody(b)) = &r.response else {
            panic!("{r:?}");
        };
        let m = b.response.as_ref().unwrap().body_mutation.as_ref().unwrap();
        let Some(body_mutation::Mutation::StreamedResponse(s)) = &m.mutation else {
            panic!("{m:?}");
        };
        echoed.extend_from_slice(&s.body);
        flags.push(s.end_of_stream);
    }
    assert_eq!(flags, [false, false, true]);
    assert_eq!(echoed, [response_body, b"tail".to_vec()].concat());
    bbr.shutdown().await;
}

fn map_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("igw-bbr-{}-{name}.yaml", std::process::id()));
    std::fs::write(&path, text).expect("write map");
    path
}

#[tokio::test]
async fn base_model_header_comes_from_the_map() {
    let map = map_file(
        "map",
        "kind: ConfigMap\ndata:\n  baseModel: meta-llama/Llama-3.1-8B\n  adapters: |\n    - sql-lora\n",
    );
    let opts = BbrOptions {
        base_model_map: Some(map.clone()),
        ..BbrOptions::local()
    };
    let bbr = bbr(opts).await;
    let mut c = client(&bbr).await;
    let base = "meta-llama/Llama-3.1-8B";
    let adapter = br#"{"model":"sql-lora","prompt":"x"}"#;
    let replies = exchange(&mut c, request(adapter, 8)).await;
    assert_routed(
        &replies,
        adapter,
        &[(MODEL_HEADER, "sql-lora"), (BASE_HEADER, base)],
    );
    let direct = br#"{"model":"meta-llama/Llama-3.1-8B","prompt":"x"}"#;
    let replies = exchange(&mut c, request(direct, 100)).await;
    assert_routed(
        &replies,
        direct,
        &[(MODEL_HEADER, base), (BASE_HEADER, base)],
    );
    let unknown = br#"{"model":"other","prompt":"x"}"#;
    let replies = exchange(&mut c, request(unknown, 100)).await;
    assert_routed(&replies, unknown, &[(MODEL_HEADER, "other")]);
    bbr.shutdown().await;
    let _ = std::fs::remove_file(map);
}

#[tokio::test]
async fn a_bad_map_file_fails_startup_naming_the_file_and_field() {
    let map = map_file("bad", "kind: ConfigMap\ndata:\n  adapters: \"- a\"\n");
    let opts = BbrOptions {
        base_model_map: Some(map.clone()),
        ..BbrOptions::local()
    };
    let Err(err) = start(&opts).await else {
        panic!("a map without baseModel must fail");
    };
    let text = err.to_string();
    assert!(text.contains(&map.display().to_string()), "{text}");
    assert!(text.contains("data.baseModel"), "{text}");
    let _ = std::fs::remove_file(map);
}

#[tokio::test]
async fn body_over_the_cap_is_answered_413() {
    let opts = BbrOptions {
        max_body_bytes: 1000,
        ..BbrOptions::local()
    };
    let bbr = bbr(opts).await;
    let mut c = client(&bbr).await;
    let body = format!(r#"{{"model":"foo","prompt":"{}"}}"#, "x".repeat(2000));
    let replies = exchange(&mut c, request(body.as_bytes(), 400)).await;
    assert_eq!(
        replies.len(),
        1,
        "the stream closes after the answer: {replies:?}"
    );
    let Some(R::ImmediateResponse(i)) = &replies[0].response else {
        panic!("{replies:?}");
    };
    assert_eq!(i.status.unwrap().code, 413);
    let text = String::from_utf8_lossy(&i.body);
    assert!(text.contains("limit of 1000 bytes"), "{text}");
    // The same server still routes a body within the cap.
    let small = br#"{"model":"foo"}"#;
    assert_routed(
        &exchange(&mut c, request(small, 100)).await,
        small,
        &[(MODEL_HEADER, "foo")],
    );
    bbr.shutdown().await;
}

#[tokio::test]
async fn a_200_kb_body_is_rechunked_with_eos_only_on_the_last() {
    let bbr = bbr(BbrOptions::local()).await;
    let mut c = client(&bbr).await;
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(4500);
    let body = serde_json::to_vec(&serde_json::json!({"model": "big", "prompt": prompt})).unwrap();
    assert!(body.len() > 200_000, "{}", body.len());
    // Envoy's own chunks are about 16 KiB.
    let replies = exchange(&mut c, request(&body, 16_384)).await;
    let common = headers_reply(&replies[0]);
    assert!(set_headers(common).contains(&(MODEL_HEADER.to_string(), "big".to_string())));
    let chunks = body_chunks(&replies[1..]);
    let sizes: Vec<usize> = chunks.iter().map(|(b, _)| b.len()).collect();
    let want_count = body.len().div_ceil(CHUNK);
    assert_eq!(sizes.len(), want_count);
    assert!(
        sizes[..want_count - 1].iter().all(|&s| s == CHUNK),
        "{sizes:?}"
    );
    let flags: Vec<bool> = chunks.iter().map(|(_, eos)| *eos).collect();
    assert_eq!(flags.iter().filter(|f| **f).count(), 1);
    assert_eq!(flags.last(), Some(&true));
    let joined: Vec<u8> = chunks.into_iter().flat_map(|(b, _)| b).collect();
    assert_eq!(joined, body);
    bbr.shutdown().await;
}

#[tokio::test]
async fn an_abandoned_stream_is_freed_and_the_server_goes_on() {
    // A drain longer than the test's deadline: shutdown ends in time only if the
    // abandoned stream was freed when its client left.
    let opts = BbrOptions {
        drain_timeout: Duration::from_secs(600),
        ..BbrOptions::local()
    };
    let bbr = bbr(opts).await;
    // Headers and half a body, then the data plane goes away mid-request, as Envoy
    // does when it drops a processor. The abandoned client runs on its own runtime so
    // that shutting that runtime down closes its connection with the stream open.
    let addr = bbr.grpc_addr;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let kept = rt.block_on(async move {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connect");
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tx.send(request_headers(false)).await.unwrap();
            tx.send(request_body(br#"{"model":"fo"#, false))
                .await
                .unwrap();
            // Out of order, but answered at once: its reply proves the server holds
            // the half body.
            tx.send(msg(Q::ResponseHeaders(HttpHeaders::default())))
                .await
                .unwrap();
            let mut replies = ExternalProcessorClient::new(channel)
                .process(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("stream opens")
                .into_inner();
            let reply = replies.message().await.expect("reply").expect("one reply");
            assert!(
                matches!(reply.response, Some(R::ResponseHeaders(_))),
                "{reply:?}"
            );
            (tx, replies)
        });
        rt.shutdown_background();
        drop(kept);
        let _ = done_tx.send(());
    });
    // Awaited, not joined: the server runs on this test's runtime.
    done_rx.await.expect("the abandoned client ran to its end");
    let mut c = client(&bbr).await;
    let body = br#"{"model":"foo"}"#;
    assert_routed(
        &exchange(&mut c, request(body, 4)).await,
        body,
        &[(MODEL_HEADER, "foo")],
    );
    tokio::time::timeout(Duration::from_secs(30), bbr.shutdown())
        .await
        .expect("shutdown ends: no stream is left open");
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate_and_grpc_health() {
    let opts = BbrOptions {
        secure_serving: true,
        ..BbrOptions::local()
    };
    let bbr = bbr(opts).await;
    let pem = bbr
        .certificate_pem
        .clone()
        .expect("a certificate is served");
    let channel = Channel::from_shared(format!("https://localhost:{}", bbr.grpc_addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("TLS connect");
    let mut c = ExternalProcessorClient::new(channel);
    let body = br#"{"model":"tls-model"}"#;
    assert_routed(
        &exchange(&mut c, request(body, 100)).await,
        body,
        &[(MODEL_HEADER, "tls-model")],
    );

    let health = Channel::from_shared(format!("http://{}", bbr.health_addr))
        .unwrap()
        .connect()
        .await
        .expect("health connect");
    let status = tonic_health::pb::health_client::HealthClient::new(health)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "envoy.service.ext_proc.v3.ExternalProcessor".into(),
        })
        .await
        .expect("check")
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    bbr.shutdown().await;
}

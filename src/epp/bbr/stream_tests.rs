//! Unit tests of one BBR stream's state machine, message by message: the orderings
//! and edges that the gRPC tests in `tests/bbr.rs` do not reach.

use super::*;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, HttpTrailers, body_mutation, processing_response,
};
use processing_request::Request as Q;
use processing_response::Response as R;

fn stream(max_body_bytes: usize) -> BbrStream {
    BbrStream::new(Arc::new(BbrShared {
        base_models: BaseModels::from_yaml("sql-lora: llama\n", "map.yaml").unwrap(),
        metrics: Arc::new(BbrMetrics::new()),
        max_body_bytes,
    }))
}

fn msg(request: Q) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(request),
        ..Default::default()
    }
}

fn headers(end_of_stream: bool) -> ProcessingRequest {
    msg(Q::RequestHeaders(HttpHeaders {
        end_of_stream,
        ..Default::default()
    }))
}

fn body(bytes: &[u8], end_of_stream: bool) -> ProcessingRequest {
    msg(Q::RequestBody(HttpBody {
        body: bytes.to_vec(),
        end_of_stream,
        ..Default::default()
    }))
}

/// The variant names of `step`'s replies, e.g. `["RequestHeaders", "RequestBody"]`.
fn kinds(step: &Step) -> Vec<&'static str> {
    step.replies
        .iter()
        .map(|r| match &r.response {
            Some(R::RequestHeaders(_)) => "RequestHeaders",
            Some(R::ResponseHeaders(_)) => "ResponseHeaders",
            Some(R::RequestBody(_)) => "RequestBody",
            Some(R::ResponseBody(_)) => "ResponseBody",
            Some(R::RequestTrailers(_)) => "RequestTrailers",
            Some(R::ResponseTrailers(_)) => "ResponseTrailers",
            Some(R::ImmediateResponse(_)) => "ImmediateResponse",
            _ => "other",
        })
        .collect()
}

fn streamed(reply: &ProcessingResponse) -> (Vec<u8>, bool) {
    let common = match &reply.response {
        Some(R::RequestBody(b) | R::ResponseBody(b)) => b.response.as_ref().unwrap(),
        other => panic!("not a body reply: {other:?}"),
    };
    match &common.body_mutation.as_ref().unwrap().mutation {
        Some(body_mutation::Mutation::StreamedResponse(s)) => (s.body.clone(), s.end_of_stream),
        other => panic!("not streamed: {other:?}"),
    }
}

#[test]
fn the_body_limit_is_inclusive() {
    let mut s = stream(10);
    assert_eq!(s.on_message(headers(false)), Step::default());
    assert_eq!(s.on_message(body(b"12345", false)), Step::default());
    let step = s.on_message(body(b"67890", true));
    assert_eq!(kinds(&step), ["RequestHeaders", "RequestBody"]);
    assert!(!step.close);

    let mut s = stream(10);
    s.on_message(headers(false));
    s.on_message(body(b"123456", false));
    let step = s.on_message(body(b"78901", false));
    assert_eq!(kinds(&step), ["ImmediateResponse"]);
    assert!(step.close);
    assert!(s.body.capacity() == 0, "the gathered body is freed");
}

#[test]
fn trailers_end_the_request_without_end_of_stream_on_the_body() {
    let mut s = stream(1000);
    s.on_message(headers(false));
    s.on_message(body(br#"{"model":"sql-lora"}"#, false));
    let step = s.on_message(msg(Q::RequestTrailers(HttpTrailers::default())));
    assert_eq!(
        kinds(&step),
        ["RequestHeaders", "RequestBody", "RequestTrailers"]
    );
    assert_eq!(
        streamed(&step.replies[1]),
        (br#"{"model":"sql-lora"}"#.to_vec(), false)
    );

    // Headers straight followed by trailers: an empty body chunk still goes out.
    let mut s = stream(1000);
    s.on_message(headers(false));
    let step = s.on_message(msg(Q::RequestTrailers(HttpTrailers::default())));
    assert_eq!(
        kinds(&step),
        ["RequestHeaders", "RequestBody", "RequestTrailers"]
    );
    assert_eq!(streamed(&step.replies[1]), (Vec::new(), false));
}

#[test]
fn the_response_half_is_echoed_at_once() {
    let mut s = stream(1000);
    s.on_message(headers(true));
    let h = s.on_message(msg(Q::ResponseHeaders(HttpHeaders::default())));
    assert_eq!(kinds(&h), ["ResponseHeaders"]);
    let big = vec![b'x'; codec::BODY_BYTE_LIMIT + 5];
    let b = s.on_message(msg(Q::ResponseBody(HttpBody {
        body: big.clone(),
        end_of_stream: false,
        ..Default::default()
    })));
    assert_eq!(kinds(&b), ["ResponseBody", "ResponseBody"]);
    let echoed: Vec<u8> = b.replies.iter().flat_map(|r| streamed(r).0).collect();
    assert_eq!(echoed, big);
    assert!(b.replies.iter().all(|r| !streamed(r).1));
    let end = s.on_message(msg(Q::ResponseBody(HttpBody {
        end_of_stream: true,
        ..Default::default()
    })));
    assert_eq!(streamed(&end.replies[0]), (Vec::new(), true));
    let t = s.on_message(msg(Q::ResponseTrailers(HttpTrailers::default())));
    assert_eq!(kinds(&t), ["ResponseTrailers"]);
}

#[test]
fn out_of_order_messages_get_no_reply_and_no_panic() {
    let mut s = stream(1000);
    assert_eq!(s.on_message(ProcessingRequest::default()), Step::default());
    // A body before any headers is gathered like any other.
    assert_eq!(s.on_message(body(b"{}", false)), Step::default());
    assert_eq!(s.on_message(headers(false)), Step::default());
    let step = s.on_message(body(b"", true));
    assert_eq!(kinds(&step), ["RequestHeaders", "RequestBody"]);
    // Once answered, further request messages change nothing.
    assert_eq!(s.on_message(headers(true)), Step::default());
    assert_eq!(s.on_message(body(b"late", true)), Step::default());
    let t = s.on_message(msg(Q::RequestTrailers(HttpTrailers::default())));
    assert_eq!(kinds(&t), ["RequestTrailers"]);
}

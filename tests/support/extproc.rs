//! What the ext_proc protocol tests share: the picker's ext_proc server over a pool on
//! a free loopback port, a client that plays Envoy's side of one stream (the messages
//! of one HTTP request, and the replies read back one by one), and builders for
//! Envoy's messages.
//!
//! Replies are awaited under a deadline that fails the test naming what never came.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, HttpTrailers, ProcessingRequest, ProcessingResponse, processing_request,
    processing_response,
};
use envoy_types::pb::google::protobuf::{ListValue, Value, value::Kind};
use igw::epp::config::objectives::Objectives;
use igw::epp::config::{self, LoadedConfig};
use igw::epp::endpoint::EndpointMetrics;
use igw::epp::envoy::{PickerProcessor, Shared};
use igw::epp::extproc::codec::request_metadata;
use igw::epp::extproc::{GrpcServer, GrpcServing};
use igw::epp::lifecycle::RequestIds;
use igw::epp::lifecycle::outlier::OutlierPolicy;
use igw::epp::pool::Pool;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(10);

/// Serves the picker's ext_proc over `pool` in plain text; returns its address.
pub async fn serve_ext_proc(pool: Arc<Pool>, max_body_bytes: usize) -> SocketAddr {
    let serving = GrpcServing::default();
    let processor = PickerProcessor::new(Shared {
        pool,
        ids: RequestIds::default(),
        max_body_bytes,
        ignore_subset: false,
    });
    let routes = tonic::service::Routes::new(serving.ext_proc(processor));
    let server = GrpcServer::new(&serving, routes).expect("the server builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    addr
}

/// Envoy's side of one ext_proc stream.
pub struct Envoy {
    tx: mpsc::Sender<ProcessingRequest>,
    rx: tonic::Streaming<ProcessingResponse>,
}

impl Envoy {
    pub async fn connect(addr: SocketAddr) -> Envoy {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let mut client = ExternalProcessorClient::new(channel);
        let (tx, out) = mpsc::channel(64);
        let rx = client
            .process(ReceiverStream::new(out))
            .await
            .expect("the stream opens")
            .into_inner();
        Envoy { tx, rx }
    }

    pub async fn send(&self, msg: ProcessingRequest) {
        self.tx.send(msg).await.expect("the stream takes messages");
    }

    /// The next reply.
    pub async fn reply(&mut self) -> ProcessingResponse {
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("a reply within the deadline")
            .expect("the stream is healthy")
            .expect("the stream is still open")
    }

    /// The replies to a request's last message, in order: until the request body's
    /// end of stream or an immediate response, or just the headers reply of a
    /// header-only request.
    pub async fn request_replies(&mut self, header_only: bool) -> Vec<ProcessingResponse> {
        let mut out = Vec::new();
        loop {
            let r = self.reply().await;
            let last = header_only || is_immediate(&r) || body_eos(&r, true);
            out.push(r);
            if last {
                return out;
            }
        }
    }

    /// Closes Envoy's half; the stream ends.
    pub fn close(self) {}
}

pub fn is_immediate(r: &ProcessingResponse) -> bool {
    matches!(
        r.response,
        Some(processing_response::Response::ImmediateResponse(_))
    )
}

/// Whether `r` is a body reply (request side when `request`) with end of stream.
pub fn body_eos(r: &ProcessingResponse, request: bool) -> bool {
    use processing_response::Response as P;
    let common = match (&r.response, request) {
        (Some(P::RequestBody(b)), true) | (Some(P::ResponseBody(b)), false) => b.response.as_ref(),
        _ => None,
    };
    common
        .and_then(|c| c.body_mutation.as_ref())
        .and_then(|m| m.mutation.as_ref())
        .is_some_and(|m| match m {
            envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation::StreamedResponse(s) => s.end_of_stream,
            _ => false,
        })
}

/// The streamed body bytes of a body reply.
pub fn body_bytes(r: &ProcessingResponse) -> Vec<u8> {
    use processing_response::Response as P;
    let common = match &r.response {
        Some(P::RequestBody(b)) | Some(P::ResponseBody(b)) => b.response.as_ref(),
        _ => None,
    };
    match common
        .and_then(|c| c.body_mutation.as_ref())
        .and_then(|m| m.mutation.as_ref())
    {
        Some(envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation::StreamedResponse(s)) => s.body.clone(),
        _ => Vec::new(),
    }
}

/// The headers a headers reply sets, by lower-case name.
pub fn set_headers(r: &ProcessingResponse) -> HashMap<String, String> {
    use processing_response::Response as P;
    let common = match &r.response {
        Some(P::RequestHeaders(h)) | Some(P::ResponseHeaders(h)) => h.response.as_ref(),
        _ => None,
    };
    common
        .and_then(|c| c.header_mutation.as_ref())
        .map(|m| {
            m.set_headers
                .iter()
                .filter_map(|o| o.header.as_ref())
                .map(|h| {
                    let v = if h.raw_value.is_empty() {
                        h.value.clone()
                    } else {
                        String::from_utf8_lossy(&h.raw_value).into_owned()
                    };
                    (h.key.to_ascii_lowercase(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a headers reply asks Envoy to recompute the route.
pub fn clears_route_cache(r: &ProcessingResponse) -> bool {
    use processing_response::Response as P;
    match &r.response {
        Some(P::RequestHeaders(h)) | Some(P::ResponseHeaders(h)) => {
            h.response.as_ref().is_some_and(|c| c.clear_route_cache)
        }
        _ => false,
    }
}

/// `envoy.lb` / `x-gateway-destination-endpoint` of a reply's dynamic metadata.
pub fn destination_metadata(r: &ProcessingResponse) -> Option<String> {
    let lb = r.dynamic_metadata.as_ref()?.fields.get("envoy.lb")?;
    let Some(Kind::StructValue(s)) = &lb.kind else {
        return None;
    };
    match &s.fields.get("x-gateway-destination-endpoint")?.kind {
        Some(Kind::StringValue(v)) => Some(v.clone()),
        _ => None,
    }
}

/// An immediate reply's status and body.
pub fn immediate(r: &ProcessingResponse) -> Option<(u16, String, HashMap<String, String>)> {
    let Some(processing_response::Response::ImmediateResponse(i)) = &r.response else {
        return None;
    };
    let headers = i
        .headers
        .as_ref()
        .map(|m| {
            m.set_headers
                .iter()
                .filter_map(|o| o.header.as_ref())
                .map(|h| {
                    (
                        h.key.to_ascii_lowercase(),
                        String::from_utf8_lossy(&h.raw_value).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Some((
        i.status.as_ref().map_or(0, |s| s.code as u16),
        String::from_utf8_lossy(&i.body).into_owned(),
        headers,
    ))
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    HeaderMap {
        headers: pairs
            .iter()
            .map(|(k, v)| HeaderValue {
                key: k.to_string(),
                raw_value: v.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
    }
}

/// Request headers (`:method`, `:path` and `pairs`).
pub fn request_headers(
    path: &str,
    pairs: &[(&str, &str)],
    end_of_stream: bool,
) -> ProcessingRequest {
    let mut all = vec![
        (":method", if end_of_stream { "GET" } else { "POST" }),
        (":path", path),
    ];
    all.extend_from_slice(pairs);
    ProcessingRequest {
        request: Some(processing_request::Request::RequestHeaders(HttpHeaders {
            headers: Some(header_map(&all)),
            end_of_stream,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn request_body(body: &[u8], end_of_stream: bool) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(processing_request::Request::RequestBody(HttpBody {
            body: body.to_vec(),
            end_of_stream,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn request_trailers() -> ProcessingRequest {
    ProcessingRequest {
        request: Some(processing_request::Request::RequestTrailers(
            HttpTrailers::default(),
        )),
        ..Default::default()
    }
}

/// Response headers with `:status` and `pairs`, and the served endpoint in `envoy.lb`
/// when `served` is given.
pub fn response_headers(
    status: u16,
    pairs: &[(&str, &str)],
    served: Option<&str>,
) -> ProcessingRequest {
    let status = status.to_string();
    let mut all = vec![(":status", status.as_str())];
    all.extend_from_slice(pairs);
    ProcessingRequest {
        request: Some(processing_request::Request::ResponseHeaders(HttpHeaders {
            headers: Some(header_map(&all)),
            ..Default::default()
        })),
        metadata_context: served.map(|s| {
            request_metadata(
                "envoy.lb",
                "x-gateway-destination-endpoint-served",
                Kind::StringValue(s.into()),
            )
        }),
        ..Default::default()
    }
}

pub fn response_body(body: &[u8], end_of_stream: bool) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(processing_request::Request::ResponseBody(HttpBody {
            body: body.to_vec(),
            end_of_stream,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// `msg` with the subset hint `endpoints` as a list under `envoy.lb.subset_hint`.
pub fn with_subset(mut msg: ProcessingRequest, endpoints: &[&str]) -> ProcessingRequest {
    let list = Kind::ListValue(ListValue {
        values: endpoints
            .iter()
            .map(|e| Value {
                kind: Some(Kind::StringValue(e.to_string())),
            })
            .collect(),
    });
    msg.metadata_context = Some(request_metadata(
        "envoy.lb.subset_hint",
        "x-gateway-destination-endpoint-subset",
        list,
    ));
    msg
}

/// A pod as GIE's tests write it: index, waiting queue, KV-cache use, running adapters.
pub struct P(pub u8, pub u64, pub f64, pub &'static [&'static str]);

pub fn addr(index: u8) -> SocketAddr {
    SocketAddr::from(([192, 168, 1, index + 1], 8000))
}

pub fn lora_config() -> LoadedConfig {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/epp/lora-affinity.yaml");
    config::load(&path).expect("the test config loads")
}

pub fn pool(config: LoadedConfig, pods: &[P]) -> Arc<Pool> {
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
    super::epp::fixed_pool_with(config, &endpoints, OutlierPolicy::default(), objectives)
}

pub async fn stream(pool: &Arc<Pool>) -> Envoy {
    let addr = serve_ext_proc(pool.clone(), 16 << 20).await;
    Envoy::connect(addr).await
}

/// Sends one request (headers, then `body` in one message) and returns the replies.
pub async fn send(
    envoy: &mut Envoy,
    headers: &[(&str, &str)],
    body: &str,
) -> Vec<ProcessingResponse> {
    envoy
        .send(request_headers("/v1/completions", headers, false))
        .await;
    envoy.send(request_body(body.as_bytes(), true)).await;
    envoy.request_replies(false).await
}

/// The success shape GIE checks: a request-headers reply that clears the route cache
/// and names the destination in a header and in `envoy.lb` metadata (the same value),
/// with `Content-Length` and `x-request-id`, then the body, end of stream on the last.
pub fn destination(replies: &[ProcessingResponse], body_len: usize) -> String {
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

pub fn completion(model: &str) -> String {
    format!(r#"{{"model":"{model}","prompt":"test1","temperature":0}}"#)
}

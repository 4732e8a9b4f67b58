//! The standalone gateway: an HTTP reverse proxy that asks the picker where each
//! request goes and forwards it there, so igw routes without Envoy.
//!
//! Per request: read the body once (up to the size cap), parse it with GIE's openai
//! parser, ask the [`RequestRouter`] for an ordered list of endpoints, forward to the
//! first, and on a connection failure (nothing sent yet, so retrying is safe) try the
//! next. A request without a body (a plain GET) has nothing to parse and is routed
//! like a passthrough request, as GIE routes header-only requests rather than reject
//! them. The response streams back untouched, chunk by chunk (no SSE buffering),
//! inside a [`MeteredBody`] that holds the endpoint's in-flight guard and reads usage.
//! Errors carry GIE's codes and texts. The handler never panics on client input and
//! never holds a lock across an await.

mod body;
mod models;
mod usage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use body::{Completion, MeteredBody, OnComplete};
pub use usage::{TokenUsage, UsageSniffer};

use super::endpoint::{Endpoint, EndpointLoad};
use super::error::EppError;
use super::parser::{
    MODEL_REWRITE_HEADER, OBJECTIVE_HEADER, REQUEST_ID_HEADER, RequestMeta, parse_openai,
    parse_passthrough,
};
use super::request::LlmRequest;

/// Header the gateway sets on the forwarded request (as the EPP sets it for Envoy) and
/// returns on the response, naming the endpoint that served it.
pub const DESTINATION_HEADER: &str = "x-gateway-destination-endpoint";
/// Response header naming the endpoint that actually served (igw extension).
pub const SERVED_HEADER: &str = "x-gateway-destination-endpoint-served";

/// Default cap on request bodies, bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// One place a request may go.
#[derive(Clone, Debug)]
pub struct Target {
    pub endpoint: Arc<Endpoint>,
    /// The endpoint's shared load counters; the gateway takes a guard on them.
    pub load: Arc<EndpointLoad>,
}

/// The picker as the gateway sees it: admission and scheduling behind one call.
pub trait RequestRouter: Send + Sync + 'static {
    /// Chooses where `request` goes: the primary endpoint first, then fallbacks.
    /// `objective` is the `x-gateway-inference-objective` header, if any.
    fn route(
        &self,
        request: &mut LlmRequest,
        objective: Option<&str>,
    ) -> Result<Vec<Target>, EppError>;

    /// A forward to `endpoint` failed before anything was sent (refused, unreachable).
    fn endpoint_failed(&self, endpoint: &Endpoint, error: &str);

    /// `endpoint` answered with response headers; [`RequestRouter::completed`] follows
    /// exactly once.
    fn forwarded(&self, _request: &LlmRequest, _endpoint: &Endpoint) {}

    /// A response finished, failed or was abandoned.
    fn completed(&self, request: &LlmRequest, endpoint: &Endpoint, status: u16, done: &Completion);

    /// A routing error was returned to the client.
    fn rejected(&self, request: Option<&LlmRequest>, error: &EppError);

    /// Every endpoint of the pool, for `GET /v1/models`.
    fn endpoints(&self) -> Vec<Arc<Endpoint>>;
}

/// How the gateway behaves.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub max_body_bytes: usize,
    /// GIE's `passthrough-parser`: route without interpreting the body.
    pub passthrough: bool,
    /// How long to wait for an endpoint to accept a connection before trying the next.
    pub connect_timeout: Duration,
    /// How long to wait for response headers (a non-streaming completion sends them
    /// only when it is done).
    pub response_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            passthrough: false,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(600),
        }
    }
}

struct Gateway {
    router: Arc<dyn RequestRouter>,
    client: Client<HttpConnector, Full<Bytes>>,
    config: GatewayConfig,
    next_id: std::sync::atomic::AtomicU64,
}

/// The gateway's HTTP app: `GET /v1/models` answered from the pool, everything else
/// routed and forwarded.
pub fn app(router: Arc<dyn RequestRouter>, config: GatewayConfig) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let gateway = Arc::new(Gateway {
        router,
        client,
        config,
        next_id: std::sync::atomic::AtomicU64::new(1),
    });
    Router::new()
        .route("/v1/models", axum::routing::get(models::list))
        .fallback(forward)
        .with_state(gateway)
}

/// GIE's error response: the status and `inference error: <Code> - <message>`.
pub fn error_response(err: &EppError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        err.to_string(),
    )
        .into_response()
}

async fn forward(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, gw.config.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let err = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                EppError::PayloadTooLarge(format!(
                    "request body exceeds {} bytes",
                    gw.config.max_body_bytes
                ))
            } else {
                EppError::BadRequest(format!("cannot read request body: {e}"))
            };
            gw.router.rejected(None, &err);
            return error_response(&err);
        }
    };
    let header_str = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let request_id = header_str(REQUEST_ID_HEADER)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let n = gw
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("igw-{n:016x}")
        });
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let meta = RequestMeta {
        path: parts.uri.path(),
        request_id: request_id.clone(),
        model_rewrite: header_str(MODEL_REWRITE_HEADER),
    };
    let parsed = if gw.config.passthrough || body.is_empty() {
        Ok(parse_passthrough(meta, &body))
    } else {
        parse_openai(meta, &body)
    };
    let mut request = match parsed {
        Ok(r) => r,
        Err(err) => {
            gw.router.rejected(None, &err);
            return error_response(&err);
        }
    };
    let targets = match gw.router.route(&mut request, header_str(OBJECTIVE_HEADER)) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => {
            let err = EppError::ServiceUnavailable(
                "failed to find endpoint candidates for serving the request".into(),
            );
            gw.router.rejected(Some(&request), &err);
            return error_response(&err);
        }
        Err(err) => {
            gw.router.rejected(Some(&request), &err);
            return error_response(&err);
        }
    };
    let body = rewrite_model(&request, body);
    let request = Arc::new(request);
    let mut failures = Vec::new();
    for target in &targets {
        let addr = target.endpoint.address.to_string();
        let upstream = match build_upstream(
            &parts.method,
            &parts.headers,
            &addr,
            &path_and_query,
            &request_id,
            body.clone(),
        ) {
            Ok(r) => r,
            Err(e) => {
                let err = EppError::BadRequest(format!("cannot forward request: {e}"));
                gw.router.rejected(Some(&request), &err);
                return error_response(&err);
            }
        };
        let guard = target.load.start_request(request.estimated_tokens());
        let sent_at = Instant::now();
        let result =
            tokio::time::timeout(gw.config.response_timeout, gw.client.request(upstream)).await;
        let resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) if e.is_connect() => {
                // Nothing reached the endpoint: safe to try the next one.
                let msg = format!("{addr}: {e}");
                gw.router.endpoint_failed(&target.endpoint, &msg);
                failures.push(msg);
                continue;
            }
            Ok(Err(e)) => {
                let err = EppError::ServiceUnavailable(format!(
                    "endpoint {addr} failed before responding: {e}"
                ));
                gw.router.rejected(Some(&request), &err);
                return error_response(&err);
            }
            Err(_) => {
                let err = EppError::ServiceUnavailable(format!(
                    "endpoint {addr} sent no response within {:?}",
                    gw.config.response_timeout
                ));
                gw.router.rejected(Some(&request), &err);
                return error_response(&err);
            }
        };
        let (mut resp_parts, incoming) = resp.into_parts();
        let streaming = resp_parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/event-stream"));
        let status = resp_parts.status.as_u16();
        gw.router.forwarded(&request, &target.endpoint);
        let (router, req_for_done, endpoint) =
            (gw.router.clone(), request.clone(), target.endpoint.clone());
        let on_complete: OnComplete =
            Box::new(move |done| router.completed(&req_for_done, &endpoint, status, &done));
        let metered = MeteredBody::new(incoming, guard, streaming, sent_at, on_complete);
        if let Ok(v) = HeaderValue::from_str(&addr) {
            resp_parts
                .headers
                .insert(HeaderName::from_static(SERVED_HEADER), v);
        }
        strip_hop_by_hop(&mut resp_parts.headers);
        return Response::from_parts(resp_parts, Body::new(metered));
    }
    let err = EppError::ServiceUnavailable(format!(
        "every endpoint chosen for the request refused it: {}",
        failures.join("; ")
    ));
    gw.router.rejected(Some(&request), &err);
    error_response(&err)
}

/// Writes the target model into the body when a rewrite changed it (GIE does the same
/// before forwarding). Bodies that need no change are forwarded byte for byte.
fn rewrite_model(request: &LlmRequest, body: Bytes) -> Bytes {
    if request.target_model == request.incoming_model {
        return body;
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    value["model"] = serde_json::Value::String(request.target_model.clone());
    serde_json::to_vec(&value).map(Bytes::from).unwrap_or(body)
}

fn build_upstream(
    method: &axum::http::Method,
    headers: &HeaderMap,
    addr: &str,
    path_and_query: &str,
    request_id: &str,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, axum::http::Error> {
    let mut builder = hyper::Request::builder()
        .method(method.clone())
        .uri(format!("http://{addr}{path_and_query}"));
    if let Some(h) = builder.headers_mut() {
        for (name, value) in headers {
            if !is_hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
                h.append(name.clone(), value.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(addr) {
            h.insert(HeaderName::from_static(DESTINATION_HEADER), v);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
        }
    }
    builder.body(Full::new(body))
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
    )
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
    ] {
        headers.remove(name);
    }
}

//! The standalone gateway: an HTTP reverse proxy that asks the picker where each
//! request goes and forwards it there, so igw routes without Envoy.
//!
//! Per request: read the body once (up to the size cap), build the lifecycle's
//! [`RequestContext`], parse with the pool's parser, ask the [`Pool`] for a
//! [`Decision`](crate::epp::lifecycle::Decision), forward to the first target and on
//! a connection failure (nothing sent yet, so retrying is safe) try the next. The
//! response streams back untouched, chunk by chunk (no SSE buffering), inside a
//! [`MeteredBody`] whose [`ResponseMeter`] owns the decision and so the in-flight
//! booking. Errors carry GIE's codes and texts. The handler never panics on client
//! input and never holds a lock across an await.

mod metered;
mod models;

use std::sync::Arc;
use std::time::Duration;

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

pub use metered::MeteredBody;

use super::error::EppError;
use super::lifecycle::headers::{DESTINATION, REQUEST_ID, SERVED};
use super::lifecycle::{RequestContext, RequestIds, ResponseMeter};
use super::pool::Pool;
use super::request::LlmRequest;

/// Default cap on request bodies, bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// How the gateway behaves.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub max_body_bytes: usize,
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
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(600),
        }
    }
}

struct Gateway {
    pool: Arc<Pool>,
    client: Client<HttpConnector, Full<Bytes>>,
    config: GatewayConfig,
    ids: RequestIds,
}

/// The gateway's HTTP app: `GET /v1/models` answered from the pool, everything else
/// routed and forwarded.
pub fn app(pool: Arc<Pool>, config: GatewayConfig) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let gateway = Arc::new(Gateway {
        pool,
        client,
        config,
        ids: RequestIds::default(),
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
            gw.pool.reject(None, &err);
            return error_response(&err);
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let ctx = RequestContext::new(parts.method, path_and_query, parts.headers, &gw.ids);
    let request = match gw.pool.parse(&ctx, &body) {
        Ok(r) => r,
        Err(err) => {
            gw.pool.reject(None, &err);
            return error_response(&err);
        }
    };
    let body = rewrite_model(&request, body);
    let mut decision = match gw.pool.route(&ctx, request) {
        Ok(d) => d,
        Err(err) => return error_response(&err),
    };
    let mut failures = Vec::new();
    for index in 0..decision.targets().len() {
        let addr = decision.targets()[index].endpoint.address.to_string();
        let upstream = match build_upstream(&ctx, &addr, body.clone()) {
            Ok(r) => r,
            Err(e) => {
                let err = EppError::BadRequest(format!("cannot forward request: {e}"));
                decision.fail(&err);
                return error_response(&err);
            }
        };
        decision.reserve(index);
        let result =
            tokio::time::timeout(gw.config.response_timeout, gw.client.request(upstream)).await;
        let resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) if e.is_connect() => {
                // Nothing reached the endpoint: safe to try the next one.
                let msg = format!("{addr}: {e}");
                decision.endpoint_failed(index, &msg);
                failures.push(msg);
                continue;
            }
            Ok(Err(e)) => {
                let err = EppError::ServiceUnavailable(format!(
                    "endpoint {addr} failed before responding: {e}"
                ));
                decision.fail(&err);
                return error_response(&err);
            }
            Err(_) => {
                let err = EppError::ServiceUnavailable(format!(
                    "endpoint {addr} sent no response within {:?}",
                    gw.config.response_timeout
                ));
                decision.fail(&err);
                return error_response(&err);
            }
        };
        let (mut resp_parts, incoming) = resp.into_parts();
        let streaming = resp_parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/event-stream"));
        let meter = ResponseMeter::start(decision, resp_parts.status.as_u16(), streaming);
        if let Ok(v) = HeaderValue::from_str(&addr) {
            resp_parts
                .headers
                .insert(HeaderName::from_static(SERVED), v);
        }
        strip_hop_by_hop(&mut resp_parts.headers);
        return Response::from_parts(resp_parts, Body::new(MeteredBody::new(incoming, meter)));
    }
    let err = EppError::ServiceUnavailable(format!(
        "every endpoint chosen for the request refused it: {}",
        failures.join("; ")
    ));
    decision.fail(&err);
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
    ctx: &RequestContext,
    addr: &str,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, axum::http::Error> {
    let mut builder = hyper::Request::builder()
        .method(ctx.method.clone())
        .uri(format!("http://{addr}{}", ctx.path));
    if let Some(h) = builder.headers_mut() {
        for (name, value) in &ctx.headers {
            if !is_hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
                h.append(name.clone(), value.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(addr) {
            h.insert(HeaderName::from_static(DESTINATION), v);
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            h.insert(HeaderName::from_static(REQUEST_ID), v);
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

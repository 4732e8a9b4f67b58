//! The standalone gateway: an HTTP reverse proxy that asks the picker where each
//! request goes and forwards it there, so igw routes without Envoy.
//!
//! Per request: read the body once (up to the size cap), build the lifecycle's
//! [`RequestContext`](crate::epp::lifecycle::RequestContext), parse with the pool's
//! parser, ask the [`Pool`] for a [`Decision`](crate::epp::lifecycle::Decision),
//! forward to the first target and on a connection failure (nothing sent yet, so
//! retrying is safe) try the next. The response streams back untouched, chunk by
//! chunk (no SSE buffering), inside a [`MeteredBody`] whose
//! [`ResponseMeter`](crate::epp::lifecycle::ResponseMeter) owns the decision and so
//! the in-flight booking. Errors are OpenAI-shaped JSON carrying GIE's codes and
//! texts. The handler never panics on client input and never holds a lock across an
//! await.

mod forward;
mod metered;
mod models;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use metered::MeteredBody;
pub use target::{DEFAULT_FORWARD_PATHS, ForwardPaths};

use super::error::EppError;
use super::lifecycle::RequestIds;
use super::lifecycle::headers::DROPPED_REASON;
use super::pool::Pool;
use crate::api::openai::ErrorResponse;

/// Default cap on request bodies, bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// Default number of times a request is sent again after failing before any
/// response (Envoy's `num_retries` default is 1; a model-server pool loses replicas
/// often enough during rollouts that a second re-send pays).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default longest wait for the next bytes of a response body, once its headers came.
/// Long: a busy vLLM may preempt a running request and resume it much later.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How the gateway behaves.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub max_body_bytes: usize,
    /// How long to wait for an endpoint to accept a connection before trying the next.
    pub connect_timeout: Duration,
    /// How long to wait for response headers (a non-streaming completion sends them
    /// only when it is done).
    pub response_timeout: Duration,
    /// How long a response body may send nothing before it counts as broken; `None`
    /// waits forever.
    pub stall_timeout: Option<Duration>,
    /// Re-sends of a request whose endpoint failed before any response: to the next
    /// target, then to a re-pick without the endpoints that failed.
    pub max_retries: u32,
    /// The paths forwarded; every other path is a 404.
    pub forward_paths: ForwardPaths,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(600),
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            max_retries: DEFAULT_MAX_RETRIES,
            forward_paths: ForwardPaths::default(),
        }
    }
}

struct Gateway {
    pool: Arc<Pool>,
    client: Client<HttpConnector, Full<Bytes>>,
    config: GatewayConfig,
    ids: RequestIds,
}

/// The gateway's HTTP app: `GET /v1/models` answered from the pool, the inference
/// routes routed and forwarded, everything else refused.
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
    // One handler for every request, so the request-target check runs before any
    // route, `GET /v1/models` included.
    Router::new().fallback(forward::forward).with_state(gateway)
}

/// The gateway's error response, as an OpenAI server answers: vLLM's JSON error body
/// (`{"error": {"message", "type", "param", "code"}}`) with GIE's text in `message`
/// (`inference error: <Code> - <message>`, Go's internal wording put plainly), so
/// OpenAI clients raise their usual exception classes. A request refused before any
/// endpoint also carries llm-d's `x-llm-d-request-dropped-reason`. (Behind Envoy the
/// picker keeps GIE's exact plain-text bodies.)
pub fn error_response(err: &EppError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = err.to_string().replace(
        "error unmarshaling request bodyMap",
        "the request body is not valid JSON",
    );
    let body = ErrorResponse::new(status.as_u16(), message);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(reason) = err.dropped_reason() {
        resp.headers_mut()
            .insert(DROPPED_REASON, axum::http::HeaderValue::from_static(reason));
    }
    resp
}

//! The picker's operator port (`--metrics-port`): Prometheus metrics, liveness,
//! readiness, a JSON view of every endpoint as the picker sees it (the kubectl
//! plugin's `top` reads it), and explained dry-run decisions (its `explain`).
//!
//! Read-only: every handler reads the current snapshot and the metric registry; none
//! changes routing state (an explained decision books nothing, see
//! [`crate::epp::lifecycle::explain`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::datastore::Health;
use super::lifecycle::{RequestContext, RequestIds};
use super::metrics::exposition;
use super::pool::Pool;
use super::run::Fault;

/// What the handlers read.
#[derive(Clone)]
struct Admin {
    pool: Arc<Pool>,
    /// Set when a background task died.
    fault: Fault,
}

/// Routes: `GET /metrics`, `/health`, `/ready`, `/admin/endpoints`, and
/// `POST /admin/explain[/<path>]` with a request body as the gateway would get it
/// at `/<path>` (`v1/completions` when none), its headers (the objective, the subset
/// hint) included. `fault` fails `/health` and `/ready` once a background task died.
pub fn app(pool: Arc<Pool>, fault: Fault) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/admin/endpoints", get(endpoints))
        .route("/admin/explain", post(explain))
        .route("/admin/explain/{*path}", post(explain))
        .with_state(Admin { pool, fault })
}

/// The fault, as a 503 response.
fn broken(a: &Admin) -> Option<Response> {
    let why = a.fault.borrow().clone()?;
    Some(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    )
}

async fn health(State(a): State<Admin>) -> Response {
    broken(&a).unwrap_or_else(|| "ok".into_response())
}

async fn metrics(State(a): State<Admin>, headers: axum::http::HeaderMap) -> Response {
    let d = &a.pool;
    d.metrics().set_pool(&d.pool_stats());
    let text = d.metrics().render();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if exposition::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, exposition::OPENMETRICS_TEXT)], text).into_response()
    } else {
        let text = exposition::to_prometheus_text(&text);
        ([(header::CONTENT_TYPE, exposition::PROMETHEUS_TEXT)], text).into_response()
    }
}

/// Ready when at least one endpoint can take requests.
async fn ready(State(a): State<Admin>) -> Response {
    if let Some(broken) = broken(&a) {
        return broken;
    }
    let ready = a.pool.pool_stats().ready_endpoints;
    if ready > 0 {
        (
            StatusCode::OK,
            format!("ready: {ready} endpoints routable\n"),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no endpoint has fresh metrics yet\n",
        )
            .into_response()
    }
}

/// One endpoint in `GET /admin/endpoints`.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub name: String,
    pub address: String,
    /// `pending`, `healthy` or `unhealthy`.
    pub health: &'static str,
    pub last_error: Option<String>,
    /// Age of the last good metrics, ms; absent when never scraped.
    pub metrics_age_ms: Option<u64>,
    pub waiting_queue_size: Option<u64>,
    pub running_requests: Option<u64>,
    pub kv_cache_usage: Option<f64>,
    pub active_adapters: Vec<String>,
    pub waiting_adapters: Vec<String>,
    pub max_active_adapters: Option<u32>,
    /// The model it serves under its own name (its metrics' `model_name` label).
    pub served_model: Option<String>,
    /// Requests this picker has in flight there.
    pub in_flight: u64,
    /// Their estimated tokens (what `token-load-scorer` reads).
    pub in_flight_tokens: u64,
    /// Requests sent since its last scrape.
    pub sent_since_scrape: u64,
}

/// `GET /admin/endpoints`.
#[derive(Debug, Serialize)]
pub struct PoolView {
    pub pool: String,
    pub endpoints: Vec<EndpointView>,
}

async fn endpoints(State(a): State<Admin>) -> Json<PoolView> {
    let d = &a.pool;
    let snap = d.snapshot();
    let now = d.now();
    let endpoints = snap
        .endpoints
        .iter()
        .map(|e| {
            let m = e.metrics.as_ref();
            EndpointView {
                name: e.endpoint.name.clone(),
                address: e.endpoint.address.to_string(),
                health: match e.health {
                    Health::Pending => "pending",
                    Health::Healthy => "healthy",
                    Health::Unhealthy => "unhealthy",
                },
                last_error: e.last_error.clone(),
                metrics_age_ms: m.map(|m| {
                    now.saturating_sub(m.updated_at)
                        .min(Duration::from_secs(u64::MAX / 1000))
                        .as_millis() as u64
                }),
                waiting_queue_size: m.map(|m| m.waiting_queue_size),
                running_requests: m.map(|m| m.running_requests),
                kv_cache_usage: m.map(|m| m.kv_cache_usage),
                active_adapters: m.map(|m| m.active_adapters.clone()).unwrap_or_default(),
                waiting_adapters: m.map(|m| m.waiting_adapters.clone()).unwrap_or_default(),
                max_active_adapters: m.map(|m| m.max_active_adapters),
                served_model: m.and_then(|m| m.served_model.as_deref().map(str::to_string)),
                in_flight: e.load.in_flight(),
                in_flight_tokens: e.load.in_flight_tokens(),
                sent_since_scrape: e.load.sent_since_scrape(),
            }
        })
        .collect();
    Json(PoolView {
        pool: snap.pool.clone(),
        endpoints,
    })
}

/// `POST /admin/explain/<path>`: the decision the gateway would make for this
/// request, and why (a 400 in the gateway's JSON shape when the body cannot be
/// parsed).
async fn explain(
    State(a): State<Admin>,
    path: Option<Path<String>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = match path {
        Some(Path(p)) => format!("/{}", p.trim_start_matches('/')),
        None => "/v1/completions".to_string(),
    };
    let ctx = RequestContext::new(
        axum::http::Method::POST,
        path,
        headers,
        &RequestIds::default(),
    );
    match a.pool.parse(&ctx, &body) {
        Ok(request) => Json(a.pool.explain(&ctx, request)).into_response(),
        Err(e) => super::proxy::error_response(&e),
    }
}

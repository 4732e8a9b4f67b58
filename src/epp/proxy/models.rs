//! `GET /v1/models` on the gateway: the models the pool serves, so OpenAI clients and
//! load generators that ask first keep working.
//!
//! Asks every endpoint's own `/v1/models` at once (each with a short timeout) and
//! merges the cards by `id`, first answer wins: base models and the LoRA adapters
//! each endpoint has loaded. Endpoints that do not answer are left out, not fatal.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use super::Gateway;

/// How long one endpoint may take to list its models.
const PER_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest model list read from one endpoint, bytes.
const MAX_LIST_BYTES: usize = 4 << 20;

pub(super) async fn list(gw: &Gateway) -> Response {
    let endpoints = gw.pool.endpoints();
    let fetches = endpoints.iter().map(|ep| {
        let client = gw.client.clone();
        let uri = format!("http://{}/v1/models", ep.address);
        async move {
            let req = hyper::Request::get(uri)
                .body(Full::new(Bytes::new()))
                .ok()?;
            let resp = tokio::time::timeout(PER_ENDPOINT_TIMEOUT, client.request(req))
                .await
                .ok()?
                .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = tokio::time::timeout(
                PER_ENDPOINT_TIMEOUT,
                Limited::new(resp.into_body(), MAX_LIST_BYTES).collect(),
            )
            .await
            .ok()?
            .ok()?
            .to_bytes();
            serde_json::from_slice::<Value>(&body).ok()
        }
    });
    let answers = futures::future::join_all(fetches).await;
    let mut cards: BTreeMap<String, Value> = BTreeMap::new();
    for list in answers.into_iter().flatten() {
        let Some(data) = list.get("data").and_then(Value::as_array) else {
            continue;
        };
        for card in data {
            if let Some(id) = card.get("id").and_then(Value::as_str) {
                cards.entry(id.to_string()).or_insert_with(|| card.clone());
            }
        }
    }
    Json(json!({"object": "list", "data": cards.into_values().collect::<Vec<_>>()})).into_response()
}

//! The endpoints around generation: `GET /v1/models`, the runtime LoRA endpoints,
//! `GET /health` and `GET /metrics`.
//!
//! `/metrics` renders vLLM's families first (through the shared renderer) and then
//! igw's own driver-lag families, which vLLM does not have. Nothing here changes the
//! engine: adapter loads only change which names resolve.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::driver::escape_label;
use super::error::{ApiError, ApiJson};
use super::replica::Replica;
use crate::api::openai::{LoadLoraAdapterRequest, ModelList, UnloadLoraAdapterRequest};
use crate::sim::metrics::{CacheInfo, PROMETHEUS_CONTENT_TYPE, ReplicaInfo, render_replica};

/// `GET /v1/models`.
pub async fn models(State(replica): State<Arc<Replica>>) -> Json<ModelList> {
    Json(replica.model_list())
}

/// `POST /v1/load_lora_adapter`: 200 with vLLM's plain-text success message.
pub async fn load_lora_adapter(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<LoadLoraAdapterRequest>,
) -> Result<String, ApiError> {
    replica.load_adapter(&req.lora_name, &req.lora_path)
}

/// `POST /v1/unload_lora_adapter`.
pub async fn unload_lora_adapter(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<UnloadLoraAdapterRequest>,
) -> Result<String, ApiError> {
    replica.unload_adapter(&req.lora_name, req.lora_int_id.is_some())
}

/// `GET /health`: 200 with an empty body while the engine runs; 503 once its driver
/// has stopped, as vLLM answers when its engine is dead.
pub async fn health(State(replica): State<Arc<Replica>>) -> StatusCode {
    if replica.driver.is_running() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `GET /metrics`: vLLM's families, then `igw_sim_step_lag_seconds`,
/// `igw_sim_steps_total` and the HTTP server's `igw_http_*` families.
pub async fn metrics(State(replica): State<Arc<Replica>>) -> Result<Response, ApiError> {
    let Some(snap) = replica.driver.snapshot().await else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is not running: the server is shutting down or its engine failed.",
        ));
    };
    let c = &replica.config;
    let info = ReplicaInfo {
        model_name: replica.display_name().to_string(),
        engine: c.engine_index,
        block_size: c.engine.block_size,
        num_gpu_blocks: c.engine.num_blocks,
        enable_prefix_caching: c.engine.enable_prefix_caching,
        max_loras: c.engine.max_loras,
    };
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = String::with_capacity(16 * 1024);
    let cache = CacheInfo {
        gpu_memory_utilization: c.gpu_memory_utilization,
        num_gpu_blocks_override: c.num_gpu_blocks_override,
        user_specified_block_size: c.user_specified_block_size,
    };
    render_replica(
        &mut out,
        &info,
        &cache,
        &snap.metrics,
        &snap.gauges,
        unix_time,
    );
    snap.lag.render(&mut out, &info);
    let labels = format!(
        "engine=\"{}\",model_name=\"{}\"",
        info.engine,
        escape_label(&info.model_name)
    );
    replica.http.snapshot().render(&mut out, &labels);
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{ServeLimits, Server};
    use crate::sim::engine::EngineConfig;
    use crate::sim::profile::LatencyProfile;
    use crate::sim::server::SimServerConfig;

    #[tokio::test(start_paused = true)]
    async fn health_turns_503_when_the_driver_dies() {
        let profile = LatencyProfile::builtin("h100-llama3-8b").unwrap();
        let config = SimServerConfig::new("m", EngineConfig::from_profile(profile));
        let stats = Server::new(ServeLimits::default()).unwrap().stats();
        let replica = Arc::new(Replica::start(config, 8000, stats).unwrap());
        assert_eq!(health(State(replica.clone())).await, StatusCode::OK);
        replica.driver.crash();
        while replica.driver.is_running() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            health(State(replica.clone())).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let e = metrics(State(replica)).await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}

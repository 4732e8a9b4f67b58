//! What the picker sees of the simulated engines: one made-up endpoint per engine,
//! and the metrics a scrape of that engine's `/metrics` would yield at a virtual time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::epp::endpoint::{Endpoint, EndpointMetrics};
use crate::sim::engine::Engine;

/// The endpoint that stands for engine `i`: named like a pod, on a made-up address
/// (nothing connects to it).
pub(super) fn endpoint(i: usize) -> Endpoint {
    let port = 8000 + (i % 50_000) as u16;
    Endpoint {
        name: format!("des-{i}"),
        address: SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), port)),
    }
}

/// What the scraper would extract from the engine's `/metrics` at `now`: vLLM's
/// gauges (labelled with `model`), `lora_requests_info` and `cache_config_info`,
/// mapped as the vLLM engine spec maps them.
pub(super) fn metrics_of(engine: &Engine, model: &Arc<str>, now: Duration) -> EndpointMetrics {
    let g = engine.gauges();
    let c = engine.config();
    EndpointMetrics {
        waiting_queue_size: g.num_requests_waiting as u64,
        running_requests: g.num_requests_running as u64,
        kv_cache_usage: g.kv_cache_usage_perc.min(1.0),
        active_adapters: g.running_lora_adapters,
        waiting_adapters: g.waiting_lora_adapters,
        max_active_adapters: c.max_loras as u32,
        cache_block_size: Some(c.block_size as u32),
        cache_num_blocks: Some(c.num_blocks as u64),
        served_model: Some(Arc::clone(model)),
        updated_at: now,
    }
}

//! Fixtures for the scheduler's tests: candidates, requests and a seeded context.
//! Test-only; builds values, never touches shared state.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::epp::endpoint::{Candidate, Endpoint, EndpointMetrics};
use crate::epp::request::{ApiKind, LlmRequest};

/// Endpoint `i` named `pod-i` at 192.168.1.(i+1):8000, as GIE's hermetic tests name pods.
pub fn endpoint(i: usize) -> Arc<Endpoint> {
    Arc::new(Endpoint {
        name: format!("pod-{i}"),
        address: SocketAddr::from((Ipv4Addr::new(192, 168, 1, (i + 1) as u8), 8000)),
    })
}

/// GIE's `P(index, queue, kv)`: metrics scraped at time 0.
pub fn pod(i: usize, queue: u64, kv: f64) -> Candidate {
    Candidate {
        endpoint: endpoint(i),
        metrics: Some(EndpointMetrics {
            waiting_queue_size: queue,
            kv_cache_usage: kv,
            ..EndpointMetrics::default()
        }),
        in_flight: 0,
        in_flight_tokens: 0,
        sent_since_scrape: 0,
    }
}

/// A candidate that was never scraped.
pub fn unscraped(i: usize) -> Candidate {
    Candidate {
        endpoint: endpoint(i),
        metrics: None,
        in_flight: 0,
        in_flight_tokens: 0,
        sent_since_scrape: 0,
    }
}

/// Sets the LoRA fields of a candidate's metrics.
pub fn with_lora(mut c: Candidate, active: &[&str], waiting: &[&str], max: u32) -> Candidate {
    let m = c.metrics.as_mut().expect("scraped");
    m.active_adapters = active.iter().map(|s| s.to_string()).collect();
    m.waiting_adapters = waiting.iter().map(|s| s.to_string()).collect();
    m.max_active_adapters = max;
    c
}

/// A completion request for `model` whose prefix bytes are `prompt`.
pub fn request(model: &str, prompt: &str) -> LlmRequest {
    LlmRequest {
        request_id: "test".into(),
        incoming_model: model.into(),
        target_model: model.into(),
        api: ApiKind::Completions,
        prefix_bytes: prompt.as_bytes().to_vec(),
        cache_salt: None,
        priority: 0,
        stream: false,
        body_len: prompt.len(),
    }
}

/// A seeded RNG: every test run makes the same random choices.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The time most tests decide at: 10 ms after the (time-0) scrape.
pub const NOW: Duration = Duration::from_millis(10);

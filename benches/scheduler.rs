//! How long does one scheduling decision take? 100 endpoints with varied metrics, a
//! 16 KB prompt (256 prefix blocks, GIE's cap) and a warm prefix index, under GIE's
//! default profile and igw's. Criterion measures `schedule` alone and `schedule` plus
//! the `on_scheduled` index update; a final pass times 20,000 single decisions and
//! prints their p50/p99, since the goal is stated as a p99.
//!
//! A benchmark, not a test: it asserts nothing. Run with
//! `cargo bench --bench scheduler`.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use igw::epp::config::{LoadedConfig, gie_default, igw_default};
use igw::epp::endpoint::{Candidate, Endpoint, EndpointMetrics};
use igw::epp::request::{ApiKind, LlmRequest};
use igw::epp::scheduler::{CycleState, SchedulingContext};
use rand::SeedableRng;
use rand::rngs::StdRng;

const ENDPOINTS: usize = 100;
const PROMPT_BYTES: usize = 16 * 1024;
const NOW: Duration = Duration::from_millis(20);

fn candidates() -> Vec<Candidate> {
    (0..ENDPOINTS)
        .map(|i| Candidate {
            endpoint: Arc::new(Endpoint {
                name: format!("vllm-{i:03}-rank-0"),
                address: SocketAddr::from((
                    Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8),
                    8000,
                )),
            }),
            metrics: Some(EndpointMetrics {
                waiting_queue_size: (i * 7 % 13) as u64,
                running_requests: (i * 5 % 31) as u64,
                kv_cache_usage: (i * 37 % 100) as f64 / 100.0,
                active_adapters: vec!["sql-lora".into()],
                max_active_adapters: 4,
                ..EndpointMetrics::default()
            }),
            in_flight: (i % 9) as u64,
            in_flight_tokens: (i % 9) as u64 * 1_200,
            sent_since_scrape: (i % 3) as u64,
        })
        .collect()
}

/// A 16 KB prompt: one of `groups` shared 8 KB system prompts, then a unique tail.
fn prompt(group: usize, unique: usize) -> LlmRequest {
    let mut text = format!("system prompt {group}: ").repeat(PROMPT_BYTES / 2 / 20 + 1);
    text.truncate(PROMPT_BYTES / 2);
    while text.len() < PROMPT_BYTES {
        text.push_str(&format!(" question {unique} "));
    }
    text.truncate(PROMPT_BYTES);
    LlmRequest {
        request_id: format!("r{unique}"),
        incoming_model: "llama".into(),
        target_model: "llama".into(),
        api: ApiKind::Completions,
        prefix_bytes: text.into_bytes(),
        cache_salt: None,
        priority: 0,
        stream: false,
        body_len: PROMPT_BYTES + 64,
    }
}

/// Sends 2,000 prompts from 50 prefix groups through the scheduler, so every endpoint
/// holds blocks and the benchmarked prompt's group is held somewhere.
fn warm(config: &LoadedConfig, cands: &[Candidate], rng: &mut StdRng) {
    let mut cycle = CycleState::default();
    for k in 0..2000 {
        let req = prompt(k % 50, k);
        let mut ctx = SchedulingContext::new(NOW, rng, &mut cycle);
        let res = config
            .scheduler
            .schedule(&req, cands, &mut ctx)
            .expect("scheduled");
        config
            .scheduler
            .on_scheduled(&req, &cands[res.target()], ctx.cycle);
    }
}

fn bench_profile(c: &mut Criterion, label: &str, config: LoadedConfig) {
    let cands = candidates();
    let mut rng = StdRng::seed_from_u64(1);
    warm(&config, &cands, &mut rng);
    let req = prompt(7, 1_000_000);
    let mut cycle = CycleState::default();
    c.bench_function(&format!("{label}/schedule"), |b| {
        b.iter(|| {
            let mut ctx = SchedulingContext::new(NOW, &mut rng, &mut cycle);
            black_box(
                config
                    .scheduler
                    .schedule(black_box(&req), &cands, &mut ctx)
                    .ok(),
            )
        })
    });
    c.bench_function(&format!("{label}/schedule+on_scheduled"), |b| {
        b.iter(|| {
            let mut ctx = SchedulingContext::new(NOW, &mut rng, &mut cycle);
            if let Ok(res) = config.scheduler.schedule(black_box(&req), &cands, &mut ctx) {
                config
                    .scheduler
                    .on_scheduled(&req, &cands[res.target()], ctx.cycle);
            }
        })
    });
    // Single-decision latencies, for the tail.
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let start = Instant::now();
            let mut ctx = SchedulingContext::new(NOW, &mut rng, &mut cycle);
            black_box(config.scheduler.schedule(&req, &cands, &mut ctx).ok());
            start.elapsed()
        })
        .collect();
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{label}/schedule single decisions: p50 {:?}, p99 {:?}, max {:?}",
        at(0.50),
        at(0.99),
        at(1.0)
    );
}

fn scheduler(c: &mut Criterion) {
    bench_profile(c, "gie-default", gie_default());
    bench_profile(c, "igw-default", igw_default());
}

criterion_group!(benches, scheduler);
criterion_main!(benches);

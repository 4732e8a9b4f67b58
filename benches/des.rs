//! How fast does the virtual-time pool simulation run? 10 replicas of the default
//! profile, 20,000 requests with ShareGPT-like lengths (log-normal, ≈230 prompt and
//! ≈200 output tokens on average), Poisson arrivals at a rate just below the pool's
//! saturation, under each router. Each request carries its prompt's text, as a
//! scenario's planning gives it, so picks hash it without decoding token ids first.
//! Prints simulated requests per wall-clock second and
//! a few figures of the run, so a speed-up that changed the results would show.
//!
//! On a shared machine wall time swings with other load, so each line also gives the
//! requests per second of CPU time the run got (Linux only; from the thread's
//! `schedstat`), which swings much less.
//!
//! A benchmark, not a test: it asserts nothing. Run with `cargo bench --bench des`;
//! `IGW_DES_RATE` (req/s) and `IGW_DES_REQUESTS` override the load,
//! `IGW_DES_ROUTER` runs only the routers whose name contains it, and
//! `IGW_DES_CONFIG=file.yaml` adds an EPP with that EndpointPickerConfig.

use std::sync::Arc;
use std::time::{Duration, Instant};

use igw::bench::des::{DesReport, DesRequest, PoolConfig, Router, simulate};
use igw::epp::config::{gie_default, igw_default};
use igw::sim::engine::EngineConfig;
use igw::sim::metrics::FinishReason;
use igw::sim::profile::{DEFAULT_PROFILE, LatencyProfile};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};

const REPLICAS: usize = 10;

/// Builds a fresh router per run (the EPP's plugin state must not carry over).
type MakeRouter = fn() -> Router;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Log-normal lengths with the given mean and a ShareGPT-like spread (σ = 1).
fn lengths(mean: f64) -> LogNormal<f64> {
    let sigma: f64 = 1.0;
    LogNormal::new(mean.ln() - sigma * sigma / 2.0, sigma).expect("valid")
}

fn workload(n: usize, rate: f64, seed: u64) -> Vec<DesRequest> {
    let mut rng = StdRng::seed_from_u64(seed);
    let gaps = Exp::new(rate).expect("rate > 0");
    let (prompt, output) = (lengths(230.0), lengths(200.0));
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            t += gaps.sample(&mut rng);
            let p = (prompt.sample(&mut rng).round() as usize).clamp(4, 3_000);
            let o = (output.sample(&mut rng).round() as usize).clamp(1, 2_000);
            let prompt: Vec<u32> = (0..p).map(|_| rng.random_range(1_000..100_000)).collect();
            // The prompt's text, as a scenario's planning hands it over with the request.
            let text = igw::sim::tokens::decode(&prompt);
            DesRequest {
                arrival: Duration::from_secs_f64(t),
                prompt,
                output: vec![13; o],
                lora: None,
                finish_reason: FinishReason::Length,
                body_len: None,
                prefix_bytes: Some(Arc::from(text.into_bytes())),
                after: None,
            }
        })
        .collect()
}

/// Nanoseconds this thread has run on a CPU, where Linux reports it.
fn cpu_nanos() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn summary(report: &DesReport) -> String {
    let mut ttft: Vec<f64> = report
        .records
        .iter()
        .filter_map(|r| Some((r.first_token? - r.arrival).as_secs_f64() * 1000.0))
        .collect();
    ttft.sort_by(f64::total_cmp);
    let pct = |q: f64| ttft[((q * ttft.len() as f64) as usize).min(ttft.len() - 1)];
    let steps: u64 = report.engines.iter().map(|e| e.steps).sum();
    format!(
        "virtual {:.1} s, {} steps, TTFT p50 {:.0} ms p99 {:.0} ms",
        report.end.as_secs_f64(),
        steps,
        pct(0.5),
        pct(0.99)
    )
}

fn main() {
    let profile = LatencyProfile::builtin(DEFAULT_PROFILE).expect("built-in profile");
    let engine = EngineConfig::from_profile(profile);
    let requests: usize = env_or("IGW_DES_REQUESTS", 20_000);
    // The pool saturates near 1,400 req/s on this workload (TTFT climbs past it).
    let rate: f64 = env_or("IGW_DES_RATE", 1_100.0);
    let pool = PoolConfig::replicas(&engine, REPLICAS, "llama-3-8b", 0);
    println!("des: {REPLICAS} replicas ({DEFAULT_PROFILE}), {requests} requests at {rate} req/s");
    let routers: [(&str, MakeRouter); 5] = [
        ("epp gie-default", || Router::epp(gie_default())),
        ("epp igw-default", || Router::epp(igw_default())),
        ("round-robin", || Router::RoundRobin),
        ("random", || Router::Random),
        ("least-request", || Router::LeastRequest),
    ];
    // Warm the tokenizer so its one-time build is not timed.
    igw::sim::tokens::warm_up();
    let only: String = env_or("IGW_DES_ROUTER", String::new());
    let mut runs: Vec<(String, Box<dyn Fn() -> Router>)> = routers
        .into_iter()
        .filter(|(n, _)| n.contains(&only))
        .map(|(n, make)| (n.to_string(), Box::new(make) as Box<dyn Fn() -> Router>))
        .collect();
    // Any EndpointPickerConfig file, e.g. to see what one plugin costs.
    if let Ok(path) = std::env::var("IGW_DES_CONFIG") {
        let path = std::path::PathBuf::from(path);
        igw::epp::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = path
            .file_stem()
            .map_or("config".into(), |s| s.to_string_lossy().to_string());
        runs.push((
            format!("epp {name}"),
            Box::new(move || Router::epp(igw::epp::config::load(&path).expect("loaded above"))),
        ));
    }
    for (name, router) in runs {
        let reqs = workload(requests, rate, 1);
        let cpu_before = cpu_nanos();
        let started = Instant::now();
        let report = simulate(&pool, router(), &reqs).expect("simulates");
        let wall = started.elapsed().as_secs_f64();
        let cpu = match (cpu_before, cpu_nanos()) {
            (Some(a), Some(b)) if b > a => {
                format!(
                    ", {:.0} per CPU-s",
                    requests as f64 / ((b - a) as f64 / 1e9)
                )
            }
            _ => String::new(),
        };
        println!(
            "{name:>16}: {:>8.0} simulated req/s ({wall:.2} s wall{cpu}; {})",
            requests as f64 / wall,
            summary(&report)
        );
    }
}

//! How much load the live benchmark's client sustains: streaming requests sent on an
//! open-loop schedule straight to in-process simulators (target-style, no gateway),
//! at offered rates of 500, 1,000, 2,000 and 3,000 req/s for about 5 s each.
//!
//! The simulators run 1,000× faster than real time with short prompts and 4-token
//! outputs, so their own latency is small and the client, the simulators and the
//! runtime share the machine's cores. Printed per rate: requests completed per wall
//! second over the stage, failures, and the send-schedule lag (actual send − scheduled
//! send) at p50 and p99. Nothing is asserted; the numbers are for reading.
//!
//! `cargo bench --bench live_client`

use std::time::Instant;

use igw::bench::live::client::{Destination, http_client, run_stage};
use igw::bench::plan::plan;
use igw::bench::scenario::from_yaml_str;
use igw::sim::options::EngineOptions;
use igw::sim::server::{Listen, SimServerConfig, spawn};

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";
const RATES: [f64; 4] = [500.0, 1000.0, 2000.0, 3000.0];
const SECONDS: f64 = 5.0;
const REPLICAS: usize = 2;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let engine = EngineOptions::default().engine_config()?;
    let mut config = SimServerConfig::new(MODEL, engine);
    config.speedup = 1000.0;
    let sims = spawn(config, Listen::local(REPLICAS)).await?;
    let destination = Destination::new(&sims.base_urls())?;
    println!(
        "live client → {REPLICAS} in-process simulators (speedup 1000, 16–32-token prompts, \
         4 output tokens), constant arrivals, {SECONDS} s per rate:\n"
    );
    println!(
        "{:>8}  {:>9}  {:>9}  {:>8}  {:>10}  {:>10}",
        "offered", "sent", "done/s", "failed", "lag p50", "lag p99"
    );
    for rate in RATES {
        let yaml = format!(
            "seed: 1\n\
             workload: {{type: synthetic, input: {{uniform: {{min: 16, max: 32}}}}, output: {{fixed: {{value: 4}}}}}}\n\
             load: {{type: constant, stages: [{{rate: {rate}, duration: {SECONDS}s}}]}}\n"
        );
        let scenario = from_yaml_str(&yaml, "live_client")?;
        let plans = plan(&scenario)?;
        // A fresh client per rate, so each starts with the same (empty) pool.
        let client = http_client()?;
        let started = Instant::now();
        let outcome = run_stage(
            &client,
            &destination,
            MODEL,
            &plans[0],
            1.0,
            &indicatif::ProgressBar::hidden(),
            &igw::bench::interrupt::Interrupt::new(),
        )
        .await;
        let wall = started.elapsed();
        let failed = outcome
            .requests
            .iter()
            .filter(|s| s.sample.error.is_some())
            .count();
        let done = outcome.requests.len() - failed;
        let lag = outcome.lag_micros();
        println!(
            "{:>8}  {:>9}  {:>9.0}  {:>8}  {:>7.3} ms  {:>7.3} ms",
            format!("{rate:.0}/s"),
            outcome.requests.len(),
            done as f64 / wall.as_secs_f64(),
            failed,
            lag.value_at_quantile(0.5) as f64 / 1e3,
            lag.value_at_quantile(0.99) as f64 / 1e3,
        );
    }
    sims.shutdown().await?;
    Ok(())
}

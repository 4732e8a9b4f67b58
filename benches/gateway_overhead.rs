//! What does the picker add to time to first token? The same load is sent once
//! straight to a simulator and once through `igw epp run` in front of it, and the two
//! TTFT distributions are compared.
//!
//! Two loads, as in GIE's known-overhead report: open-loop 1,000 req/s of short
//! streaming completions, and 150 concurrent streaming requests with 220 KB prompts.
//! The simulator runs at `--speedup 1000` so its own latency is near zero and the
//! difference is the gateway's (parse, schedule, forward). Everything shares this
//! machine's cores with the load generator, so the figures include that contention.
//! A benchmark, not a test: it prints medians and tails and asserts nothing. Run with
//! `cargo bench --bench gateway_overhead [-- --seconds N]`.

use std::sync::Arc;

#[path = "support/load.rs"]
mod load;

use load::{Summary, closed_loop, free_port, igw, open_loop, wait_ready};

fn print_pair(title: &str, direct: &Summary, gateway: &Summary) {
    println!("{title}");
    println!(
        "  {:<10} {:>8} {:>7} {:>10} {:>10} {:>10}",
        "path", "ok", "failed", "ttft p50", "p90", "p99 (ms)"
    );
    for (name, s) in [("direct", direct), ("gateway", gateway)] {
        println!(
            "  {:<10} {:>8} {:>7} {:>10.3} {:>10.3} {:>10.3}",
            name, s.ok, s.failed, s.p50, s.p90, s.p99
        );
    }
    println!(
        "  added by the gateway: p50 {:+.3} ms, p90 {:+.3} ms, p99 {:+.3} ms",
        gateway.p50 - direct.p50,
        gateway.p90 - direct.p90,
        gateway.p99 - direct.p99
    );
}

fn main() {
    let mut seconds = 10.0;
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--seconds") {
        seconds = argv
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(seconds);
    }
    let (sim_port, proxy_port, metrics_port) = (free_port(), free_port(), free_port());
    let (grpc_port, health_port) = (free_port(), free_port());
    let _sim = igw(&[
        "sim",
        "serve",
        "--model",
        "m",
        "--port",
        &sim_port.to_string(),
        "--speedup",
        "1000",
        "--max-model-len",
        "131072",
        "--max-num-batched-tokens",
        "131072",
        "--kv-blocks",
        "400000",
    ]);
    let endpoints = format!("127.0.0.1:{sim_port}");
    let _epp = igw(&[
        "epp",
        "run",
        "--endpoints",
        &endpoints,
        "--host",
        "127.0.0.1",
        "--proxy-port",
        &proxy_port.to_string(),
        "--metrics-port",
        &metrics_port.to_string(),
        "--grpc-port",
        &grpc_port.to_string(),
        "--grpc-health-port",
        &health_port.to_string(),
    ]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = reqwest::Client::builder().pool_max_idle_per_host(2048).build().expect("client");
        wait_ready(&client, &format!("http://127.0.0.1:{sim_port}/health")).await;
        wait_ready(&client, &format!("http://127.0.0.1:{metrics_port}/ready")).await;
        let direct = format!("http://127.0.0.1:{sim_port}/v1/completions");
        let gateway = format!("http://127.0.0.1:{proxy_port}/v1/completions");

        let small = Arc::new(
            serde_json::to_vec(&serde_json::json!({
                "model": "m", "prompt": "Summarise the plot of a short story about a lighthouse keeper.",
                "max_tokens": 4, "ignore_eos": true, "stream": true,
            }))
            .expect("json"),
        );
        // Warm both paths (connections, tokenizer) before measuring.
        open_loop(&client, &direct, small.clone(), 200.0, 1.0).await;
        open_loop(&client, &gateway, small.clone(), 200.0, 1.0).await;
        let d = open_loop(&client, &direct, small.clone(), 1000.0, seconds).await;
        let g = open_loop(&client, &gateway, small, 1000.0, seconds).await;
        print_pair(&format!("1,000 req/s open loop, {seconds} s per path, short prompts:"), &d, &g);

        // A ~220 KB body. The prompt is given as token ids (vLLM accepts them) so the
        // simulator does not spend the measurement tokenising; the gateway still reads,
        // parses and hashes all of it.
        let ids: Vec<u32> = (0..36_000u32).map(|i| 10_000 + (i * 7919) % 90_000).collect();
        let big = Arc::new(
            serde_json::to_vec(&serde_json::json!({
                "model": "m", "prompt": ids, "max_tokens": 4, "ignore_eos": true, "stream": true,
            }))
            .expect("json"),
        );
        println!("large prompt body: {} KB", big.len() / 1024);
        let d = closed_loop(&client, &direct, big.clone(), 150, seconds).await;
        let g = closed_loop(&client, &gateway, big, 150, seconds).await;
        print_pair(&format!("150 concurrent, 220 KB prompts, {seconds} s per path:"), &d, &g);
    });
}

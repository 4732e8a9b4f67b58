//! What does the picker cost behind Envoy? The same load goes through Envoy twice:
//! once with igw's ext_proc deciding every request (`deploy/envoy/epp.yaml`, TLS to the
//! picker as deployed), once with Envoy routing straight to the replica, no ext_proc.
//!
//! - Added time to first token, p50 and p99, at 1 KB, 16 KB and 220 KB bodies (8
//!   requests in flight).
//! - At 150 concurrent streams of 220 KB bodies: completed requests per second through
//!   each path, and their ratio (GIE reported 723–1,141 ms mean TTFT there).
//! - The picker's own CPU time per request (from `/proc/<pid>/stat`, its idle scrape
//!   cost subtracted) for prompts of about 1k, 16k and 100k tokens with the default
//!   profile: llm-d's EPP needs 0.5–1 CPU-second per request at 100k tokens
//!   (llm-d-facts §4.3).
//!
//! The simulator runs at `--speedup 1000` so its own latency is near zero; the picker,
//! the simulator, both Envoys and the load generator share this machine's cores, so
//! the figures include that contention. A benchmark, not a test: it prints and asserts
//! nothing. `cargo bench --bench envoy_path [-- --seconds N]`; needs Envoy (see
//! `load::envoy_binary`).

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/load.rs"]
mod load;

use load::{Summary, closed_loop, cpu_seconds, envoy, free_port, igw, wait_ready};

/// `deploy/envoy/epp.yaml` with its ports set.
fn with_ext_proc(admin: u16, listen: u16, epp: u16) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/envoy/epp.yaml"),
    )
    .expect("deploy/envoy/epp.yaml");
    text.replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("port_value: 8081", &format!("port_value: {listen}"))
        .replace("port_value: 9002", &format!("port_value: {epp}"))
}

/// Envoy with the same listener settings, routing straight to the replica.
fn direct(admin: u16, listen: u16, sim: u16) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          stream_idle_timeout: 0s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: replica, timeout: 0s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: replica
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: replica
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {sim} }} }} }}
"#
    )
}

/// A streaming completion whose prompt is about `bytes` long (`tag` keeps prompts
/// apart, so the prefix index does not make them free).
fn body(bytes: usize, tag: usize) -> Arc<Vec<u8>> {
    let word = "lorem ipsum dolor sit amet ";
    let prompt = format!("request {tag}: {}", word.repeat(bytes / word.len()));
    Arc::new(
        serde_json::to_vec(&serde_json::json!({
            "model": "m", "prompt": prompt, "max_tokens": 4, "ignore_eos": true, "stream": true,
        }))
        .expect("json"),
    )
}

fn print_pair(title: &str, direct: &Summary, picked: &Summary, seconds: f64) {
    println!("{title}");
    for (name, s) in [("direct", direct), ("ext_proc", picked)] {
        println!(
            "  {:<9} {:>6} ok {:>4} failed  {:>7.1} req/s  ttft p50 {:>8.2} ms  p99 {:>8.2} ms",
            name,
            s.ok,
            s.failed,
            s.ok as f64 / seconds,
            s.p50,
            s.p99
        );
    }
    println!(
        "  added by the picker: p50 {:+.2} ms, p99 {:+.2} ms; throughput ratio {:.2}",
        picked.p50 - direct.p50,
        picked.p99 - direct.p99,
        picked.ok as f64 / direct.ok.max(1) as f64
    );
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let seconds: f64 = argv
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| argv.get(i + 1)?.parse().ok())
        .unwrap_or(10.0);
    let (sim_port, grpc, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let (admin_a, listen_a, admin_b, listen_b) =
        (free_port(), free_port(), free_port(), free_port());
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
        "262144",
        "--max-num-batched-tokens",
        "262144",
        "--kv-blocks",
        "2000000",
    ]);
    let epp = igw(&[
        "epp",
        "run",
        "--endpoints",
        &format!("127.0.0.1:{sim_port}"),
        "--host",
        "127.0.0.1",
        "--no-proxy",
        "--grpc-port",
        &grpc.to_string(),
        "--grpc-health-port",
        &health.to_string(),
        "--metrics-port",
        &metrics.to_string(),
    ]);
    let epp_pid = epp.0.id();
    let _envoy_a = envoy("ext-proc", &with_ext_proc(admin_a, listen_a, grpc));
    let _envoy_b = envoy("direct", &direct(admin_b, listen_b, sim_port));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(2048)
            .build()
            .expect("client");
        wait_ready(&client, &format!("http://127.0.0.1:{metrics}/ready")).await;
        for admin in [admin_a, admin_b] {
            wait_ready(&client, &format!("http://127.0.0.1:{admin}/ready")).await;
        }
        let picked = format!("http://127.0.0.1:{listen_a}/v1/completions");
        let straight = format!("http://127.0.0.1:{listen_b}/v1/completions");
        // Warm both paths (connections, TLS, tokenizer).
        closed_loop(&client, &straight, body(1024, 0), 4, 1.0).await;
        closed_loop(&client, &picked, body(1024, 0), 4, 1.0).await;

        for (label, bytes) in [("1 KB", 1024), ("16 KB", 16 << 10), ("220 KB", 220 << 10)] {
            let d = closed_loop(&client, &straight, body(bytes, 1), 8, seconds).await;
            let p = closed_loop(&client, &picked, body(bytes, 1), 8, seconds).await;
            print_pair(&format!("{label} bodies, 8 in flight, {seconds} s per path:"), &d, &p, seconds);
        }
        let d = closed_loop(&client, &straight, body(220 << 10, 2), 150, seconds).await;
        let p = closed_loop(&client, &picked, body(220 << 10, 2), 150, seconds).await;
        print_pair(&format!("150 concurrent 220 KB streams, {seconds} s per path:"), &d, &p, seconds);

        // The picker's CPU per request: its idle cost (scraping) over a window first,
        // then a run of distinct requests; prompts of ~4 bytes per token.
        println!("picker CPU per request (default profile), {seconds} s windows:");
        let idle_start = (cpu_seconds(epp_pid), Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let idle_rate = (cpu_seconds(epp_pid) - idle_start.0) / idle_start.1.elapsed().as_secs_f64();
        println!("  idle: {:.3} cores (scraping)", idle_rate);
        for (label, tokens) in [("1k", 1_000), ("16k", 16_000), ("100k", 100_000)] {
            let started = (cpu_seconds(epp_pid), Instant::now());
            let mut sent = 0usize;
            let mut tasks = Vec::new();
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            for worker in 0..4 {
                let (client, url) = (client.clone(), picked.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0usize;
                    while Instant::now() < deadline {
                        let b = body(tokens * 4, 1_000_000 * worker + n);
                        let ok = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(b.as_ref().clone())
                            .send()
                            .await
                            .map(|r| r.status().is_success())
                            .unwrap_or(false);
                        if ok {
                            n += 1;
                        }
                    }
                    n
                }));
            }
            for t in tasks {
                sent += t.await.unwrap_or(0);
            }
            let wall = started.1.elapsed().as_secs_f64();
            let busy = cpu_seconds(epp_pid) - started.0 - idle_rate * wall;
            println!(
                "  {label:>4}-token prompts: {sent} requests, {:.3} ms CPU each ({:.4} cores per req/s)",
                busy / sent.max(1) as f64 * 1e3,
                busy / sent.max(1) as f64
            );
        }
    });
}

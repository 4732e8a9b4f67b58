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

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Mutex;

/// Kills a child process when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn igw(args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_igw"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start igw"),
    )
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends one streaming request; returns its time to the first body chunk, or None
/// if it failed.
async fn ttft(client: &reqwest::Client, url: &str, body: &Arc<Vec<u8>>) -> Option<Duration> {
    let sent = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.as_ref().clone())
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let mut stream = resp.bytes_stream();
    let first = stream.next().await?.ok()?;
    let at = sent.elapsed();
    drop(first);
    while let Some(chunk) = stream.next().await {
        chunk.ok()?;
    }
    Some(at)
}

struct Summary {
    ok: usize,
    failed: usize,
    p50: f64,
    p90: f64,
    p99: f64,
}

fn summarise(mut ms: Vec<f64>, failed: usize) -> Summary {
    ms.sort_by(f64::total_cmp);
    let q = |q: f64| {
        if ms.is_empty() {
            return f64::NAN;
        }
        ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1]
    };
    Summary {
        ok: ms.len(),
        failed,
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
    }
}

/// TTFTs in ms of the requests that succeeded, and the number that failed.
type Results = Arc<Mutex<(Vec<f64>, usize)>>;

/// Sends one request and records its outcome.
async fn measure(client: &reqwest::Client, url: &str, body: &Arc<Vec<u8>>, results: &Results) {
    let r = ttft(client, url, body).await;
    let mut g = results.lock().await;
    match r {
        Some(d) => g.0.push(d.as_secs_f64() * 1e3),
        None => g.1 += 1,
    }
}

/// Waits for every sender, then summarises what they recorded.
async fn finish(tasks: Vec<tokio::task::JoinHandle<()>>, results: &Results) -> Summary {
    for t in tasks {
        let _ = t.await;
    }
    let (ms, failed) = std::mem::take(&mut *results.lock().await);
    summarise(ms, failed)
}

/// Open loop: one request every `1/rate` s for `seconds`, whatever the responses do.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    body: Arc<Vec<u8>>,
    rate: f64,
    seconds: f64,
) -> Summary {
    let results: Results = Arc::default();
    let total = (rate * seconds) as usize;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let (client, url, body, results) = (
            client.clone(),
            url.to_string(),
            body.clone(),
            results.clone(),
        );
        tasks.push(tokio::spawn(async move {
            measure(&client, &url, &body, &results).await;
        }));
    }
    finish(tasks, &results).await
}

/// Closed loop: `concurrency` workers, each sending back to back for `seconds`.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    body: Arc<Vec<u8>>,
    concurrency: usize,
    seconds: f64,
) -> Summary {
    let results: Results = Arc::default();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, results) = (
            client.clone(),
            url.to_string(),
            body.clone(),
            results.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                measure(&client, &url, &body, &results).await;
            }
        }));
    }
    finish(tasks, &results).await
}

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

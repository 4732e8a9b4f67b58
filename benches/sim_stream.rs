//! Can one `igw sim serve --speedup 10` process carry 1,000 concurrent streaming
//! requests and still step at the cadence its latency model prescribes?
//!
//! Starts the real `igw` binary on a free loopback port, keeps `--concurrency`
//! streaming completions in flight (each `--prompt-words` words, `--output-tokens`
//! tokens with `ignore_eos`), and over a measurement window reads the server's own
//! counters: `igw_sim_step_modelled_seconds_total` (engine seconds the model charged),
//! `igw_sim_steps_total`, and the `igw_sim_step_lag_seconds` histogram. Cadence =
//! modelled engine seconds / (wall seconds × speedup): 1.0 means the steps followed each
//! other exactly as modelled. A benchmark, not a test: it prints numbers and asserts
//! nothing. Run with `cargo bench --bench sim_stream [-- --concurrency N ...]`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

struct Args {
    concurrency: usize,
    speedup: f64,
    warmup: Duration,
    window: Duration,
    prompt_words: usize,
    output_tokens: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        concurrency: 1000,
        speedup: 10.0,
        warmup: Duration::from_secs(5),
        window: Duration::from_secs(20),
        prompt_words: 150,
        output_tokens: 200,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |v: &str| {
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value {v:?}"))
        };
        match argv[i].as_str() {
            "--concurrency" => a.concurrency = num(&value) as usize,
            "--speedup" => a.speedup = num(&value),
            "--warmup-s" => a.warmup = Duration::from_secs_f64(num(&value)),
            "--window-s" => a.window = Duration::from_secs_f64(num(&value)),
            "--prompt-words" => a.prompt_words = num(&value) as usize,
            "--output-tokens" => a.output_tokens = num(&value) as usize,
            // cargo bench passes `--bench`; ignore what is not ours.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// Kills the server when the benchmark ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server-side counters this benchmark reads.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    steps: f64,
    modelled_s: f64,
    generation_tokens: f64,
    lag_count: f64,
    lag_sum: f64,
}

fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Cumulative lag buckets as (upper bound, count).
fn lag_buckets(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| l.starts_with("igw_sim_step_lag_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// The bucket bound at or under which `q` of the window's observations fell.
fn quantile(start: &[(f64, f64)], end: &[(f64, f64)], q: f64) -> f64 {
    let total = end.last().map_or(0.0, |b| b.1) - start.last().map_or(0.0, |b| b.1);
    for (i, (le, count)) in end.iter().enumerate() {
        let before = start.get(i).map_or(0.0, |b| b.1);
        if count - before >= q * total {
            return *le;
        }
    }
    f64::INFINITY
}

async fn scrape(client: &reqwest::Client, base: &str) -> (Counters, Vec<(f64, f64)>) {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body");
    let c = Counters {
        steps: sample(&text, "igw_sim_steps_total"),
        modelled_s: sample(&text, "igw_sim_step_modelled_seconds_total"),
        generation_tokens: sample(&text, "vllm:generation_tokens_total"),
        lag_count: sample(&text, "igw_sim_step_lag_seconds_count"),
        lag_sum: sample(&text, "igw_sim_step_lag_seconds_sum"),
    };
    (c, lag_buckets(&text))
}

fn main() {
    let args = parse_args();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_igw"))
            .args(["sim", "serve", "--model", "bench-model", "--port"])
            .arg(port.to_string())
            .args(["--speedup", &args.speedup.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start igw sim serve"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(args, base));
}

async fn run(args: Args, base: String) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("client");
    let ready = Instant::now();
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (client, base) = (client.clone(), base.clone());
        let (stop, frames, completed, errors) = (
            stop.clone(),
            frames.clone(),
            completed.clone(),
            errors.clone(),
        );
        let prompt: String = (0..args.prompt_words)
            .map(|w| format!("w{worker}x{w} "))
            .collect();
        let body = serde_json::json!({
            "model": "bench-model", "prompt": prompt, "stream": true,
            "max_tokens": args.output_tokens, "ignore_eos": true,
        });
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = client
                    .post(format!("{base}/v1/completions"))
                    .json(&body)
                    .send()
                    .await;
                let Ok(resp) = resp else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let mut stream = resp.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let Ok(chunk) = chunk else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    };
                    let n = chunk.windows(6).filter(|w| w == b"data: ").count();
                    frames.fetch_add(n as u64, Ordering::Relaxed);
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(args.warmup).await;
    let (c0, b0) = scrape(&client, &base).await;
    let (f0, t0) = (frames.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(args.window).await;
    let (c1, b1) = scrape(&client, &base).await;
    let (f1, wall) = (frames.load(Ordering::Relaxed), t0.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }

    let steps = c1.steps - c0.steps;
    let modelled = c1.modelled_s - c0.modelled_s;
    let cadence = modelled / (wall * args.speedup);
    let lag_mean = (c1.lag_sum - c0.lag_sum) / (c1.lag_count - c0.lag_count).max(1.0);
    println!(
        "sim_stream: {} concurrent streams, --speedup {}, {:.1} s window",
        args.concurrency, args.speedup, wall
    );
    println!("  steps                     {steps:.0}");
    println!(
        "  modelled step, mean       {:.2} ms engine time",
        modelled / steps * 1e3
    );
    println!(
        "  observed step, mean       {:.2} ms engine time (wall × speedup)",
        wall * args.speedup / steps * 1e3
    );
    println!("  cadence (modelled/observed) {cadence:.3}");
    println!(
        "  delivery lag              mean {:.2} ms, p50 <= {} ms, p99 <= {} ms (wall)",
        lag_mean * 1e3,
        quantile(&b0, &b1, 0.5) * 1e3,
        quantile(&b0, &b1, 0.99) * 1e3
    );
    println!(
        "  tokens                    {:.0}/s generated, {:.0}/s SSE frames received",
        (c1.generation_tokens - c0.generation_tokens) / wall,
        (f1 - f0) as f64 / wall
    );
    println!(
        "  requests                  {} completed, {} errors",
        completed.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
}

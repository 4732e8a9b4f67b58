//! A soak of the standalone gateway: mixed traffic for ten minutes (by default) through
//! `igw epp run` in front of four `igw sim serve` replicas, one replica killed
//! (SIGKILL) and restarted on its port every 30 s, and a hostile client beside it all
//! (request targets that are not origin-form, admin-route probes, floods of model
//! names, heads sent slowly, silent sockets).
//!
//! It reports what happened to every request: served; refused before any endpoint
//! (5xx by cause, from GIE's error text); and streams cut mid-way by a dying replica,
//! which no router can save once tokens have gone out. The goal is that no request
//! is lost that a healthy replica could have served: zero refusals. It also reports the
//! gateway's RSS at the start and the end. A benchmark, not a test: it prints and
//! asserts nothing. `cargo bench --bench soak [-- --minutes M]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

#[path = "support/load.rs"]
mod load;

use load::{Proc, free_port, igw, wait_ready};

const REPLICAS: usize = 4;
/// Requests per second of real traffic.
const RATE: f64 = 40.0;
const KILL_EVERY: Duration = Duration::from_secs(30);
/// How long a killed replica stays down.
const DOWN_FOR: Duration = Duration::from_secs(5);

fn replica(port: u16) -> Proc {
    igw(&[
        "sim",
        "serve",
        "--model",
        "m",
        "--port",
        &port.to_string(),
        "--speedup",
        "20",
        "--seed",
        &port.to_string(),
    ])
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Outcomes by kind.
#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<String, u64>,
}

/// One real request: a streaming or plain completion or chat, a few tokens.
async fn send(client: &reqwest::Client, url: &str, i: u64) -> String {
    let stream = i.is_multiple_of(2);
    let (path, body) = if i.is_multiple_of(3) {
        (
            "/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": format!("soak {i}")}], "max_tokens": 16, "stream": stream}),
        )
    } else {
        (
            "/v1/completions",
            serde_json::json!({"model": "m", "prompt": format!("soak request {i}"), "max_tokens": 16, "stream": stream}),
        )
    };
    let resp = match client.post(format!("{url}{path}")).json(&body).send().await {
        Ok(r) => r,
        Err(e) => {
            return format!(
                "client error: {}",
                if e.is_connect() { "connect" } else { "other" }
            );
        }
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let text = resp.text().await.unwrap_or_default();
        // GIE's text names the cause: "inference error: <Code> - <message>".
        let cause = text
            .split(" - ")
            .nth(1)
            .unwrap_or(&text)
            .chars()
            .take(60)
            .collect::<String>();
        return format!("{status} {cause}");
    }
    if !stream {
        return match resp.bytes().await {
            Ok(_) => "served".into(),
            Err(_) => "cut mid-body".into(),
        };
    }
    let mut body = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(c) => body.extend_from_slice(&c),
            Err(_) => return "stream cut (connection)".into(),
        }
    }
    if body.windows(9).any(|w| w == b"{\"error\":") {
        "stream cut (error event)".into()
    } else {
        "served".into()
    }
}

/// Attacks the gateway until `stop`: a mix of the hostile shapes, a few per second.
async fn hostile(addr: String, stop: Arc<AtomicBool>, attacks: Arc<AtomicU64>) {
    let client = reqwest::Client::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        attacks.fetch_add(1, Ordering::Relaxed);
        match i % 5 {
            0 => {
                if let Ok(mut c) = tokio::net::TcpStream::connect(&addr).await {
                    let _ = c.write_all(b"OPTIONS * HTTP/1.1\r\nhost: g\r\n\r\n").await;
                }
            }
            1 => {
                let _ = client
                    .post(format!("http://{addr}/v1/load_lora_adapter"))
                    .json(&serde_json::json!({"lora_name": "x", "lora_path": "/x"}))
                    .send()
                    .await;
            }
            2 => {
                let name = format!("{}-{i}", "m".repeat(2048));
                let _ = client
                    .post(format!("http://{addr}/v1/completions"))
                    .json(&serde_json::json!({"model": name, "prompt": "x", "max_tokens": 1}))
                    .send()
                    .await;
            }
            3 => {
                // A head sent slowly, then abandoned.
                if let Ok(mut c) = tokio::net::TcpStream::connect(&addr).await {
                    let _ = c.write_all(b"POST /v1/completions HTTP/1.1\r\n").await;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(20)).await;
                        drop(c);
                    });
                }
            }
            _ => {
                // Silent sockets.
                let mut held = Vec::new();
                for _ in 0..20 {
                    if let Ok(c) = tokio::net::TcpStream::connect(&addr).await {
                        held.push(c);
                    }
                }
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(15)).await;
                    drop(held);
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let minutes: f64 = argv
        .iter()
        .position(|a| a == "--minutes")
        .and_then(|i| argv.get(i + 1)?.parse().ok())
        .unwrap_or(10.0);
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let replicas: Vec<Option<Proc>> = ports.iter().map(|&p| Some(replica(p))).collect();
    let (proxy, metrics, grpc, health) = (free_port(), free_port(), free_port(), free_port());
    let endpoints = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let gateway = igw(&[
        "epp",
        "run",
        "--endpoints",
        &endpoints,
        "--host",
        "127.0.0.1",
        "--proxy-port",
        &proxy.to_string(),
        "--metrics-port",
        &metrics.to_string(),
        "--grpc-port",
        &grpc.to_string(),
        "--grpc-health-port",
        &health.to_string(),
        "--preset",
        "igw-default",
    ]);
    let gateway_pid = gateway.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = reqwest::Client::new();
        for p in &ports {
            wait_ready(&client, &format!("http://127.0.0.1:{p}/health")).await;
        }
        wait_ready(&client, &format!("http://127.0.0.1:{metrics}/ready")).await;
        let rss_start = rss_kib(gateway_pid);
        let url = format!("http://127.0.0.1:{proxy}");
        let stop = Arc::new(AtomicBool::new(false));
        let attacks = Arc::new(AtomicU64::new(0));
        let attacker = tokio::spawn(hostile(format!("127.0.0.1:{proxy}"), stop.clone(), attacks.clone()));
        let replicas = Arc::new(Mutex::new(replicas));
        let killer = {
            let (replicas, stop, ports) = (replicas.clone(), stop.clone(), ports.clone());
            tokio::spawn(async move {
                let mut k = 0;
                let mut kills = 0u64;
                loop {
                    tokio::time::sleep(KILL_EVERY).await;
                    if stop.load(Ordering::Relaxed) {
                        return kills;
                    }
                    let victim = k % REPLICAS;
                    k += 1;
                    kills += 1;
                    // Dropping the Proc kills the process (SIGKILL).
                    replicas.lock().await[victim] = None;
                    tokio::time::sleep(DOWN_FOR).await;
                    replicas.lock().await[victim] = Some(replica(ports[victim]));
                }
            })
        };
        let tally = Arc::new(Mutex::new(Tally::default()));
        let start = Instant::now();
        let total = (RATE * minutes * 60.0) as u64;
        let mut tasks = Vec::new();
        for i in 0..total {
            tokio::time::sleep_until(tokio::time::Instant::from_std(start + Duration::from_secs_f64(i as f64 / RATE))).await;
            let (client, url, tally) = (client.clone(), url.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                let kind = send(&client, &url, i).await;
                *tally.lock().await.by_kind.entry(kind).or_default() += 1;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        stop.store(true, Ordering::Relaxed);
        let _ = attacker.await;
        killer.abort();
        let rss_end = rss_kib(gateway_pid);
        let t = tally.lock().await;
        println!("soak: {minutes} min, {total} requests at {RATE} req/s, a replica killed every {KILL_EVERY:?} and down for {DOWN_FOR:?}, {} hostile actions", attacks.load(Ordering::Relaxed));
        for (kind, n) in &t.by_kind {
            println!("  {n:>7}  {kind}");
        }
        let refused: u64 = t
            .by_kind
            .iter()
            .filter(|(k, _)| k.as_str() != "served" && !k.starts_with("stream cut") && k.as_str() != "cut mid-body")
            .map(|(_, n)| n)
            .sum();
        println!("  requests lost that a healthy replica could have served: {refused}");
        println!("  gateway RSS: {} MiB at the start, {} MiB at the end", rss_start / 1024, rss_end / 1024);
        let m = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics")).await.unwrap().text().await.unwrap();
        for l in m.lines().filter(|l| l.starts_with("igw_epp_request_retries_total") || l.starts_with("igw_epp_responses_broken_total") || l.starts_with("igw_epp_outlier_ejections_total")) {
            println!("  {l}");
        }
        drop(replicas);
    });
    drop(gateway);
}

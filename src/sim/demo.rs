//! `igw sim demo`: start a pool of simulated vLLM replicas in-process, stream chat
//! requests through them, and print what a client and a router would see.
//!
//! A quick, self-contained look at the simulator: time to first token, tokens, prefix
//! cache hits per request, then each replica's queue, KV and cache counters scraped
//! from its real `/metrics`. Everything runs on loopback ports chosen by the OS and
//! stops when the demo ends.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use super::options::EngineOptions;
use super::server::{Listen, SimServerConfig, spawn};

/// `igw sim demo` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoOptions {
    /// Simulated replicas in the pool.
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Chat requests to send, spread round-robin over the replicas.
    #[arg(long, default_value_t = 16)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Tokens to generate per request.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Run the simulated servers this many times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Model name the replicas serve.
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    pub model: String,
    #[command(flatten)]
    pub engine: EngineOptions,
}

/// What one request measured.
struct Outcome {
    replica: usize,
    ttft_ms: f64,
    e2e_ms: f64,
    tokens: usize,
    cached_tokens: u64,
}

/// Two system prompts shared by every other request, so repeats hit the prefix cache.
const SYSTEM_PROMPTS: [&str; 2] = [
    "You are a careful assistant for a hardware store. Answer in two sentences, name the \
     aisle where the item can be found, and never recommend a competitor's product.",
    "You are a travel planner. Suggest one itinerary per question, list the trains or \
     flights involved with their durations, and keep the total budget in euros.",
];

impl DemoOptions {
    /// Runs the demo and returns the report to print.
    pub async fn run(&self) -> anyhow::Result<String> {
        anyhow::ensure!(self.replicas > 0, "--replicas must be at least 1");
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        let mut config = SimServerConfig::new(self.model.clone(), self.engine.engine_config()?);
        config.speedup = self.speedup;
        let pool = spawn(config, Listen::local(self.replicas)).await?;
        let urls = pool.base_urls();
        let client = reqwest::Client::new();
        let started = Instant::now();
        let outcomes: Vec<anyhow::Result<Outcome>> = futures::stream::iter(0..self.requests)
            .map(|i| {
                let replica = i % urls.len();
                let url = format!("{}/v1/chat/completions", urls[replica]);
                let body = json!({
                    "model": self.model,
                    "stream": true,
                    "stream_options": {"include_usage": true},
                    "max_tokens": self.max_tokens,
                    "ignore_eos": true,
                    "messages": [
                        {"role": "system", "content": SYSTEM_PROMPTS[(i / urls.len()) % 2]},
                        {"role": "user", "content": format!("Question number {i}: what do I need?")},
                    ],
                });
                let client = client.clone();
                async move { stream_one(&client, &url, &body, replica).await }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        let wall = started.elapsed();

        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} replicas of {} ({} profile), {} streaming chat requests, {} at a time:\n",
            urls.len(),
            self.model,
            self.engine.profile()?.name,
            self.requests,
            self.concurrency
        );
        let _ = writeln!(
            out,
            "{:>4}  {:<24}  {:>8}  {:>8}  {:>6}  {:>6}",
            "req", "replica", "ttft_ms", "e2e_ms", "tokens", "cached"
        );
        for (i, o) in outcomes.iter().enumerate() {
            match o {
                Ok(o) => {
                    let _ = writeln!(
                        out,
                        "{i:>4}  {:<24}  {:>8.1}  {:>8.1}  {:>6}  {:>6}",
                        urls[o.replica], o.ttft_ms, o.e2e_ms, o.tokens, o.cached_tokens
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "{i:>4}  error: {e:#}");
                }
            }
        }
        let _ = writeln!(
            out,
            "\nall done in {:.2} s. What each replica's /metrics says:\n",
            wall.as_secs_f64()
        );
        for url in &urls {
            let text = client
                .get(format!("{url}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            let get = |name: &str| first_value(&text, name);
            let _ = writeln!(
                out,
                "{url}: running {} waiting {} kv_usage {:.3} prefix_hits {}/{} tokens, generated {}",
                get("vllm:num_requests_running"),
                get("vllm:num_requests_waiting"),
                get("vllm:kv_cache_usage_perc"),
                get("vllm:prefix_cache_hits_total"),
                get("vllm:prefix_cache_queries_total"),
                get("vllm:generation_tokens_total"),
            );
        }
        pool.shutdown().await?;
        Ok(out)
    }
}

/// Sends one streaming chat request and times its chunks.
async fn stream_one(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    replica: usize,
) -> anyhow::Result<Outcome> {
    let sent = Instant::now();
    let resp = client.post(url).json(body).send().await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "{url} answered {}",
        resp.status()
    );
    let mut stream = resp.bytes_stream();
    let (mut ttft, mut tokens, mut cached, mut buf) = (None::<Duration>, 0, 0, Vec::new());
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        // SSE frames end with a blank line; parse the complete ones.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let Some(data) = frame.strip_prefix(b"data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            if v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
            {
                ttft.get_or_insert_with(|| sent.elapsed());
                tokens += 1;
            }
            if let Some(c) = v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64() {
                cached = c;
            }
        }
    }
    Ok(Outcome {
        replica,
        ttft_ms: ttft.unwrap_or_default().as_secs_f64() * 1000.0,
        e2e_ms: sent.elapsed().as_secs_f64() * 1000.0,
        tokens,
        cached_tokens: cached,
    })
}

/// The value of a metric's first sample in Prometheus text, as written.
fn first_value<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("?")
}

//! What the simulation takes (the requests, the pool) and what it gives back (one
//! record per request, per-engine totals, the run's report).

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::bench::recorder::Failure;
use crate::epp::datastore::DEFAULT_STALENESS_THRESHOLD;
use crate::epp::scrape::DEFAULT_REFRESH_INTERVAL;
use crate::sim::engine::EngineConfig;
use crate::sim::metrics::FinishReason;

/// One request of the workload. Its id in the results is its index in the input.
#[derive(Clone, Debug, PartialEq)]
pub struct DesRequest {
    /// When the client sends it, since the run's start.
    pub arrival: Duration,
    /// Prompt token ids; at least one.
    pub prompt: Vec<u32>,
    /// The token ids the engine will generate; at least one.
    pub output: Vec<u32>,
    /// The model the request names when it is not the default: a LoRA adapter, or the
    /// pool's own model ([`PoolConfig::model`]) for base-model traffic beside adapters.
    /// It is also the model the EPP routes on and the request's per-adapter report.
    pub lora: Option<Arc<str>>,
    /// Reported when the last output token is produced.
    pub finish_reason: FinishReason,
    /// Bytes of the HTTP body a live client would send ([`crate::bench::wire`]), which
    /// the EPP reads as the request's size; `None` counts the prompt text alone.
    pub body_len: Option<usize>,
    /// The bytes the EPP's prefix affinity hashes, as the live parser takes them from
    /// the body ([`crate::bench::wire::prefix_bytes`]: a completions request's prompt
    /// text, a chat request's `messages` JSON). `None` decodes the text of `prompt`
    /// for each pick, which costs a few µs a request.
    pub prefix_bytes: Option<Arc<[u8]>>,
    /// The earlier request (an index into the same input) whose end this one waits
    /// for: a chat session's next turn. It is then sent at `arrival` or when that one
    /// ends, whichever is later, and its record's `arrival` is when it was sent.
    pub after: Option<u32>,
}

/// The pool and how it is observed.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// One engine per endpoint, in endpoint order.
    pub engines: Vec<EngineConfig>,
    /// Time between scrapes (`--refresh-metrics-interval`).
    pub scrape_interval: Duration,
    /// Metrics older than this take an endpoint out of the EPP's candidates.
    pub staleness_threshold: Duration,
    /// The base model requests without an adapter ask for.
    pub model: String,
    /// Seeds the router's RNG (tie-breaks, random picks).
    pub seed: u64,
    /// Keep every token's time per request ([`DesReport::token_times`]), for the
    /// per-request report; off by default, as it costs memory per token.
    pub keep_token_times: bool,
}

impl PoolConfig {
    /// `n` copies of `engine`, engine `i` seeded `engine.seed + i` so their step noise
    /// differs; GIE's scrape interval and staleness threshold.
    pub fn replicas(engine: &EngineConfig, n: usize, model: &str, seed: u64) -> PoolConfig {
        PoolConfig {
            engines: (0..n)
                .map(|i| EngineConfig {
                    seed: engine.seed.wrapping_add(i as u64),
                    ..engine.clone()
                })
                .collect(),
            scrape_interval: DEFAULT_REFRESH_INTERVAL,
            staleness_threshold: DEFAULT_STALENESS_THRESHOLD,
            model: model.to_string(),
            seed,
            keep_token_times: false,
        }
    }
}

/// What happened to one request, in virtual time since the run's start.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// The request's index in the input.
    pub id: u64,
    /// The endpoint it was sent to; `None` when the router found none.
    pub endpoint: Option<usize>,
    pub arrival: Duration,
    /// When its first token was visible; `None` if it failed.
    pub first_token: Option<Duration>,
    /// When it finished or failed; `None` only if the run ended without it (a bug).
    pub done: Option<Duration>,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    /// Prompt tokens served from the engine's prefix cache.
    pub cached_tokens: u32,
    /// `None` if it failed.
    pub finish_reason: Option<FinishReason>,
    /// Why it failed, as the gateway or the simulator would have answered live.
    pub error: Option<Failure>,
}

/// One engine's totals over the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineTotals {
    /// Requests it finished.
    pub requests: u64,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub steps: u64,
    /// Sum of its step durations.
    pub busy: Duration,
    pub preemptions: u64,
    pub lora_loads: u64,
    /// Requests still inside it when the run ended; 0 unless something is wrong.
    pub left_over: usize,
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct DesReport {
    /// One per input request, in input order.
    pub records: Vec<RequestRecord>,
    /// One per engine, in endpoint order.
    pub engines: Vec<EngineTotals>,
    /// The time of the last event.
    pub end: Duration,
    /// Scrape ticks run.
    pub scrapes: u64,
    /// `Finished` events seen (one per request the engines accepted).
    pub finished: usize,
    /// Gaps between consecutive visible tokens of each request, microseconds (the
    /// inter-token latency a streaming client would see).
    pub inter_token: Histogram<u64>,
    /// The same for the requests of each LoRA adapter, adapters in name order (none
    /// without adapters).
    pub inter_token_by_adapter: Vec<(Arc<str>, Histogram<u64>)>,
    /// Per request, in input order: when each of its tokens became visible. Empty
    /// unless [`PoolConfig::keep_token_times`].
    pub token_times: Vec<Vec<Duration>>,
}

/// A histogram of inter-token gaps: 1 µs to ~2.8 hours at 3 significant digits.
pub(super) fn gap_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("static bounds are valid")
}

/// Why a run could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DesError {
    #[error("the pool has no engines")]
    NoEngines,
    #[error("the scrape interval must be greater than 0")]
    ZeroScrapeInterval,
    #[error("engine {index}: {message}")]
    Engine { index: usize, message: String },
}

//! The engine's counters and histograms, kept as plain numbers, and their rendering as
//! vLLM's Prometheus text (metric names and labels of vLLM v0.26, sim-facts §2).
//!
//! Nothing here reads a clock or does I/O: the engine records values it computed from
//! the times its driver gave it, and the HTTP server renders them on `GET /metrics`
//! with [`render_prometheus`] (in `render`).

mod render;

/// Python's float spelling, for families rendered next to vLLM's (the server's own).
pub(crate) use render::write_float;
pub use render::{
    CacheInfo, PROMETHEUS_CONTENT_TYPE, ReplicaInfo, render_prometheus, render_replica,
};

/// vLLM's TTFT buckets, seconds (`vllm/v1/metrics/loggers.py`, sim-facts §2.3).
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// vLLM's inter-token and time-per-output-token buckets, seconds (sim-facts §2.3).
pub const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// vLLM's request-phase buckets (e2e, queue, inference, prefill, decode), seconds.
pub const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// vLLM's `vllm:iteration_tokens_total` buckets, tokens per step.
pub const ITERATION_TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];

/// vLLM's `vllm:request_params_n` buckets.
pub const PARAMS_N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];

/// vLLM's 1-2-5 token-count buckets up to `max_model_len` (`build_1_2_5_buckets`).
pub fn token_count_buckets(max_model_len: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut exponent = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            let v = m * exponent;
            if v > max_model_len as f64 {
                return out;
            }
            out.push(v);
        }
        exponent *= 10.0;
    }
}

/// A cumulative Prometheus histogram with fixed upper bounds.
#[derive(Clone, Debug)]
pub struct Histogram {
    /// Upper bounds, ascending; `+Inf` is implicit.
    bounds: Vec<f64>,
    /// Per-bucket counts (not cumulative); the last entry is the `+Inf` bucket.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
    /// The last value observed and its bucket. One engine step gives every running
    /// request the same inter-token latency, so most observations repeat the last
    /// one and skip the bucket search.
    last: Option<(f64, usize)>,
}

/// Equal when the exposed state is: the lookup memo is not part of it.
impl PartialEq for Histogram {
    fn eq(&self, other: &Histogram) -> bool {
        self.bounds == other.bounds
            && self.counts == other.counts
            && self.sum == other.sum
            && self.count == other.count
    }
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
            last: None,
        }
    }

    /// Records one observation (Prometheus `le` semantics: a value equal to a bound
    /// falls in that bound's bucket).
    pub fn observe(&mut self, value: f64) {
        let i = match self.last {
            Some((v, i)) if v == value => i,
            _ => {
                let i = self.bounds.partition_point(|&b| b < value);
                self.last = Some((value, i));
                i
            }
        };
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Cumulative counts per bound, then the `+Inf` total, as Prometheus exposes them.
    pub fn cumulative(&self) -> impl Iterator<Item = u64> + '_ {
        self.counts.iter().scan(0u64, |acc, c| {
            *acc += c;
            Some(*acc)
        })
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Why a request finished, as vLLM's `finished_reason` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// The model produced its end-of-sequence token.
    Stop,
    /// The request reached `max_tokens`.
    Length,
    /// The client went away or the request was cancelled.
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }

    pub const ALL: [FinishReason; 3] = [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::Abort,
    ];
}

/// Everything the engine counts, in vLLM's units (tokens, seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineMetrics {
    pub prompt_tokens_total: u64,
    /// Of the prompt tokens, those served from the prefix cache (vLLM's
    /// `vllm:prompt_tokens_cached` and the `local_cache_hit` source).
    pub prompt_tokens_cached_total: u64,
    /// Of the prompt tokens, those computed (the `local_compute` source).
    pub prompt_tokens_local_compute_total: u64,
    pub generation_tokens_total: u64,
    /// Prompt tokens looked up in the prefix cache when requests were admitted.
    pub prefix_cache_queries_total: u64,
    /// Of those, tokens found cached.
    pub prefix_cache_hits_total: u64,
    pub num_preemptions_total: u64,
    /// Finished requests by reason, indexed like [`FinishReason::ALL`].
    pub request_success_total: [u64; 3],
    pub time_to_first_token_seconds: Histogram,
    pub inter_token_latency_seconds: Histogram,
    pub request_time_per_output_token_seconds: Histogram,
    pub e2e_request_latency_seconds: Histogram,
    pub request_queue_time_seconds: Histogram,
    pub request_inference_time_seconds: Histogram,
    pub request_prefill_time_seconds: Histogram,
    pub request_decode_time_seconds: Histogram,
    pub request_prompt_tokens: Histogram,
    pub request_generation_tokens: Histogram,
    pub iteration_tokens_total: Histogram,
    /// Per client request, its longest choice, tokens.
    pub request_max_num_generation_tokens: Histogram,
    /// Per client request, its `n`.
    pub request_params_n: Histogram,
    /// Per request, its `max_tokens`.
    pub request_params_max_tokens: Histogram,
    /// Per request, the prompt tokens computed (not served from the prefix cache).
    pub request_prefill_kv_computed_tokens: Histogram,
}

impl EngineMetrics {
    pub fn new(max_model_len: usize) -> EngineMetrics {
        let token_buckets = token_count_buckets(max_model_len);
        EngineMetrics {
            prompt_tokens_total: 0,
            prompt_tokens_cached_total: 0,
            prompt_tokens_local_compute_total: 0,
            generation_tokens_total: 0,
            prefix_cache_queries_total: 0,
            prefix_cache_hits_total: 0,
            num_preemptions_total: 0,
            request_success_total: [0; 3],
            time_to_first_token_seconds: Histogram::new(TTFT_BUCKETS),
            inter_token_latency_seconds: Histogram::new(ITL_BUCKETS),
            request_time_per_output_token_seconds: Histogram::new(ITL_BUCKETS),
            e2e_request_latency_seconds: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_queue_time_seconds: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_inference_time_seconds: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_prefill_time_seconds: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_decode_time_seconds: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_prompt_tokens: Histogram::new(&token_buckets),
            request_generation_tokens: Histogram::new(&token_buckets),
            iteration_tokens_total: Histogram::new(ITERATION_TOKEN_BUCKETS),
            request_max_num_generation_tokens: Histogram::new(&token_buckets),
            request_params_n: Histogram::new(PARAMS_N_BUCKETS),
            request_params_max_tokens: Histogram::new(&token_buckets),
            request_prefill_kv_computed_tokens: Histogram::new(&token_buckets),
        }
    }

    pub fn count_finished(&mut self, reason: FinishReason) {
        let i = FinishReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(2);
        self.request_success_total[i] += 1;
    }
}

/// The engine's instantaneous state, read for the gauges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineGauges {
    pub num_requests_running: usize,
    pub num_requests_waiting: usize,
    /// Of the waiting requests, those held back by the LoRA budget rather than by
    /// capacity (vLLM's `deferred` reason).
    pub num_requests_waiting_deferred: usize,
    /// Fraction of KV blocks in use, 0..=1 (cached-but-free blocks count as free, as in vLLM).
    pub kv_cache_usage_perc: f64,
    /// Adapters of running requests, sorted.
    pub running_lora_adapters: Vec<String>,
    /// Adapters of waiting requests, sorted.
    pub waiting_lora_adapters: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_uses_le_semantics_and_accumulates() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.cumulative().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum(), 6.0);
    }

    #[test]
    fn repeated_values_land_in_their_own_bucket() {
        // Runs of one value (as one engine step gives every request) then a change.
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [1.5, 1.5, 0.5, 0.5, 3.0, 1.5] {
            h.observe(v);
        }
        assert_eq!(h.cumulative().collect::<Vec<_>>(), vec![2, 5, 6]);
        let mut fresh = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 0.5, 1.5, 1.5, 1.5, 3.0] {
            fresh.observe(v);
        }
        assert_eq!(h, fresh, "same observations, same exposed state");
    }

    #[test]
    fn one_two_five_buckets_stop_at_max_model_len() {
        assert_eq!(
            token_count_buckets(512),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
        );
    }
}

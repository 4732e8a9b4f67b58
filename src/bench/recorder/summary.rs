//! The recorder's report types: one stage's summary in the shape of inference-perf's
//! `*_lifecycle_metrics.json`, and the distributions inside it.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::FailureCounts;

/// Distribution statistics; latencies in seconds, lengths in tokens. The
/// percentiles are inference-perf's default list, named as it names them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    #[serde(rename = "p0.1")]
    pub p0_1: f64,
    pub p1: f64,
    pub p5: f64,
    pub p10: f64,
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
}

impl Stats {
    fn from(h: &Histogram<u64>, scale: f64) -> Stats {
        if h.is_empty() {
            return Stats::default();
        }
        let q = |q: f64| h.value_at_quantile(q) as f64 * scale;
        Stats {
            mean: h.mean() * scale,
            min: h.min() as f64 * scale,
            max: h.max() as f64 * scale,
            p0_1: q(0.001),
            p1: q(0.01),
            p5: q(0.05),
            p10: q(0.1),
            p25: q(0.25),
            median: q(0.5),
            p75: q(0.75),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            p99_9: q(0.999),
        }
    }

    pub(super) fn seconds(h: &Histogram<u64>) -> Stats {
        Stats::from(h, 1e-6)
    }

    pub(super) fn plain(h: &Histogram<u64>) -> Stats {
        Stats::from(h, 1.0)
    }
}

/// One stage's report, with inference-perf's lifecycle-summary field names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageSummary {
    /// First send to last response, seconds.
    pub benchmark_time_seconds: f64,
    pub load_summary: LoadSummary,
    pub successes: Successes,
    pub failures: Failures,
    pub goodput: Goodput,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadSummary {
    pub count: u64,
    /// Actual send − planned send, seconds: how late the client sent.
    pub schedule_delay: Stats,
    /// First send to last send, seconds (a stage's file only, as the two below).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_rate: Option<f64>,
    /// Requests sent per second of the send span (the rate the load generator kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achieved_rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Successes {
    pub count: u64,
    pub latency: Latencies,
    pub throughput: Throughput,
    pub prompt_tokens: TokenUsage,
    pub output_tokens: TokenUsage,
    pub prompt_len: Stats,
    pub output_len: Stats,
    /// Cached prompt tokens / prompt tokens, as the servers reported them.
    pub prefix_cache_hit_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodput_metrics: Option<GoodputMetrics>,
}

/// Token totals and, for successes, their per-request distribution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenUsage {
    pub total: u64,
    /// Prompt tokens served from the prefix cache, as the servers reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncached: Option<u64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Stats>,
}

impl TokenUsage {
    pub(super) fn totals(total: u64, cached: Option<u64>) -> TokenUsage {
        TokenUsage {
            total,
            cached,
            uncached: cached.map(|c| total - c.min(total)),
            distribution: None,
        }
    }

    pub(super) fn new(total: u64, cached: Option<u64>, per_request: &Histogram<u64>) -> TokenUsage {
        TokenUsage {
            distribution: (!per_request.is_empty()).then(|| Stats::plain(per_request)),
            ..TokenUsage::totals(total, cached)
        }
    }
}

/// inference-perf's goodput over successful requests; an attainment is present for
/// each constraint the scenario sets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoodputMetrics {
    pub goodput_percentage: f64,
    /// Good requests per second of the stage's span.
    pub request_goodput: f64,
    /// Prompt and output tokens of good requests per second.
    pub token_goodput: f64,
    pub good_requests: u64,
    pub total_requests: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_attainment_percentage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpot_attainment_percentage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntpot_attainment_percentage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_latency_attainment_percentage: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latencies {
    pub request_latency: Stats,
    pub normalized_time_per_output_token: Stats,
    pub time_per_output_token: Stats,
    pub time_to_first_token: Stats,
    pub inter_token_latency: Stats,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Throughput {
    pub input_tokens_per_sec: f64,
    pub output_tokens_per_sec: f64,
    pub total_tokens_per_sec: f64,
    pub requests_per_sec: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failures {
    pub count: u64,
    /// Send to failure, seconds; `null` when nothing failed.
    pub request_latency: Option<Stats>,
    pub prompt_tokens: TokenUsage,
    /// Failed requests by inference-perf's label (`"429 - Rate Limit"`), with
    /// their distinct messages.
    pub by_label: FailureCounts,
}

/// igw's goodput: requests meeting every SLO among all requests sent (failures
/// included), per second and as a share.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Goodput {
    pub requests_per_sec: f64,
    pub percent: f64,
}

//! inference-perf's per-request report (`per_request_lifecycle_metrics.json`, its
//! `report.request_lifecycle.per_request`): one record per request with its send and
//! finish times, token counts, the time of every streamed token and its error.
//!
//! Field names and nesting follow inference-perf's `RequestLifecycleMetric` as its
//! report writes it (`start_time`, `end_time`, `request`, `response`, `info`
//! {`input_tokens`, `output_tokens`, `output_token_times`, `extra_info`,
//! `lora_adapter`}, `error` {`error_type`, `error_msg`}), plus its `stage_id`,
//! `scheduled_time`, `ttft` and `tpot`. Two differences, both documented for readers:
//! times are seconds of pool time from the start of the request's stage (each stage
//! runs on a cold pool of its own; inference-perf uses one process clock), and the
//! request and response bodies are not kept (`null`): a ShareGPT run would otherwise
//! write its whole dataset once per strategy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RequestSample, ttft_and_tpot};

/// One request, as inference-perf's per-request report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestLifecycle {
    pub stage_id: usize,
    /// When the plan said to send it (seconds from the stage's start, as every time
    /// here).
    pub scheduled_time: f64,
    pub start_time: f64,
    pub end_time: f64,
    /// The request body; not kept.
    pub request: Option<String>,
    /// The response body; not kept.
    pub response: Option<String>,
    pub info: RequestInfo,
    pub error: Option<RequestError>,
    /// Seconds from send to the first token; `null` for a failure.
    pub ttft: Option<f64>,
    /// Seconds per output token after the first; `null` below two tokens.
    pub tpot: Option<f64>,
}

/// What the response said about the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestInfo {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// When each streamed token (or token chunk) arrived.
    pub output_token_times: Vec<f64>,
    pub extra_info: ExtraInfo,
    pub lora_adapter: Option<String>,
}

/// igw's additions to a request's info.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtraInfo {
    /// Prompt tokens the server served from its prefix cache.
    pub cached_tokens: u64,
}

/// Why a request failed: its failure label and message, as the lifecycle summaries
/// group them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestError {
    pub error_type: String,
    pub error_msg: String,
}

impl RequestLifecycle {
    /// The record of `sample`, sent in stage `stage_id`; `token_times` are when its
    /// tokens arrived, from the stage's start.
    pub fn new(
        stage_id: usize,
        sample: &RequestSample,
        token_times: &[Duration],
        adapter: Option<&str>,
    ) -> RequestLifecycle {
        let (ttft, tpot) = match sample.error {
            None => ttft_and_tpot(sample),
            Some(_) => (None, None),
        };
        RequestLifecycle {
            stage_id,
            scheduled_time: seconds(sample.scheduled),
            start_time: seconds(sample.sent),
            end_time: seconds(sample.done),
            request: None,
            response: None,
            info: RequestInfo {
                input_tokens: sample.prompt_tokens,
                output_tokens: sample.output_tokens,
                output_token_times: token_times.iter().copied().map(seconds).collect(),
                extra_info: ExtraInfo {
                    cached_tokens: sample.cached_tokens,
                },
                lora_adapter: adapter.map(str::to_string),
            },
            error: sample.error.as_ref().map(|f| RequestError {
                error_type: f.label(),
                error_msg: f.message.clone(),
            }),
            ttft: ttft.map(seconds),
            tpot: tpot.map(seconds),
        }
    }
}

/// `d` in seconds, correctly rounded from its nanoseconds, so `1.518796406 s` prints
/// as written (`Duration::as_secs_f64` adds whole and fractional parts and can print
/// `1.5187964059999999`).
fn seconds(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e9
}

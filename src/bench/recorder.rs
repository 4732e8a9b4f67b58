//! What one stage of one strategy measured: per-request latencies in HDR histograms
//! and the totals a load-generator report needs, with inference-perf's definitions
//! (sim-facts §6.2) so numbers compare with published runs.
//!
//! - TTFT: first non-empty token − send.
//! - TPOT: (e2e − TTFT) / (output tokens − 1), requests with ≥ 2 output tokens.
//! - NTPOT: e2e / output tokens (includes queueing and prefill).
//! - ITL: gaps between consecutive tokens, when the driver observed them.
//! - Throughput: tokens and requests per second of the stage's span.
//! - Goodput: requests meeting every SLO constraint, per second and as a share.
//! - Schedule delay: actual send − planned send (0 in virtual time).
//! - Achieved rate: requests / first-to-last send span.
//!
//! A run's summary appends its stages' recorders back to back
//! ([`StageRecorder::append`]): histograms add, so its percentiles are exact.
//!
//! The JSON has the shape of inference-perf's `*_lifecycle_metrics.json` (its
//! `reportgen/base.py`): `benchmark_time_seconds`, `load_summary` with
//! `schedule_delay`, `successes` with `latency`, `throughput`, `prompt_tokens`,
//! `output_tokens`, `output_len` and `goodput_metrics`, `failures` with
//! `request_latency`, `prompt_tokens` and `by_label`; every distribution has `mean`,
//! `min`, `max` and the percentiles `p0.1 p1 p5 p10 p25 median p75 p90 p95 p99 p99.9`
//! (its default list). igw adds `prompt_len`, `prefix_cache_hit_rate` and a
//! top-level `goodput` over all requests sent. `by_label` labels and groups failures
//! as inference-perf does (see `failure`).
//!
//! Pure bookkeeping: no clock, no I/O. Times are [`Duration`]s the driver measured
//! (wall time live, virtual time in the simulation); histograms hold microseconds.

use std::time::Duration;

use hdrhistogram::Histogram;

mod adapters;
mod failure;
mod per_request;
mod spool;
mod summary;

pub use adapters::{RunSummary, StageRecorders};
pub use failure::{Failure, FailureCounts, FailureKind, LabelCount, error_message};
pub use per_request::{ExtraInfo, RequestError, RequestInfo, RequestLifecycle};
pub use spool::{RecordSpool, SpoolWriter};

pub use summary::{
    Failures, Goodput, GoodputMetrics, Latencies, LoadSummary, StageSummary, Stats, Successes,
    Throughput, TokenUsage,
};

/// One finished (or failed) request as the driver saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSample {
    /// When the plan said to send it, from the stage's start.
    pub scheduled: Duration,
    /// When the request was sent, from the stage's start.
    pub sent: Duration,
    /// First non-empty token; `None` if none arrived.
    pub first_token: Option<Duration>,
    /// Response complete (or failed).
    pub done: Duration,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens the server reported as served from its prefix cache.
    pub cached_tokens: u64,
    /// Why the request failed; `None` on success.
    pub error: Option<Failure>,
}

/// A request's TTFT (send to first token) and TPOT ((e2e − TTFT) / (output tokens −
/// 1), defined from two tokens), as inference-perf computes them.
pub fn ttft_and_tpot(s: &RequestSample) -> (Option<Duration>, Option<Duration>) {
    let e2e = s.done.saturating_sub(s.sent);
    let ttft = s.first_token.map(|t| t.saturating_sub(s.sent));
    let tpot = match (ttft, s.output_tokens) {
        (Some(t), n) if n >= 2 => Some(e2e.saturating_sub(t) / (n - 1) as u32),
        _ => None,
    };
    (ttft, tpot)
}

/// Service-level objectives for goodput; unset constraints always pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slo {
    pub ttft: Option<Duration>,
    pub tpot: Option<Duration>,
    pub ntpot: Option<Duration>,
    pub request_latency: Option<Duration>,
}

impl Slo {
    /// The limits in one fixed order: TTFT, TPOT, NTPOT, request latency.
    fn limits(&self) -> [Option<Duration>; 4] {
        [self.ttft, self.tpot, self.ntpot, self.request_latency]
    }
}

/// Collects one stage's samples.
#[derive(Debug)]
pub struct StageRecorder {
    ttft: Histogram<u64>,
    tpot: Histogram<u64>,
    ntpot: Histogram<u64>,
    itl: Histogram<u64>,
    e2e: Histogram<u64>,
    prompt_len: Histogram<u64>,
    output_len: Histogram<u64>,
    schedule_delay: Histogram<u64>,
    failed_latency: Histogram<u64>,
    successes: u64,
    good: u64,
    /// Prompt plus output tokens of the requests in `good`.
    good_tokens: u64,
    /// Successes meeting each SLO constraint, in [`Slo::limits`] order (an unset
    /// constraint is met by every request).
    met: [u64; 4],
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    failed_prompt_tokens: u64,
    failed_cached_tokens: u64,
    failures: FailureCounts,
    first_sent: Option<Duration>,
    last_sent: Duration,
    last_done: Duration,
    slo: Slo,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to ~2.8 hours at 3 significant digits; values outside are clamped.
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("static bounds are valid")
}

/// Adds `from`'s counts into `into`; both have [`histogram`]'s bounds, so nothing
/// can fall outside, but a value that did would be clamped rather than lost.
fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(1, u64::MAX as u128) as u64
}

impl StageRecorder {
    pub fn new(slo: Slo) -> StageRecorder {
        StageRecorder {
            ttft: histogram(),
            tpot: histogram(),
            ntpot: histogram(),
            itl: histogram(),
            e2e: histogram(),
            prompt_len: histogram(),
            output_len: histogram(),
            schedule_delay: histogram(),
            failed_latency: histogram(),
            successes: 0,
            good: 0,
            good_tokens: 0,
            met: [0; 4],
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            failed_prompt_tokens: 0,
            failed_cached_tokens: 0,
            failures: FailureCounts::default(),
            first_sent: None,
            last_sent: Duration::ZERO,
            last_done: Duration::ZERO,
            slo,
        }
    }

    /// Records one request.
    pub fn record(&mut self, s: &RequestSample) {
        self.first_sent = Some(self.first_sent.map_or(s.sent, |f| f.min(s.sent)));
        self.last_sent = self.last_sent.max(s.sent);
        self.last_done = self.last_done.max(s.done);
        // On time is 0, not the 1 µs floor the latencies get.
        let delay = s.sent.saturating_sub(s.scheduled).as_micros();
        self.schedule_delay
            .saturating_record(delay.min(u128::from(u64::MAX)) as u64);
        let e2e = s.done.saturating_sub(s.sent);
        if let Some(error) = &s.error {
            self.failures.add(error);
            self.failed_latency.saturating_record(micros(e2e));
            self.failed_prompt_tokens += s.prompt_tokens;
            self.failed_cached_tokens += s.cached_tokens;
            return;
        }
        self.successes += 1;
        self.input_tokens += s.prompt_tokens;
        self.output_tokens += s.output_tokens;
        self.cached_tokens += s.cached_tokens;
        self.prompt_len.saturating_record(s.prompt_tokens.max(1));
        self.output_len.saturating_record(s.output_tokens.max(1));
        self.e2e.saturating_record(micros(e2e));
        let (ttft, tpot) = ttft_and_tpot(s);
        if let Some(t) = ttft {
            self.ttft.saturating_record(micros(t));
        }
        if let Some(t) = tpot {
            self.tpot.saturating_record(micros(t));
        }
        let ntpot = (s.output_tokens > 0).then(|| e2e / s.output_tokens as u32);
        if let Some(t) = ntpot {
            self.ntpot.saturating_record(micros(t));
        }
        let within = |value: Option<Duration>, limit: Option<Duration>| match (value, limit) {
            (_, None) => true,
            (Some(v), Some(l)) => v <= l,
            (None, Some(_)) => false,
        };
        let (values, limits) = ([ttft, tpot, ntpot, Some(e2e)], self.slo.limits());
        let met: [bool; 4] = std::array::from_fn(|i| within(values[i], limits[i]));
        for (count, ok) in self.met.iter_mut().zip(met) {
            *count += u64::from(ok);
        }
        if met.iter().all(|&ok| ok) {
            self.good += 1;
            self.good_tokens += s.prompt_tokens + s.output_tokens;
        }
    }

    /// Records one observed gap between consecutive tokens of a stream.
    pub fn record_itl(&mut self, gap: Duration) {
        self.itl.saturating_record(micros(gap));
    }

    /// Adds inter-token gaps recorded elsewhere (microseconds, as here).
    pub fn add_itl(&mut self, gaps: &Histogram<u64>) {
        add(&mut self.itl, gaps);
    }

    /// Adds `next`, a later stage's recorder, as if its stage had begun when this one's
    /// last response arrived: the stages back to back, as inference-perf runs them for
    /// its `summary_lifecycle_metrics.json`. Both must share one SLO.
    pub fn append(&mut self, next: &StageRecorder) {
        debug_assert_eq!(self.slo, next.slo, "one run, one SLO");
        let Some(next_first) = next.first_sent else {
            return; // nothing was sent in `next`
        };
        let base = match self.first_sent {
            Some(_) => self.last_done,
            None => {
                self.first_sent = Some(Duration::ZERO);
                Duration::ZERO
            }
        };
        self.last_sent = base + next.last_sent.saturating_sub(next_first);
        self.last_done = base + next.last_done.saturating_sub(next_first);
        for (ours, theirs) in [
            (&mut self.ttft, &next.ttft),
            (&mut self.tpot, &next.tpot),
            (&mut self.ntpot, &next.ntpot),
            (&mut self.e2e, &next.e2e),
            (&mut self.prompt_len, &next.prompt_len),
            (&mut self.output_len, &next.output_len),
            (&mut self.schedule_delay, &next.schedule_delay),
            (&mut self.failed_latency, &next.failed_latency),
        ] {
            add(ours, theirs);
        }
        self.add_itl(&next.itl);
        self.successes += next.successes;
        self.good += next.good;
        self.good_tokens += next.good_tokens;
        for (ours, theirs) in self.met.iter_mut().zip(next.met) {
            *ours += theirs;
        }
        self.input_tokens += next.input_tokens;
        self.output_tokens += next.output_tokens;
        self.cached_tokens += next.cached_tokens;
        self.failed_prompt_tokens += next.failed_prompt_tokens;
        self.failed_cached_tokens += next.failed_cached_tokens;
        self.failures.merge(&next.failures);
    }

    /// The stage's summary, with `requested_rate` as the load asked for.
    pub fn summary(&self, requested_rate: f64) -> StageSummary {
        self.summarize(Some(requested_rate))
    }

    /// The summary of appended stages (see [`StageRecorder::append`]): no requested
    /// rate, so no `send_duration`, `requested_rate` or `achieved_rate`, as in
    /// inference-perf's run summary.
    pub fn run_summary(&self) -> StageSummary {
        self.summarize(None)
    }

    fn summarize(&self, requested_rate: Option<f64>) -> StageSummary {
        let span = self
            .last_done
            .saturating_sub(self.first_sent.unwrap_or_default())
            .as_secs_f64()
            .max(1e-9);
        let failures = self.failures.total();
        let count = self.successes + failures;
        let send_duration = self
            .last_sent
            .saturating_sub(self.first_sent.unwrap_or_default())
            .as_secs_f64();
        StageSummary {
            benchmark_time_seconds: if count == 0 { 0.0 } else { span },
            load_summary: LoadSummary {
                count,
                schedule_delay: Stats::seconds(&self.schedule_delay),
                send_duration: requested_rate.map(|_| send_duration),
                requested_rate,
                // inference-perf's definition: n over the first-to-last send span, 0
                // when that span is empty.
                achieved_rate: requested_rate.map(|_| {
                    if send_duration > 0.0 {
                        count as f64 / send_duration
                    } else {
                        0.0
                    }
                }),
            },
            successes: Successes {
                count: self.successes,
                latency: Latencies {
                    request_latency: Stats::seconds(&self.e2e),
                    normalized_time_per_output_token: Stats::seconds(&self.ntpot),
                    time_per_output_token: Stats::seconds(&self.tpot),
                    time_to_first_token: Stats::seconds(&self.ttft),
                    inter_token_latency: Stats::seconds(&self.itl),
                },
                throughput: Throughput {
                    input_tokens_per_sec: self.input_tokens as f64 / span,
                    output_tokens_per_sec: self.output_tokens as f64 / span,
                    total_tokens_per_sec: (self.input_tokens + self.output_tokens) as f64 / span,
                    requests_per_sec: self.successes as f64 / span,
                },
                prompt_tokens: TokenUsage::new(
                    self.input_tokens,
                    Some(self.cached_tokens),
                    &self.prompt_len,
                ),
                output_tokens: TokenUsage::new(self.output_tokens, None, &self.output_len),
                prompt_len: Stats::plain(&self.prompt_len),
                output_len: Stats::plain(&self.output_len),
                prefix_cache_hit_rate: if self.input_tokens == 0 {
                    0.0
                } else {
                    self.cached_tokens as f64 / self.input_tokens as f64
                },
                goodput_metrics: self.goodput_metrics(span),
            },
            failures: Failures {
                count: failures,
                request_latency: (failures > 0).then(|| Stats::seconds(&self.failed_latency)),
                prompt_tokens: TokenUsage::totals(
                    self.failed_prompt_tokens,
                    Some(self.failed_cached_tokens),
                ),
                by_label: self.failures.clone(),
            },
            goodput: Goodput {
                requests_per_sec: self.good as f64 / span,
                percent: if self.successes + failures == 0 {
                    0.0
                } else {
                    100.0 * self.good as f64 / (self.successes + failures) as f64
                },
            },
        }
    }

    /// inference-perf's `goodput_metrics`: over successful requests, present only
    /// when the scenario sets an SLO.
    fn goodput_metrics(&self, span: f64) -> Option<GoodputMetrics> {
        let limits = self.slo.limits();
        if limits.iter().all(Option::is_none) {
            return None;
        }
        let total = self.successes;
        let percent = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
        let [ttft, tpot, ntpot, latency] =
            std::array::from_fn(|i| limits[i].map(|_| percent(self.met[i])));
        Some(GoodputMetrics {
            goodput_percentage: percent(self.good),
            request_goodput: self.good as f64 / span,
            token_goodput: self.good_tokens as f64 / span,
            good_requests: self.good,
            total_requests: total,
            ttft_attainment_percentage: ttft,
            tpot_attainment_percentage: tpot,
            ntpot_attainment_percentage: ntpot,
            request_latency_attainment_percentage: latency,
        })
    }
}

#[cfg(test)]
mod tests;

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
//!
//! Pure bookkeeping: no clock, no I/O. Times are [`Duration`]s the driver measured
//! (wall time live, virtual time in the simulation); histograms hold microseconds.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// One finished (or failed) request as the driver saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSample {
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
    /// Why the request failed, e.g. `"429 - ResourceExhausted"`; `None` on success.
    pub error: Option<String>,
}

/// Service-level objectives for goodput; unset constraints always pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slo {
    pub ttft: Option<Duration>,
    pub tpot: Option<Duration>,
    pub ntpot: Option<Duration>,
    pub request_latency: Option<Duration>,
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
    successes: u64,
    good: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    failures: BTreeMap<String, u64>,
    first_sent: Option<Duration>,
    last_sent: Duration,
    last_done: Duration,
    slo: Slo,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to ~2.8 hours at 3 significant digits; values outside are clamped.
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("static bounds are valid")
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
            successes: 0,
            good: 0,
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            failures: BTreeMap::new(),
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
        if let Some(error) = &s.error {
            *self.failures.entry(error.clone()).or_insert(0) += 1;
            return;
        }
        self.successes += 1;
        self.input_tokens += s.prompt_tokens;
        self.output_tokens += s.output_tokens;
        self.cached_tokens += s.cached_tokens;
        self.prompt_len.saturating_record(s.prompt_tokens.max(1));
        self.output_len.saturating_record(s.output_tokens.max(1));
        let e2e = s.done.saturating_sub(s.sent);
        self.e2e.saturating_record(micros(e2e));
        let ttft = s.first_token.map(|t| t.saturating_sub(s.sent));
        if let Some(t) = ttft {
            self.ttft.saturating_record(micros(t));
        }
        let tpot = match (ttft, s.output_tokens) {
            (Some(t), n) if n >= 2 => Some(e2e.saturating_sub(t) / (n - 1) as u32),
            _ => None,
        };
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
        if within(ttft, self.slo.ttft)
            && within(tpot, self.slo.tpot)
            && within(ntpot, self.slo.ntpot)
            && within(Some(e2e), self.slo.request_latency)
        {
            self.good += 1;
        }
    }

    /// Records one observed gap between consecutive tokens of a stream.
    pub fn record_itl(&mut self, gap: Duration) {
        self.itl.saturating_record(micros(gap));
    }

    /// Adds inter-token gaps recorded elsewhere (microseconds, as here).
    pub fn add_itl(&mut self, gaps: &Histogram<u64>) {
        // Both histograms have the same bounds, so adding cannot fail; clamp anyway.
        if self.itl.add(gaps).is_err() {
            for v in gaps.iter_recorded() {
                self.itl
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// The stage's summary, with `requested_rate` as the load asked for.
    pub fn summary(&self, requested_rate: f64) -> StageSummary {
        let span = self
            .last_done
            .saturating_sub(self.first_sent.unwrap_or_default())
            .as_secs_f64()
            .max(1e-9);
        let failures: u64 = self.failures.values().sum();
        let count = self.successes + failures;
        let send_duration = self
            .last_sent
            .saturating_sub(self.first_sent.unwrap_or_default())
            .as_secs_f64();
        StageSummary {
            load_summary: LoadSummary {
                count,
                send_duration,
                requested_rate,
                // n sends span n − 1 gaps; a single request has no rate of its own.
                achieved_rate: if count > 1 && send_duration > 0.0 {
                    (count - 1) as f64 / send_duration
                } else {
                    requested_rate
                },
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
                prompt_len: Stats::plain(&self.prompt_len),
                output_len: Stats::plain(&self.output_len),
                prefix_cache_hit_rate: if self.input_tokens == 0 {
                    0.0
                } else {
                    self.cached_tokens as f64 / self.input_tokens as f64
                },
            },
            failures: Failures {
                count: failures,
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
}

/// Distribution statistics; latencies in seconds, lengths in tokens.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f64,
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
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
            median: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            max: h.max() as f64 * scale,
        }
    }

    fn seconds(h: &Histogram<u64>) -> Stats {
        Stats::from(h, 1e-6)
    }

    fn plain(h: &Histogram<u64>) -> Stats {
        Stats::from(h, 1.0)
    }
}

/// One stage's report, with inference-perf's lifecycle-summary field names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageSummary {
    pub load_summary: LoadSummary,
    pub successes: Successes,
    pub failures: Failures,
    pub goodput: Goodput,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadSummary {
    pub count: u64,
    /// First send to last send, seconds.
    pub send_duration: f64,
    pub requested_rate: f64,
    /// Requests sent per second of the send span (the rate the load generator kept).
    pub achieved_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Successes {
    pub count: u64,
    pub latency: Latencies,
    pub throughput: Throughput,
    pub prompt_len: Stats,
    pub output_len: Stats,
    /// Cached prompt tokens / prompt tokens, as the servers reported them.
    pub prefix_cache_hit_rate: f64,
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
    /// Failed requests by `"<status> - <reason>"`.
    pub by_label: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Goodput {
    pub requests_per_sec: f64,
    pub percent: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn sample(sent: u64, first: u64, done: u64, out: u64) -> RequestSample {
        RequestSample {
            sent: ms(sent),
            first_token: Some(ms(first)),
            done: ms(done),
            prompt_tokens: 100,
            output_tokens: out,
            cached_tokens: 50,
            error: None,
        }
    }

    #[test]
    fn definitions_follow_inference_perf() {
        let mut r = StageRecorder::new(Slo::default());
        // TTFT 100 ms, e2e 1,000 ms, 10 tokens: TPOT 100 ms, NTPOT 100 ms.
        r.record(&sample(0, 100, 1_000, 10));
        let s = r.summary(1.0);
        let l = &s.successes.latency;
        assert!((l.time_to_first_token.mean - 0.1).abs() < 1e-3);
        assert!((l.time_per_output_token.mean - 0.1).abs() < 1e-3);
        assert!((l.normalized_time_per_output_token.mean - 0.1).abs() < 1e-3);
        assert!((l.request_latency.max - 1.0).abs() < 1e-3);
        assert_eq!(s.successes.prefix_cache_hit_rate, 0.5);
        // One request over a 1 s span.
        assert!((s.successes.throughput.output_tokens_per_sec - 10.0).abs() < 1e-9);
        // One send has no rate of its own: the requested one stands.
        assert_eq!(s.load_summary.achieved_rate, 1.0);
    }

    #[test]
    fn one_token_requests_have_no_tpot_and_failures_are_labelled() {
        let mut r = StageRecorder::new(Slo::default());
        r.record(&sample(0, 50, 50, 1));
        r.record(&RequestSample {
            error: Some("429 - ResourceExhausted".into()),
            first_token: None,
            ..sample(10, 0, 20, 0)
        });
        let s = r.summary(2.0);
        assert_eq!(s.successes.count, 1);
        assert_eq!(s.successes.latency.time_per_output_token, Stats::default());
        assert_eq!(s.failures.count, 1);
        assert_eq!(s.failures.by_label["429 - ResourceExhausted"], 1);
        assert_eq!(s.load_summary.count, 2);
    }

    #[test]
    fn goodput_counts_requests_meeting_every_constraint() {
        let mut r = StageRecorder::new(Slo {
            ttft: Some(ms(200)),
            ntpot: Some(ms(150)),
            ..Slo::default()
        });
        r.record(&sample(0, 100, 1_000, 10)); // meets both
        r.record(&sample(0, 300, 1_000, 10)); // TTFT too slow
        r.record(&sample(0, 100, 2_000, 10)); // NTPOT 200 ms too slow
        let s = r.summary(3.0);
        assert!((s.goodput.percent - 100.0 / 3.0).abs() < 1e-9);
        assert!(
            (s.goodput.requests_per_sec - 0.5).abs() < 1e-9,
            "1 good over 2 s"
        );
    }

    #[test]
    fn achieved_rate_is_over_the_send_span_not_the_drain() {
        let mut r = StageRecorder::new(Slo::default());
        // Ten sends 100 ms apart, each taking 5 s: 10 req/s sent, a 5.9 s span.
        for i in 0..10 {
            r.record(&sample(i * 100, i * 100 + 50, i * 100 + 5_000, 10));
        }
        let s = r.summary(10.0);
        assert!((s.load_summary.achieved_rate - 10.0).abs() < 1e-9);
        assert!((s.load_summary.send_duration - 0.9).abs() < 1e-9);
        assert!((s.successes.throughput.requests_per_sec - 10.0 / 5.9).abs() < 1e-9);
    }

    #[test]
    fn json_uses_the_lifecycle_field_names() {
        let mut r = StageRecorder::new(Slo::default());
        r.record(&sample(0, 100, 1_000, 10));
        r.record_itl(ms(100));
        let v = serde_json::to_value(r.summary(1.0)).unwrap();
        for path in [
            "/load_summary/achieved_rate",
            "/successes/latency/time_to_first_token/p99",
            "/successes/latency/inter_token_latency/median",
            "/successes/throughput/output_tokens_per_sec",
            "/failures/by_label",
            "/goodput/percent",
        ] {
            assert!(v.pointer(path).is_some(), "missing {path} in {v}");
        }
    }
}

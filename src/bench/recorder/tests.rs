//! Tests of the recorder's definitions and of its JSON names.

use super::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn sample(sent: u64, first: u64, done: u64, out: u64) -> RequestSample {
    RequestSample {
        scheduled: ms(sent),
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
    // inference-perf's view of the same: attainment per constraint set.
    let g = s.successes.goodput_metrics.expect("SLOs are set");
    assert_eq!((g.good_requests, g.total_requests), (1, 3));
    assert!((g.goodput_percentage - 100.0 / 3.0).abs() < 1e-9);
    assert!((g.ttft_attainment_percentage.unwrap() - 200.0 / 3.0).abs() < 1e-9);
    assert!((g.ntpot_attainment_percentage.unwrap() - 200.0 / 3.0).abs() < 1e-9);
    assert_eq!(g.tpot_attainment_percentage, None);
    assert_eq!(g.request_latency_attainment_percentage, None);
    assert!(
        (g.token_goodput - 110.0 / 2.0).abs() < 1e-9,
        "110 tokens over 2 s"
    );
    let none = StageRecorder::new(Slo::default()).summary(1.0);
    assert_eq!(none.successes.goodput_metrics, None, "no SLO, no section");
}

#[test]
fn schedule_delay_is_how_late_each_request_left() {
    let mut r = StageRecorder::new(Slo::default());
    r.record(&sample(0, 100, 1_000, 10)); // on time
    r.record(&RequestSample {
        scheduled: ms(100),
        ..sample(130, 200, 1_000, 10) // 30 ms late
    });
    let d = r.summary(2.0).load_summary.schedule_delay;
    assert_eq!(d.min, 0.0);
    assert!((d.max - 0.03).abs() < 1e-4, "{d:?}");
    assert!((d.mean - 0.015).abs() < 1e-4, "{d:?}");
}

#[test]
fn failures_keep_their_latency_and_prompt_tokens() {
    let mut r = StageRecorder::new(Slo::default());
    r.record(&RequestSample {
        error: Some("503 - Service Unavailable".into()),
        first_token: None,
        ..sample(0, 0, 250, 0)
    });
    let f = r.summary(1.0).failures;
    let latency = f.request_latency.expect("one failure");
    assert!((latency.max - 0.25).abs() < 1e-3);
    assert_eq!(f.prompt_tokens.total, 100);
    assert_eq!(f.prompt_tokens.uncached, Some(50));
    let clean = StageRecorder::new(Slo::default()).summary(1.0).failures;
    assert_eq!(clean.request_latency, None);
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
        "/benchmark_time_seconds",
        "/load_summary/achieved_rate",
        "/load_summary/schedule_delay/p99",
        "/successes/latency/time_to_first_token/p99",
        "/successes/latency/time_to_first_token/p0.1",
        "/successes/latency/request_latency/p99.9",
        "/successes/latency/inter_token_latency/median",
        "/successes/latency/normalized_time_per_output_token/p25",
        "/successes/throughput/output_tokens_per_sec",
        "/successes/prompt_tokens/cached",
        "/successes/prompt_tokens/uncached",
        "/successes/prompt_tokens/median",
        "/successes/output_tokens/total",
        "/successes/output_len/p75",
        "/failures/request_latency",
        "/failures/prompt_tokens/total",
        "/failures/by_label",
        "/goodput/percent",
    ] {
        assert!(v.pointer(path).is_some(), "missing {path} in {v}");
    }
}

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
    // One send spans no time: inference-perf writes an achieved rate of 0.
    assert_eq!(s.load_summary.achieved_rate, Some(0.0));
    assert_eq!(s.load_summary.requested_rate, Some(1.0));
}

#[test]
fn one_token_requests_have_no_tpot_and_failures_are_labelled() {
    let mut r = StageRecorder::new(Slo::default());
    r.record(&sample(0, 50, 50, 1));
    r.record(&RequestSample {
        error: Some(Failure::http(
            429,
            b"inference error: ResourceExhausted - system saturated",
        )),
        first_token: None,
        ..sample(10, 0, 20, 0)
    });
    let s = r.summary(2.0);
    assert_eq!(s.successes.count, 1);
    assert_eq!(s.successes.latency.time_per_output_token, Stats::default());
    assert_eq!(s.failures.count, 1);
    assert_eq!(s.failures.by_label.count("429 - Rate Limit"), 1);
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
        error: Some(Failure::http(503, b"busy")),
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
    // inference-perf's definition: n over the first-to-last send span.
    assert!((s.load_summary.achieved_rate.unwrap() - 10.0 / 0.9).abs() < 1e-9);
    assert!((s.load_summary.send_duration.unwrap() - 0.9).abs() < 1e-9);
    assert!((s.successes.throughput.requests_per_sec - 10.0 / 5.9).abs() < 1e-9);
}

#[test]
fn appended_stages_run_back_to_back() {
    let slo = Slo {
        ttft: Some(ms(200)),
        ..Slo::default()
    };
    // Stage 0: two requests over a 2 s span. Stage 1 (its own clock from 0): one
    // success and one failure over a 3 s span starting at 1 s.
    let mut first = StageRecorder::new(slo.clone());
    first.record(&sample(0, 100, 1_000, 10));
    first.record(&sample(500, 900, 2_000, 10));
    let mut second = StageRecorder::new(slo.clone());
    second.record(&sample(1_000, 1_100, 4_000, 20));
    second.record(&RequestSample {
        error: Some(Failure::timeout()),
        first_token: None,
        ..sample(1_500, 0, 2_500, 0)
    });
    let mut all = StageRecorder::new(slo);
    all.append(&first);
    all.append(&second);
    all.append(&StageRecorder::new(Slo {
        ttft: Some(ms(200)),
        ..Slo::default()
    })); // an empty stage changes nothing

    let s = all.run_summary();
    assert!((s.benchmark_time_seconds - 5.0).abs() < 1e-9, "2 s + 3 s");
    assert_eq!(s.load_summary.count, 4);
    assert_eq!((s.successes.count, s.failures.count), (3, 1));
    assert_eq!(s.failures.by_label.count("Timeout"), 1);
    assert_eq!(s.successes.output_tokens.total, 40);
    assert!((s.successes.throughput.output_tokens_per_sec - 40.0 / 5.0).abs() < 1e-9);
    let l = &s.successes.latency;
    assert!(
        (l.time_to_first_token.max - 0.4).abs() < 1e-3,
        "the slowest of both"
    );
    assert!((l.request_latency.min - 1.0).abs() < 1e-3);
    // Goodput: two of three successes have TTFT ≤ 200 ms.
    let g = s.successes.goodput_metrics.as_ref().expect("an SLO is set");
    assert_eq!((g.good_requests, g.total_requests), (2, 3));
    // A run summary has no single rate: the rate fields are left out, as
    // inference-perf leaves them out of its summary file.
    let json = serde_json::to_value(&s).unwrap();
    let load = json["load_summary"].as_object().unwrap();
    let mut keys: Vec<&str> = load.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["count", "schedule_delay"]);
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

#[test]
fn per_request_records_use_inference_perf_names() {
    // TTFT 100 ms, e2e 1,000 ms, 10 tokens: TPOT 100 ms.
    let ok = sample(0, 100, 1000, 10);
    let times: Vec<Duration> = (0..10).map(|i| ms(100 + i * 100)).collect();
    let r = RequestLifecycle::new(2, &ok, &times, Some("sql-lora"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["stage_id"], 2);
    assert_eq!(json["start_time"], 0.0);
    assert_eq!(json["end_time"], 1.0);
    assert_eq!(json["ttft"], 0.1);
    assert!((json["tpot"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert!(json["request"].is_null() && json["response"].is_null());
    let info = &json["info"];
    assert_eq!(info["input_tokens"], 100);
    assert_eq!(info["output_tokens"], 10);
    assert_eq!(info["output_token_times"].as_array().unwrap().len(), 10);
    assert_eq!(info["output_token_times"][9], 1.0);
    assert_eq!(info["lora_adapter"], "sql-lora");
    assert_eq!(info["extra_info"]["cached_tokens"], 50);
    assert!(json["error"].is_null());

    let mut failed = sample(0, 0, 300, 0);
    failed.first_token = None;
    failed.error = Some(Failure::http(
        503,
        br#"{"error":{"message":"no endpoint"}}"#,
    ));
    let json = serde_json::to_value(RequestLifecycle::new(0, &failed, &[], None)).unwrap();
    assert_eq!(json["error"]["error_type"], "503 - Service Unavailable");
    assert_eq!(json["error"]["error_msg"], "no endpoint");
    assert!(json["ttft"].is_null() && json["tpot"].is_null());
    assert!(json["info"]["lora_adapter"].is_null());
}

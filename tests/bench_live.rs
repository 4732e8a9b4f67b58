//! `igw bench` over real HTTP: the live runner agrees with the virtual one on the same
//! scenario, target mode measures an in-process simulator, a target nobody listens on
//! gives labelled failures, and a trace replays with its shared prompts intact.
//!
//! Everything runs in-process on loopback ports chosen by the OS, with fixed seeds.
//! The only timing assertion is the agreement check, and its tolerance (15 % of the
//! mean) is several times what the live path's own costs add (timer granularity of
//! the simulator's driver, HTTP and SSE through the gateway), at a speedup low enough
//! that a busy 2-core machine keeps the simulators on their modelled timeline.

use igw::bench::interrupt::{Interrupt, Interrupted};
use igw::bench::live;
use igw::bench::plan::plan;
use igw::bench::progress::Progress;
use igw::bench::recorder::RequestLifecycle;
use igw::bench::report::{self, BenchReport};
use igw::bench::scenario::{Scenario, from_yaml_str};
use igw::bench::virtual_run;
use igw::bench::workload::TraceSpec;
use igw::sim::options::EngineOptions;
use igw::sim::server::{Listen, SimServer, SimServerConfig, spawn};

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// Two replicas of four sequences each that queue at 34 req/s without saturating.
/// The pool runs at half real time with a 500 ms scrape: the pool is near saturation,
/// so its queueing delay magnifies any lateness of the simulators' steps, and in a
/// debug build every tokenisation, scrape and streamed chunk costs real CPU. At
/// speedup 1 a 2-core machine shared with other work fell behind the modelled
/// timeline (EPP TTFT up to ×2 of virtual); at 0.5 the same run under four busy
/// loops stayed within ×1.07.
const AGREEMENT: &str = "
name: agreement
seed: 11
workload:
  type: synthetic
  input: {uniform: {min: 100, max: 200}}
  output: {uniform: {min: 20, max: 40}}
load: {type: poisson, stages: [{rate: 34, duration: 6s}]}
pool: {replicas: 2, speedup: 0.5, max_num_seqs: 4, scrape_interval: 500ms}
strategies:
- {router: random}
- {router: epp, config: igw-default}
";

fn scenario(yaml: &str) -> Scenario {
    from_yaml_str(yaml, "test.yaml").expect("the scenario is valid")
}

/// One in-process simulator of the default engine at `speedup`, and its base URL.
async fn one_simulator(speedup: f64) -> (SimServer, String) {
    let engine = EngineOptions::default().engine_config().unwrap();
    let mut config = SimServerConfig::new(MODEL, engine);
    config.speedup = speedup;
    let sim = spawn(config, Listen::local(1)).await.unwrap();
    let url = sim.base_urls()[0].clone();
    (sim, url)
}

/// (mean TTFT, mean e2e) of `strategy` in stage 0, seconds.
fn means(report: &BenchReport, strategy: &str) -> (f64, f64) {
    let r = report.result(0, strategy).expect("the strategy ran");
    let l = &r.summary.successes.latency;
    (l.time_to_first_token.mean, l.request_latency.mean)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_agrees_with_virtual_time() {
    let s = scenario(AGREEMENT);
    let plans = plan(&s).unwrap();
    let progress = Progress::hidden();
    let virt = virtual_run::run(&s, &plans, 1, &progress).unwrap();
    let live = live::run(&s, &plans, None, &progress).await.unwrap();
    assert_eq!(live.mode, "live");
    assert_eq!(live.pool.speedup, 0.5);
    let mut lines = Vec::new();
    let mut agree = true;
    for name in ["epp igw-default", "random"] {
        let r = live.result(0, name).unwrap();
        let requests = plans[0].requests.len() as u64;
        assert_eq!(r.summary.successes.count, requests, "{name}: {r:?}");
        assert_eq!(r.requests_per_endpoint.iter().sum::<u64>(), requests);
        assert_eq!(
            r.preemptions_per_endpoint.len(),
            2,
            "read from each replica"
        );
        let (vt, ve) = means(&virt, name);
        let (lt, le) = means(&live, name);
        let (rt, re) = (lt / vt, le / ve);
        agree &= (rt - 1.0).abs() <= 0.15 && (re - 1.0).abs() <= 0.15;
        lines.push(format!(
            "{name}: TTFT virtual {:.1} ms live {:.1} ms (×{rt:.3}); e2e virtual {:.1} ms live {:.1} ms (×{re:.3})",
            vt * 1e3,
            lt * 1e3,
            ve * 1e3,
            le * 1e3
        ));
    }
    let text = lines.join("\n");
    println!("{text}");
    assert!(
        agree,
        "live and virtual disagree by more than 15 %:\n{text}"
    );
}

/// KV caches far too small for the batch: replicas preempt.
const PREEMPTING: &str = "
name: preempting
seed: 5
workload:
  type: synthetic
  input: {uniform: {min: 100, max: 200}}
  output: {uniform: {min: 60, max: 100}}
load: {type: constant, stages: [{rate: 20, duration: 1s}]}
pool: {replicas: 2, speedup: 10, max_num_seqs: 8, kv_blocks: 40}
strategies:
- {router: round-robin}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reports_the_preemptions_the_replicas_count() {
    let s = scenario(PREEMPTING);
    let plans = plan(&s).unwrap();
    let live = live::run(&s, &plans, None, &Progress::hidden())
        .await
        .unwrap();
    let r = live.result(0, "round-robin").unwrap();
    assert_eq!(r.summary.failures.count, 0, "{:?}", r.summary.failures);
    assert_eq!(r.preemptions_per_endpoint.len(), 2);
    assert!(
        r.preemptions_per_endpoint.iter().all(|&p| p > 0),
        "640 tokens of KV for 8 sequences of ~230 tokens: both replicas preempt, {:?}",
        r.preemptions_per_endpoint
    );
}

/// A repeated system prompt, so later requests hit the prefix cache.
const SHARED_PREFIX: &str = "
name: target
seed: 3
workload: {type: shared_prefix, num_groups: 2, num_prompts_per_group: 4, system_prompt_len: 200, question_len: 20, output_len: 8, num_requests: 16}
load: {type: constant, stages: [{rate: 200, duration: 100ms}, {rate: 100, duration: 100ms}]}
output: {per_request: true}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_mode_measures_an_external_server() {
    let (sim, url) = one_simulator(100.0).await;
    let s = scenario(SHARED_PREFIX);
    let plans = plan(&s).unwrap();
    let report = live::run(&s, &plans, Some(&url), &Progress::hidden())
        .await
        .unwrap();
    sim.shutdown().await.unwrap();
    assert_eq!(report.mode, "target");
    assert_eq!(report.strategies, vec!["target".to_string()]);
    for (stage, p) in report.stages.iter().zip(&plans) {
        let r = &stage.results[0];
        let s = &r.summary;
        assert_eq!(s.failures.count, 0, "{:?}", s.failures);
        assert_eq!(s.successes.count, p.requests.len() as u64);
        assert!(r.requests_per_endpoint.is_empty());
        assert!(r.preemptions_per_endpoint.is_empty(), "no replica to ask");
        let lag = r
            .send_lag
            .as_ref()
            .expect("a live client reports its send lag");
        assert!(
            0.0 <= lag.p50_ms && lag.p50_ms <= lag.p99_ms && lag.p99_ms <= lag.max_ms,
            "{lag:?}"
        );
        // The lifecycle file's schedule delay is the same lag in pool seconds.
        let delay = &s.load_summary.schedule_delay;
        let want = lag.max_ms / 1e3 * report.pool.speedup;
        assert!(
            (delay.max - want).abs() <= want * 0.01 + 2e-6,
            "schedule delay max {} s vs send lag max {want} s",
            delay.max
        );
        let planned_out: usize = p.requests.iter().map(|q| q.request.output_tokens).sum();
        let measured_out = s.successes.throughput.output_tokens_per_sec
            / s.successes.throughput.requests_per_sec
            * s.successes.count as f64;
        assert!(
            (measured_out - planned_out as f64).abs() < 0.5,
            "output tokens {measured_out} vs {planned_out}"
        );
        assert_eq!(s.successes.output_tokens.total, planned_out as u64);
        assert!(s.successes.latency.time_to_first_token.mean > 0.0);
        assert!(s.successes.latency.inter_token_latency.mean > 0.0);
    }
    // The per-request records: every request, stage after stage, each streamed token's
    // time between its first token and its end.
    let records: Vec<RequestLifecycle> = report.per_request[0]
        .iter()
        .flat_map(|spool| spool.read::<RequestLifecycle>().unwrap())
        .collect();
    let planned: Vec<_> = plans
        .iter()
        .flat_map(|p| p.requests.iter().map(move |q| (p.index, q)))
        .collect();
    assert_eq!(records.len(), planned.len());
    for (r, (stage, q)) in records.iter().zip(planned) {
        assert_eq!(r.stage_id, stage);
        assert!(r.error.is_none(), "{r:?}");
        let times = &r.info.output_token_times;
        assert_eq!(
            times.len(),
            q.request.output_tokens,
            "one chunk per token: {r:?}"
        );
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{r:?}");
        let first = r.start_time + r.ttft.expect("a success has a TTFT");
        assert!((times[0] - first).abs() < 1e-6, "{r:?}");
        assert!(times[times.len() - 1] <= r.end_time + 1e-9, "{r:?}");
        assert!(r.scheduled_time <= r.start_time, "{r:?}");
    }
    // The second stage repeats the first one's prefixes: the cache serves them.
    let cached = report.stages[1].results[0]
        .summary
        .successes
        .prefix_cache_hit_rate;
    assert!(cached > 0.5, "prefix cache hit rate {cached}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_gives_labelled_failures() {
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let s = scenario(SHARED_PREFIX);
    let plans = plan(&s).unwrap();
    let report = live::run(
        &s,
        &plans,
        Some(&format!("http://{dead}")),
        &Progress::hidden(),
    )
    .await
    .unwrap();
    for (stage, p) in report.stages.iter().zip(&plans) {
        let f = &stage.results[0].summary.failures;
        assert_eq!(f.count, p.requests.len() as u64);
        // inference-perf's label, with the client's own words under it.
        assert_eq!(f.by_label.count("Connection Error"), f.count, "{f:?}");
        let by_label = serde_json::to_value(&f.by_label).unwrap();
        let message = by_label["Connection Error"]["messages"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase();
        assert!(message.contains("refused"), "{message}");
    }
}

/// A target that answers 200 with something that is not an event stream: every
/// request is a failure of its own kind, never a success with no tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_answering_200_with_garbage_gives_invalid_response_failures() {
    let garbage = axum::Router::new().fallback(|| async { "<html>not an API</html>" });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, garbage).await });
    let s = scenario(SHARED_PREFIX);
    let plans = plan(&s).unwrap();
    let report = live::run(
        &s,
        &plans,
        Some(&format!("http://{addr}")),
        &Progress::hidden(),
    )
    .await
    .unwrap();
    for (stage, p) in report.stages.iter().zip(&plans) {
        let f = &stage.results[0].summary.failures;
        assert_eq!(f.count, p.requests.len() as u64, "{f:?}");
        assert_eq!(f.by_label.count("invalid response"), f.count, "{f:?}");
        let by_label = serde_json::to_value(&f.by_label).unwrap();
        let message = by_label["invalid response"]["messages"][0]["message"]
            .as_str()
            .unwrap();
        assert!(message.contains("not an API"), "{message}");
    }
}

#[tokio::test]
async fn the_least_tokens_oracle_is_refused_in_live_mode_before_anything_starts() {
    let s = from_yaml_str(
        "load: {stages: [{rate: 1, duration: 1s}]}\nstrategies: [{router: random}, {router: least-tokens}]\n",
        "oracle.yaml",
    )
    .unwrap();
    let plans = plan(&s).unwrap();
    let err = live::run(&s, &plans, None, &Progress::hidden())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("least-tokens"), "{err}");
    assert!(err.contains("virtual mode only"), "{err}");
}

/// Two chat sessions of three turns, all planned within 60 ms: far sooner than a
/// reply of 20 tokens takes.
const SESSIONS: &str = "
name: sessions
seed: 2
workload: {type: sessions, num_sessions: 2, source: {synthetic: {turns: {fixed: {value: 3}}, user: {fixed: {value: 30}}, reply: {fixed: {value: 20}}}}}
load: {type: constant, stages: [{rate: 100, duration: 60ms}]}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_client_sends_a_sessions_next_turn_after_its_reply() {
    let (sim, _) = one_simulator(10.0).await;
    let s = scenario(SESSIONS);
    let plans = plan(&s).unwrap();
    let stage = &plans[0];
    assert_eq!(stage.requests.len(), 6);
    let destination = live::client::Destination::new(&sim.base_urls()).unwrap();
    let client = live::client::http_client().unwrap();
    let outcome = live::client::run_stage(
        &client,
        &destination,
        MODEL,
        stage,
        10.0,
        &indicatif::ProgressBar::hidden(),
        &Interrupt::new(),
    )
    .await;
    sim.shutdown().await.unwrap();
    let waits = stage.predecessors();
    assert_eq!(
        waits.iter().flatten().count(),
        4,
        "turns 1 and 2 of each session"
    );
    for (i, after) in waits.iter().enumerate() {
        let me = &outcome.requests[i].sample;
        assert_eq!(me.error, None, "request {i}: {me:?}");
        let Some(before) = after else { continue };
        let before = &outcome.requests[*before].sample;
        assert!(
            me.sent >= before.done && me.scheduled >= before.done,
            "request {i} went out at {:?} (due {:?}) before the turn it follows ended at {:?}",
            me.sent,
            me.scheduled,
            before.done
        );
    }
}

/// Two strategies × two stages of 20 requests each, so an interrupt has jobs left to
/// skip.
const INTERRUPTED: &str = "
name: interrupted
seed: 5
workload:
  type: synthetic
  input: {uniform: {min: 20, max: 40}}
  output: {fixed: {value: 4}}
load: {type: constant, stages: [{rate: 100, duration: 200ms}, {rate: 200, duration: 100ms}]}
pool: {replicas: 2, speedup: 10}
strategies:
- {router: random}
- {router: round-robin}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_live_run_keeps_what_it_sent_and_says_where_it_stopped() {
    let s = scenario(INTERRUPTED);
    let plans = plan(&s).unwrap();
    assert_eq!(plans[0].requests.len(), 20);
    let interrupt = Interrupt::new();
    // As if Ctrl-C came while the first job was about to send its sixth request.
    interrupt.before_request(5);
    let report = live::run_until(&s, &plans, None, &Progress::hidden(), &interrupt)
        .await
        .unwrap();
    assert_eq!(
        report.interrupted,
        Some(Interrupted {
            strategy: "random".into(),
            stage: 0,
            sent: 5,
            planned: 20,
            jobs_not_run: 3,
        })
    );
    // The five sent were answered and measured; nothing else ran.
    let results = &report.stages[0].results;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].strategy, "random");
    let summary = &results[0].summary;
    assert_eq!(summary.successes.count, 5, "{:?}", summary.failures);
    assert_eq!(summary.failures.count, 0);
    assert!(report.stages[1].results.is_empty());
    let text = report::comparison_table(&report);
    assert!(
        text.contains(
            "interrupted: Ctrl-C stopped the run while random was sending stage 0 \
             (100 req/s): 5 of its 20 requests were sent, and its figures cover only \
             those; 3 later jobs did not run"
        ),
        "{text}"
    );

    let dir = std::env::temp_dir().join(format!("igw-bench-interrupted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    report::write(&report, &dir).unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"]["sent"], 5);
    assert_eq!(summary["interrupted"]["strategy"], "random");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_target_run_stops_after_the_stage_in_progress() {
    let (sim, url) = one_simulator(100.0).await;
    let s = scenario(SHARED_PREFIX);
    let plans = plan(&s).unwrap();
    let interrupt = Interrupt::new();
    interrupt.before_request(3);
    let report = live::run_until(&s, &plans, Some(&url), &Progress::hidden(), &interrupt)
        .await
        .unwrap();
    sim.shutdown().await.unwrap();
    let stopped = report
        .interrupted
        .as_ref()
        .expect("the run was interrupted");
    assert_eq!((stopped.stage, stopped.sent), (0, 3));
    assert_eq!(stopped.planned, plans[0].requests.len());
    assert_eq!(stopped.jobs_not_run, 1);
    assert_eq!(report.stages[0].results[0].summary.successes.count, 3);
    assert!(report.stages[1].results.is_empty());
}

/// One H100 and one A100 replica, each its own simulator server.
const MIXED: &str = "
name: mixed
seed: 4
workload:
  type: synthetic
  input: {uniform: {min: 20, max: 40}}
  output: {fixed: {value: 4}}
load: {type: constant, stages: [{rate: 100, duration: 200ms}]}
pool: {replicas: 1, speedup: 10, also: [{replicas: 1, profile: a100-llama3-8b}]}
strategies:
- {router: round-robin}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_pool_starts_every_group_behind_one_gateway() {
    let s = scenario(MIXED);
    let plans = plan(&s).unwrap();
    let report = live::run(&s, &plans, None, &Progress::hidden())
        .await
        .unwrap();
    assert_eq!(
        report.pool.profile,
        "1 × h100-llama3-8b + 1 × a100-llama3-8b"
    );
    let r = report.result(0, "round-robin").unwrap();
    assert_eq!(r.summary.failures.count, 0, "{:?}", r.summary.failures);
    // Both servers were in the gateway's pool: round-robin gave each half.
    assert_eq!(r.requests_per_endpoint, [10, 10]);
    assert_eq!(r.preemptions_per_endpoint.len(), 2);
}

/// The bundled chat-service trace replayed over HTTP: its arrival times, at four times
/// its pace, and its shared system prompts, which reach the simulator's prefix cache.
const TRACE: &str = "
name: trace
seed: 5
workload: {type: trace, path: testdata/traces/chat-service.jsonl, block_tokens: 64}
load: {type: trace, stages: [{rate: 26.7, duration: 1s}]}
pool: {replicas: 1, speedup: 4}
strategies:
- {router: round-robin}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_replayed_over_http_with_its_shared_prompts() {
    let s = scenario(TRACE);
    let plans = plan(&s).unwrap();
    let planned = plans[0].requests.len();
    // 1 s at 26.7 req/s, about 4 × the trace's own pace, replays its first 4 s.
    let trace = TraceSpec {
        path: "testdata/traces/chat-service.jsonl".into(),
        block_tokens: 64,
        chat: false,
        num_requests: None,
    }
    .read()
    .unwrap();
    let replayed = 26.7 / trace.native_rate().unwrap();
    let first = trace.entries.iter().filter(|e| e.at < replayed).count();
    assert_eq!(planned, first);
    assert!(planned > 15, "{planned}");
    let report = live::run(&s, &plans, None, &Progress::hidden())
        .await
        .unwrap();
    let r = report.result(0, "round-robin").unwrap();
    assert_eq!(r.summary.failures.count, 0, "{:?}", r.summary.failures);
    assert_eq!(r.summary.successes.count, planned as u64);
    // Every request starts with one of four system prompts of 4 to 40 blocks: most of
    // what arrives after the first few is already cached on the one replica.
    let hit = r.summary.successes.prefix_cache_hit_rate;
    assert!(hit > 0.5, "prefix-cache hit rate {hit}");
}

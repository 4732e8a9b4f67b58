//! The pool simulation's tests: an idle replica's TTFT, round-robin's spread, prefix
//! affinity under GIE's default profile, herding under scrape lag (and igw's profile
//! avoiding it), token-load's booking, determinism, and that every request ends
//! exactly once; LoRA in `tests/lora.rs`. Seeded RNGs only; nothing here reads a
//! clock.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::epp::config::{from_yaml_str, gie_default, igw_default};
use crate::sim::engine::EngineConfig;
use crate::sim::metrics::FinishReason;
use crate::sim::options::EngineOptions;

mod lora;

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

fn engine() -> EngineConfig {
    EngineOptions::default().engine_config().unwrap()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Ordinary-vocabulary token ids; the exact values only matter for prefix hashing.
fn tokens(rng: &mut StdRng, n: usize) -> Vec<u32> {
    (0..n).map(|_| rng.random_range(1_000..100_000)).collect()
}

fn request(arrival: Duration, prompt: Vec<u32>, output: usize) -> DesRequest {
    DesRequest {
        arrival,
        prompt,
        output: vec![11; output],
        lora: None,
        finish_reason: FinishReason::Length,
        body_len: None,
        prefix_bytes: None,
        after: None,
    }
}

/// `n` unrelated requests, one every `gap`.
fn workload(seed: u64, n: usize, gap: Duration, prompt: usize, output: usize) -> Vec<DesRequest> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| request(gap * i as u32, tokens(&mut rng, prompt), output))
        .collect()
}

fn pool(n: usize) -> PoolConfig {
    PoolConfig::replicas(&engine(), n, MODEL, 7)
}

fn queue_only() -> Router {
    let yaml = "\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
";
    Router::epp(from_yaml_str(yaml, "queue-only").unwrap())
}

fn per_endpoint(records: &[RequestRecord]) -> BTreeMap<usize, usize> {
    let mut out = BTreeMap::new();
    for r in records {
        *out.entry(r.endpoint.expect("routed")).or_default() += 1;
    }
    out
}

/// Every request finished exactly once, with the tokens it asked for, and the engines
/// are empty.
fn check_complete(report: &DesReport, outputs: &[usize]) {
    assert_eq!(report.finished, report.records.len());
    for (r, &want) in report.records.iter().zip(outputs) {
        assert_eq!(r.error, None, "request {}", r.id);
        let (first, done) = (r.first_token.unwrap(), r.done.unwrap());
        assert!(r.arrival <= first && first <= done, "{r:?}");
        assert_eq!(r.output_tokens as usize, want, "{r:?}");
        assert_eq!(r.finish_reason, Some(FinishReason::Length));
    }
    let served: u64 = report.engines.iter().map(|e| e.requests).sum();
    assert_eq!(served as usize, report.records.len());
    assert!(report.engines.iter().all(|e| e.left_over == 0));
}

#[test]
fn an_idle_replica_answers_in_overhead_plus_one_prefill_step() {
    // calibrate's published setup: 18 ms frontend + 6.9 + 0.028 × 204 ms = 30.612 ms.
    let config = EngineOptions {
        max_num_seqs: Some(128),
        no_prefix_caching: true,
        no_chunked_prefill: true,
        max_model_len: Some(512),
        ..Default::default()
    }
    .engine_config()
    .unwrap();
    let pool = PoolConfig::replicas(&config, 1, MODEL, 0);
    for router in [Router::RoundRobin, Router::epp(gie_default())] {
        let reqs = workload(1, 1, ms(0), 204, 64);
        let report = simulate(&pool, router, &reqs).unwrap();
        let r = &report.records[0];
        let ttft = r.first_token.unwrap() - r.arrival;
        assert!(
            (ttft.as_secs_f64() * 1000.0 - 30.612).abs() < 0.001,
            "{ttft:?}"
        );
        check_complete(&report, &[64]);
    }
}

#[test]
fn round_robin_spreads_evenly() {
    let reqs = workload(2, 100, ms(3), 100, 20);
    let report = simulate(&pool(4), Router::RoundRobin, &reqs).unwrap();
    let counts = per_endpoint(&report.records);
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [25; 4]);
    for (i, r) in report.records.iter().enumerate() {
        assert_eq!(r.endpoint, Some(i % 4));
    }
}

/// 5 system prompts of 512 tokens, each request a prompt plus a 32-token question, the
/// groups interleaved one request every 40 ms.
fn shared_prefix_workload() -> (Vec<DesRequest>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(3);
    let prefixes: Vec<Vec<u32>> = (0..5).map(|_| tokens(&mut rng, 512)).collect();
    let mut reqs = Vec::new();
    let mut groups = Vec::new();
    for i in 0..60 {
        let g = i % 5;
        let mut prompt = prefixes[g].clone();
        prompt.extend(tokens(&mut rng, 32));
        reqs.push(request(ms(40) * i as u32, prompt, 30));
        groups.push(g);
    }
    (reqs, groups)
}

#[test]
fn gie_default_keeps_a_prefix_on_one_endpoint() {
    let (reqs, groups) = shared_prefix_workload();
    let report = simulate(&pool(4), Router::epp(gie_default()), &reqs).unwrap();
    check_complete(&report, &[30; 60]);
    let mut homes: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (r, g) in report.records.iter().zip(&groups) {
        homes.entry(*g).or_default().insert(r.endpoint.unwrap());
    }
    for (g, endpoints) in &homes {
        assert_eq!(endpoints.len(), 1, "prefix {g} went to {endpoints:?}");
    }
    // After each prefix's first request, the 512 shared tokens (32 blocks) are cached.
    for r in report.records.iter().skip(5) {
        assert_eq!(r.cached_tokens, 512, "{r:?}");
    }
    let cached: u64 = report.engines.iter().map(|e| e.cached_tokens).sum();
    assert_eq!(cached, 55 * 512);

    // Round-robin scatters the prefixes and caches less.
    let (reqs, _) = shared_prefix_workload();
    let rr = simulate(&pool(4), Router::RoundRobin, &reqs).unwrap();
    let rr_cached: u64 = rr.engines.iter().map(|e| e.cached_tokens).sum();
    assert!(rr_cached < cached, "{rr_cached} vs {cached}");
}

/// Engine 0 has room for everything; engines 1–3 run one request at a time, so the
/// warm-up leaves them with queues. A burst then arrives 10 ms after a scrape.
fn herd(router: Router) -> BTreeMap<usize, usize> {
    let mut narrow = engine();
    narrow.max_num_seqs = 1;
    let mut pool = pool(4);
    for e in &mut pool.engines[1..] {
        e.max_num_seqs = narrow.max_num_seqs;
    }
    // Warm-up: 40 long requests over the first 40 ms, all routed on the time-0 scrape.
    let mut reqs = workload(4, 40, ms(1), 64, 2_000);
    // The burst: 20 requests at one instant, 10 ms after the 50 ms scrape.
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20 {
        reqs.push(request(ms(60), tokens(&mut rng, 64), 10));
    }
    let report = simulate(&pool, router, &reqs).unwrap();
    check_complete(&report, &[vec![2_000; 40], vec![10; 20]].concat());
    per_endpoint(&report.records[40..])
}

#[test]
fn stale_metrics_herd_a_queue_scorer_but_not_igw_default() {
    let herded = herd(queue_only());
    assert_eq!(
        herded.len(),
        1,
        "the whole burst on one endpoint: {herded:?}"
    );
    let spread = herd(Router::epp(igw_default()));
    assert!(
        spread.len() >= 3,
        "igw-default spreads the burst: {spread:?}"
    );
    assert!(spread.values().all(|&n| n < 20), "{spread:?}");
}

const TOKEN_LOAD_ONLY: &str = "\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: token-load-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: token-load-scorer
";

/// An EPP that routes on `token-load-scorer` alone.
fn token_load_only() -> Router {
    Router::epp(from_yaml_str(TOKEN_LOAD_ONLY, "token-load").unwrap())
}

#[test]
fn the_epp_sizes_a_request_by_the_body_a_live_client_would_send() {
    let router = token_load_only();
    let mut rng = StdRng::seed_from_u64(4);
    // Seven requests with 50-token prompts that stay in flight for seconds; the first
    // goes out as a 40 kB body (10,000 tokens by GIE's bytes / 4), the rest as their
    // prompt text (~200 bytes). Sized by its body, the first outweighs all the others
    // together, so they all go to the other endpoint; sized by its prompt alone, they
    // would split between the two.
    let mut reqs: Vec<DesRequest> = (0..7)
        .map(|i| request(ms(i), tokens(&mut rng, 50), 2_000))
        .collect();
    reqs[0].body_len = Some(40_000);
    let report = simulate(&pool(2), router, &reqs).unwrap();
    check_complete(&report, &[2_000; 7]);
    let first = report.records[0].endpoint.unwrap();
    for (i, r) in report.records.iter().enumerate().skip(1) {
        assert_ne!(r.endpoint.unwrap(), first, "request {i}");
    }
}

#[test]
fn token_load_books_tokens_by_size_and_releases_them_at_the_end() {
    let router = token_load_only();
    let mut rng = StdRng::seed_from_u64(9);
    // One long prompt that finishes quickly, then four short prompts that stay in
    // flight for seconds: the short ones hold fewer estimated tokens together than
    // the long one, so all of them go to the other endpoint.
    let mut reqs = vec![request(Duration::ZERO, tokens(&mut rng, 1_000), 20)];
    for i in 1..=4 {
        reqs.push(request(ms(i), tokens(&mut rng, 50), 2_000));
    }
    // Long after the long request ended: its endpoint holds nothing any more.
    for _ in 0..4 {
        reqs.push(request(ms(5_000), tokens(&mut rng, 50), 10));
    }
    let report = simulate(&pool(2), router, &reqs).unwrap();
    check_complete(&report, &[vec![20], vec![2_000; 4], vec![10; 4]].concat());
    let endpoint = |i: usize| report.records[i].endpoint.unwrap();
    let long = endpoint(0);
    assert!(report.records[0].done.unwrap() < ms(5_000));
    for i in 1..=4 {
        assert_ne!(endpoint(i), long, "short request {i} avoids the long one");
    }
    for i in 5..=8 {
        assert_eq!(
            endpoint(i),
            long,
            "request {i}: the long one's tokens were released"
        );
    }
}

#[test]
fn least_tokens_weighs_requests_by_their_prompt_and_output() {
    let mut rng = StdRng::seed_from_u64(11);
    // One request holding 1,050 tokens, then four of 60 that stay in flight: they
    // all go to the other endpoint (4 × 60 < 1,050), as the next four would after
    // the long one ends.
    let mut reqs = vec![request(Duration::ZERO, tokens(&mut rng, 50), 1_000)];
    for i in 1..=4 {
        reqs.push(request(ms(i), tokens(&mut rng, 50), 10));
    }
    let report = simulate(&pool(2), Router::LeastTokens, &reqs).unwrap();
    check_complete(&report, &[vec![1_000], vec![10; 4]].concat());
    let long = report.records[0].endpoint.unwrap();
    for r in &report.records[1..] {
        assert_ne!(r.endpoint.unwrap(), long, "{r:?}");
    }
    // least-request, by count alone, always puts some of the four beside the long
    // one (after one each, counts tie).
    let by_count = simulate(&pool(2), Router::LeastRequest, &reqs).unwrap();
    let beside = by_count.records[1..]
        .iter()
        .filter(|r| r.endpoint == by_count.records[0].endpoint)
        .count();
    assert!(beside >= 1, "{beside}");
}

#[test]
fn same_inputs_same_records() {
    let run = |router: Router| {
        let mut reqs = workload(6, 400, ms(2), 200, 150);
        let (prefixed, _) = shared_prefix_workload();
        reqs.extend(prefixed);
        let mut pool = pool(4);
        for e in &mut pool.engines {
            e.profile.step_noise = 0.1;
        }
        simulate(&pool, router, &reqs).unwrap()
    };
    let routers: [fn() -> Router; 4] = [
        || Router::epp(gie_default()),
        || Router::epp(igw_default()),
        || Router::Random,
        || Router::LeastRequest,
    ];
    for make in routers {
        let (a, b) = (run(make()), run(make()));
        assert_eq!(a.records.len(), b.records.len());
        for (x, y) in a.records.iter().zip(&b.records) {
            assert_eq!(x, y);
        }
        assert_eq!(a, b);
    }
}

#[test]
fn every_request_finishes_once_under_every_router() {
    let outputs: Vec<usize> = (0..300).map(|i| 1 + (i * 37) % 300).collect();
    let mut rng = StdRng::seed_from_u64(8);
    let make = |rng: &mut StdRng| -> Vec<DesRequest> {
        outputs
            .iter()
            .enumerate()
            .map(|(i, &n)| request(ms(i as u64 % 97), tokens(rng, 1 + (i * 53) % 900), n))
            .collect()
    };
    // A small KV cache forces preemptions, so recomputed requests are covered too.
    let mut pool = pool(3);
    for e in &mut pool.engines {
        e.num_blocks = 400;
    }
    let routers: [fn() -> Router; 5] = [
        || Router::epp(gie_default()),
        || Router::epp(igw_default()),
        || Router::RoundRobin,
        || Router::Random,
        || Router::LeastRequest,
    ];
    let mut preempted = 0;
    for make_router in routers {
        let report = simulate(&pool, make_router(), &make(&mut rng)).unwrap();
        check_complete(&report, &outputs);
        preempted += report.engines.iter().map(|e| e.preemptions).sum::<u64>();
        assert!(report.scrapes >= report.end.as_millis() as u64 / 50);
    }
    assert!(preempted > 0, "the small cache preempts");
}

#[test]
fn refusals_and_missing_candidates_are_recorded_not_lost() {
    let mut reqs = workload(9, 3, ms(1), 10, 5);
    reqs[1].prompt = vec![42; 9_000]; // longer than max_model_len
    let report = simulate(&pool(2), Router::RoundRobin, &reqs).unwrap();
    let r = &report.records[1];
    // As the simulator's server would answer: 400, its message, vLLM's wording.
    let error = r.error.as_ref().unwrap();
    assert_eq!(error.label(), "400 - Context Window");
    assert!(
        error.message.contains("maximum context length"),
        "{error:?}"
    );
    assert_eq!(r.done, Some(r.arrival));
    assert_eq!(report.finished, 2);

    // Metrics older than the staleness threshold leave the EPP no candidate.
    let mut stale = pool(2);
    stale.scrape_interval = Duration::from_secs(5);
    let reqs = workload(9, 2, Duration::from_secs(3), 10, 5);
    let report = simulate(&stale, Router::epp(gie_default()), &reqs).unwrap();
    assert!(report.records[0].error.is_none());
    // As the gateway would answer: 503 with GIE's plain-text body.
    let error = report.records[1].error.as_ref().unwrap();
    assert_eq!(error.label(), "503 - Service Unavailable");
    assert!(
        error
            .message
            .starts_with("inference error: ServiceUnavailable - ")
    );
    assert!(error.message.contains("fresh metrics"), "{error:?}");
}

#[test]
fn prompt_bytes_are_the_decoded_text() {
    let mut rng = StdRng::seed_from_u64(10);
    let mut ids = tokens(&mut rng, 300);
    ids.push(u32::MAX); // unknown ids decode to nothing
    assert_eq!(
        router::prompt_bytes(&ids),
        crate::sim::tokens::decode(&ids).into_bytes()
    );
    // A token holding half of a multi-byte character: U+FFFD, as decode gives.
    let e_acute = crate::sim::tokens::encode("é");
    let partial: Vec<u32> = (0..100_000u32)
        .filter(|&t| {
            crate::sim::tokens::token_bytes(t).is_some_and(|b| b.len() == 1 && b[0] >= 0x80)
        })
        .take(1)
        .collect();
    assert_eq!(
        router::prompt_bytes(&partial),
        crate::sim::tokens::decode(&partial).into_bytes()
    );
    assert_eq!(router::prompt_bytes(&e_acute), "é".as_bytes());
}

#[test]
fn prompt_bytes_through_one_cache_match_the_decoded_text() {
    let mut rng = StdRng::seed_from_u64(11);
    // Tokens holding a lone byte of a multi-byte character, to mix in.
    let partial: Vec<u32> = (0..20_000u32)
        .filter(|&t| {
            crate::sim::tokens::token_bytes(t).is_some_and(|b| b.len() == 1 && b[0] >= 0x80)
        })
        .take(8)
        .collect();
    assert!(!partial.is_empty());
    let prompts: Vec<Vec<u32>> = (0..40)
        .map(|i| {
            let mut ids = tokens(&mut rng, 1 + i * 7);
            for k in 0..i % 4 {
                let at = rng.random_range(0..=ids.len());
                ids.insert(at, partial[(i + k) % partial.len()]);
            }
            ids
        })
        .collect();
    for (ids, bytes) in prompts.iter().zip(router::prompt_bytes_each(&prompts)) {
        assert_eq!(bytes, crate::sim::tokens::decode(ids).into_bytes());
    }
}

#[test]
fn a_session_turn_is_sent_when_the_turn_it_waits_for_ends() {
    let mut rng = StdRng::seed_from_u64(12);
    // Turn 1 is planned at 0 but waits for turn 0; turn 2 waits for turn 1 but is
    // planned long after it ends; an unrelated request runs on its own.
    let mut reqs = vec![
        request(Duration::ZERO, tokens(&mut rng, 100), 50),
        request(Duration::ZERO, tokens(&mut rng, 150), 50),
        request(ms(60_000), tokens(&mut rng, 200), 50),
        request(ms(1), tokens(&mut rng, 100), 50),
    ];
    reqs[1].after = Some(0);
    reqs[2].after = Some(1);
    let report = simulate(&pool(2), Router::RoundRobin, &reqs).unwrap();
    check_complete(&report, &[50; 4]);
    let r = &report.records;
    assert_eq!(r[1].arrival, r[0].done.unwrap(), "sent as turn 0 ends");
    assert!(
        r[0].done.unwrap() > ms(100),
        "turn 0 took a while: {:?}",
        r[0]
    );
    assert_eq!(r[2].arrival, ms(60_000), "its planned time is later");
    assert_eq!(
        r[3].arrival,
        ms(1),
        "a request that waits for none is on time"
    );
    // The scraper kept going through the idle minute before turn 2.
    assert!(report.scrapes > 60_000 / 50, "{} scrapes", report.scrapes);
}

#[test]
fn a_turn_waiting_for_a_failed_request_is_still_sent() {
    let mut rng = StdRng::seed_from_u64(13);
    // Turn 0's prompt is longer than the model's context: it fails at once.
    let config = EngineOptions {
        max_model_len: Some(256),
        ..Default::default()
    }
    .engine_config()
    .unwrap();
    let pool = PoolConfig::replicas(&config, 1, MODEL, 7);
    let mut reqs = vec![
        request(Duration::ZERO, tokens(&mut rng, 400), 10),
        request(Duration::ZERO, tokens(&mut rng, 50), 10),
    ];
    reqs[1].after = Some(0);
    let report = simulate(&pool, Router::RoundRobin, &reqs).unwrap();
    assert!(report.records[0].error.is_some(), "{:?}", report.records[0]);
    let second = &report.records[1];
    assert_eq!(second.error, None, "{second:?}");
    assert_eq!(second.arrival, report.records[0].done.unwrap());
    assert_eq!(second.output_tokens, 10);
}

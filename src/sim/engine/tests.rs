//! Engine behaviour tests: token budget, batch limits, prefix hits, preemption and
//! recovery, LoRA slots and cancellation. Every test drives the engine with explicit
//! times; nothing here reads a clock.

use std::time::Duration;

use super::*;
use crate::sim::metrics::FinishReason;
use crate::sim::profile::LatencyProfile;

/// A small engine: 1 ms fixed step, 0.01 ms per prefill token, no frontend overhead.
fn config() -> EngineConfig {
    let mut profile = LatencyProfile::builtin("h100-llama3-8b").unwrap();
    profile.step_fixed_ms = 1.0;
    profile.prefill_ms_per_token = 0.01;
    profile.decode_ms_per_1k_context_tokens = 0.0;
    profile.frontend_overhead_ms = 0.0;
    let mut c = EngineConfig::from_profile(profile);
    c.num_blocks = 64;
    c.block_size = 4;
    c.max_num_seqs = 8;
    c.max_num_batched_tokens = 64;
    c.max_model_len = 256;
    c
}

fn request(id: RequestId, prompt: Vec<u32>, output_len: usize) -> NewRequest {
    NewRequest {
        id,
        prompt,
        output: (0..output_len as u32).map(|i| 1000 + i).collect(),
        finish_reason: FinishReason::Length,
        lora: None,
    }
}

fn prompt(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32).map(|i| i * 7 + salt).collect()
}

/// Steps until the engine is empty, returning every event and the final time.
fn run_to_end(engine: &mut Engine, mut now: Duration) -> (Vec<EngineEvent>, Duration) {
    let mut events = Vec::new();
    for _ in 0..100_000 {
        match engine.step(now) {
            StepResult::Ran(out) => {
                now = out.end;
                events.extend(out.events);
            }
            StepResult::Idle { wake_at: Some(t) } => now = t,
            StepResult::Idle { wake_at: None } => return (events, now),
        }
    }
    panic!("engine did not drain");
}

fn ran(result: StepResult) -> StepOutput {
    match result {
        StepResult::Ran(out) => out,
        other => panic!("expected a step, got {other:?}"),
    }
}

fn tokens_of(events: &[EngineEvent], id: RequestId) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Token { id: i, token, .. } if *i == id => Some(*token),
            _ => None,
        })
        .collect()
}

fn finished(events: &[EngineEvent], id: RequestId) -> Option<(FinishReason, Usage)> {
    events.iter().find_map(|e| match e {
        EngineEvent::Finished {
            id: i,
            reason,
            usage,
        } if *i == id => Some((*reason, *usage)),
        _ => None,
    })
}

#[test]
fn a_request_prefills_then_decodes_one_token_per_step() {
    let mut e = Engine::new(config()).unwrap();
    e.add_request(request(1, prompt(10, 0), 3), Duration::ZERO)
        .unwrap();
    let first = ran(e.step(Duration::ZERO));
    assert_eq!(first.shape.prefill_tokens, 10);
    assert_eq!(
        first.duration,
        Duration::from_micros(1100),
        "1 ms + 10 × 0.01 ms"
    );
    assert_eq!(
        first.events,
        vec![EngineEvent::Token {
            id: 1,
            index: 0,
            token: 1000
        }]
    );
    let second = ran(e.step(first.end));
    assert_eq!(second.shape.decode_seqs, 1);
    assert_eq!(second.shape.decode_context_tokens, 10);
    let (events, _) = run_to_end(&mut e, second.end);
    let (reason, usage) = finished(&events, 1).unwrap();
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(usage.prompt_tokens, 10);
    assert_eq!(usage.completion_tokens, 3);
    assert_eq!(e.num_requests(), 0);
    assert_eq!(e.gauges().kv_cache_usage_perc, 0.0);
    assert_eq!(e.metrics().generation_tokens_total, 3);
    assert_eq!(e.metrics().time_to_first_token_seconds.count(), 1);
    assert_eq!(e.metrics().inter_token_latency_seconds.count(), 2);
}

#[test]
fn the_token_budget_chunks_long_prompts() {
    let mut e = Engine::new(config()).unwrap();
    e.add_request(request(1, prompt(100, 0), 2), Duration::ZERO)
        .unwrap();
    e.add_request(request(2, prompt(30, 1), 2), Duration::ZERO)
        .unwrap();
    let step = ran(e.step(Duration::ZERO));
    assert_eq!(step.shape.prefill_tokens, 64, "the whole budget, no more");
    assert!(step.events.is_empty(), "a partial prefill samples nothing");
    assert_eq!(
        e.gauges().num_requests_running,
        1,
        "request 2 got no budget"
    );
    let step = ran(e.step(step.end));
    // 36 tokens finish request 1's prompt; request 2 gets the remaining 28 of 30.
    assert_eq!(step.shape.prefill_tokens, 64);
    assert_eq!(tokens_of(&step.events, 1), vec![1000]);
    assert!(tokens_of(&step.events, 2).is_empty());
    let step = ran(e.step(step.end));
    assert_eq!(step.shape.decode_seqs, 1);
    assert_eq!(step.shape.prefill_tokens, 2);
}

#[test]
fn without_chunked_prefill_a_prompt_waits_for_a_whole_budget() {
    let mut c = config();
    c.enable_chunked_prefill = false;
    c.max_num_batched_tokens = 256;
    c.num_blocks = 128;
    let mut e = Engine::new(c).unwrap();
    e.add_request(request(1, prompt(200, 0), 2), Duration::ZERO)
        .unwrap();
    e.add_request(request(2, prompt(100, 1), 2), Duration::ZERO)
        .unwrap();
    let step = ran(e.step(Duration::ZERO));
    assert_eq!(
        step.shape.prefill_tokens, 200,
        "request 2 does not fit whole"
    );
    assert_eq!(e.gauges().num_requests_waiting, 1);
    let step = ran(e.step(step.end));
    assert_eq!(step.shape.prefill_tokens, 100);
    assert_eq!(step.shape.decode_seqs, 1);
}

#[test]
fn max_num_seqs_caps_the_batch() {
    let mut c = config();
    c.max_num_seqs = 2;
    let mut e = Engine::new(c).unwrap();
    for id in 0..5 {
        e.add_request(request(id, prompt(4, id as u32), 5), Duration::ZERO)
            .unwrap();
    }
    let step = ran(e.step(Duration::ZERO));
    assert_eq!(step.events.len(), 2);
    let g = e.gauges();
    assert_eq!((g.num_requests_running, g.num_requests_waiting), (2, 3));
    let (events, _) = run_to_end(&mut e, step.end);
    for id in 0..5 {
        assert!(finished(&events, id).is_some(), "request {id} finished");
    }
}

#[test]
fn a_cached_prefix_cuts_prefill() {
    let mut e = Engine::new(config()).unwrap();
    let shared = prompt(40, 3);
    e.add_request(request(1, shared.clone(), 2), Duration::ZERO)
        .unwrap();
    let (_, now) = run_to_end(&mut e, Duration::ZERO);

    // Same 40 tokens + 8 new ones: 10 full blocks of 4 are cached.
    let mut longer = shared.clone();
    longer.extend(prompt(8, 99));
    e.add_request(request(2, longer, 2), now).unwrap();
    let step = ran(e.step(now));
    assert_eq!(
        step.shape.prefill_tokens, 8,
        "only the uncached suffix is computed"
    );
    let (events, _) = run_to_end(&mut e, step.end);
    assert_eq!(finished(&events, 2).unwrap().1.cached_tokens, 40);
    assert_eq!(e.metrics().prefix_cache_hits_total, 40);
    assert_eq!(e.metrics().prefix_cache_queries_total, 40 + 48);

    // An identical prompt still computes its last token (vLLM needs its logits).
    e.add_request(request(3, shared, 1), now).unwrap();
    let step = ran(e.step(now));
    assert_eq!(step.shape.prefill_tokens, 4, "the last block is recomputed");
}

#[test]
fn prefix_caching_off_computes_everything() {
    let mut c = config();
    c.enable_prefix_caching = false;
    let mut e = Engine::new(c).unwrap();
    e.add_request(request(1, prompt(40, 3), 2), Duration::ZERO)
        .unwrap();
    let (_, now) = run_to_end(&mut e, Duration::ZERO);
    e.add_request(request(2, prompt(40, 3), 2), now).unwrap();
    assert_eq!(ran(e.step(now)).shape.prefill_tokens, 40);
    assert_eq!(e.metrics().prefix_cache_hits_total, 0);
}

#[test]
fn adapters_do_not_share_prefix_blocks() {
    let mut e = Engine::new(config()).unwrap();
    e.add_request(request(1, prompt(40, 3), 1), Duration::ZERO)
        .unwrap();
    let (_, now) = run_to_end(&mut e, Duration::ZERO);
    let mut r = request(2, prompt(40, 3), 1);
    r.lora = Some("sql-lora".into());
    e.add_request(r, now).unwrap();
    assert_eq!(ran(e.step(now)).shape.prefill_tokens, 40);
}

#[test]
fn kv_exhaustion_preempts_the_newest_and_everything_recovers() {
    let mut c = config();
    // 12 blocks of 4 = 48 tokens of KV. Three requests of 8 prompt + 12 output need
    // 5 blocks each at the end (19 tokens), 15 in all: they cannot all stay resident.
    c.num_blocks = 12;
    let mut e = Engine::new(c).unwrap();
    for id in 0..3 {
        e.add_request(request(id, prompt(8, id as u32 * 100), 12), Duration::ZERO)
            .unwrap();
    }
    let (events, _) = run_to_end(&mut e, Duration::ZERO);
    assert!(
        e.metrics().num_preemptions_total > 0,
        "the cache is too small for all three"
    );
    for id in 0..3 {
        let expected: Vec<u32> = (0..12).map(|i| 1000 + i).collect();
        assert_eq!(
            tokens_of(&events, id),
            expected,
            "request {id} output intact"
        );
        assert_eq!(finished(&events, id).unwrap().1.completion_tokens, 12);
    }
    assert_eq!(e.gauges().kv_cache_usage_perc, 0.0);
}

#[test]
fn the_newest_request_is_the_one_preempted() {
    let mut c = config();
    c.num_blocks = 6;
    let mut e = Engine::new(c).unwrap();
    // Each prompt of 8 takes 2 blocks; the first decode step of each needs a third.
    for id in 0..3 {
        e.add_request(request(id, prompt(8, id as u32 * 100), 8), Duration::ZERO)
            .unwrap();
    }
    let step = ran(e.step(Duration::ZERO));
    assert_eq!(step.events.len(), 3, "all three prefilled: 6 blocks used");
    let step = ran(e.step(step.end));
    // Request 0 needs a block: request 2 (newest) is preempted; request 1 then takes
    // the block freed by request 2's second block.
    assert_eq!(e.metrics().num_preemptions_total, 1);
    assert_eq!(tokens_of(&step.events, 0).len(), 1);
    assert_eq!(tokens_of(&step.events, 1).len(), 1);
    assert!(tokens_of(&step.events, 2).is_empty());
    let g = e.gauges();
    assert_eq!((g.num_requests_running, g.num_requests_waiting), (2, 1));
}

#[test]
fn max_loras_limits_adapters_in_a_batch_and_loads_cost_time() {
    let mut c = config();
    c.max_loras = 1;
    c.lora_load_time = Duration::from_millis(5);
    let mut e = Engine::new(c).unwrap();
    for (id, lora) in [(1, "a"), (2, "b"), (3, "a")] {
        let mut r = request(id, prompt(4, id as u32), 3);
        r.lora = Some(lora.into());
        e.add_request(r, Duration::ZERO).unwrap();
    }
    let step = ran(e.step(Duration::ZERO));
    // Requests 1 and 3 (adapter a) run; request 2 (adapter b) waits for the slot.
    assert_eq!(tokens_of(&step.events, 1).len(), 1);
    assert_eq!(tokens_of(&step.events, 3).len(), 1);
    assert!(tokens_of(&step.events, 2).is_empty());
    assert!(
        step.duration >= Duration::from_millis(5),
        "first use of `a` loads it"
    );
    let g = e.gauges();
    assert_eq!(g.running_lora_adapters, vec!["a".to_string()]);
    assert_eq!(g.waiting_lora_adapters, vec!["b".to_string()]);
    let step = ran(e.step(step.end));
    assert!(
        step.duration < Duration::from_millis(5),
        "`a` is resident now"
    );
    let (events, _) = run_to_end(&mut e, step.end);
    assert!(finished(&events, 2).is_some());
    assert_eq!(e.lora_loads(), 2);
}

#[test]
fn aborts_free_blocks_and_slots_anywhere() {
    let mut c = config();
    c.max_num_seqs = 1;
    c.max_loras = 1;
    let mut e = Engine::new(c).unwrap();
    let mut r = request(1, prompt(20, 0), 50);
    r.lora = Some("a".into());
    e.add_request(r, Duration::ZERO).unwrap();
    e.add_request(request(2, prompt(20, 1), 50), Duration::ZERO)
        .unwrap();
    let step = ran(e.step(Duration::ZERO));
    assert!(e.gauges().kv_cache_usage_perc > 0.0);
    assert!(e.abort(2, step.end), "waiting request aborted");
    assert!(e.abort(1, step.end), "running request aborted");
    assert!(!e.abort(1, step.end), "already gone");
    let g = e.gauges();
    assert_eq!(g.kv_cache_usage_perc, 0.0);
    assert_eq!((g.num_requests_running, g.num_requests_waiting), (0, 0));
    assert!(g.running_lora_adapters.is_empty());
    assert_eq!(e.metrics().request_success_total[2], 2, "counted as abort");
    assert!(matches!(
        e.step(step.end),
        StepResult::Idle { wake_at: None }
    ));
    // The freed adapter slot admits another adapter at once.
    let mut r = request(3, prompt(4, 2), 1);
    r.lora = Some("b".into());
    e.add_request(r, step.end).unwrap();
    let (events, _) = run_to_end(&mut e, step.end);
    assert!(finished(&events, 3).is_some());
}

#[test]
fn frontend_overhead_delays_scheduling_and_counts_in_ttft() {
    let mut c = config();
    c.profile.frontend_overhead_ms = 18.0;
    let mut e = Engine::new(c).unwrap();
    e.add_request(request(1, prompt(4, 0), 1), Duration::ZERO)
        .unwrap();
    let wake = match e.step(Duration::ZERO) {
        StepResult::Idle { wake_at: Some(t) } => t,
        other => panic!("expected idle until ready, got {other:?}"),
    };
    assert_eq!(wake, Duration::from_millis(18));
    let step = ran(e.step(wake));
    assert_eq!(step.end, Duration::from_micros(18_000 + 1_040));
    let ttft = e.metrics().time_to_first_token_seconds.sum();
    assert!(
        (ttft - 0.01904).abs() < 1e-9,
        "TTFT {ttft} counts from arrival"
    );
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let mut e = Engine::new(config()).unwrap();
    assert_eq!(
        e.add_request(request(1, vec![], 1), Duration::ZERO),
        Err(AddError::EmptyPrompt)
    );
    assert_eq!(
        e.add_request(request(1, prompt(4, 0), 0), Duration::ZERO),
        Err(AddError::NoOutput)
    );
    assert!(matches!(
        e.add_request(request(1, prompt(250, 0), 10), Duration::ZERO),
        Err(AddError::TooLong { total: 260, .. })
    ));
    e.add_request(request(1, prompt(4, 0), 1), Duration::ZERO)
        .unwrap();
    assert_eq!(
        e.add_request(request(1, prompt(4, 0), 1), Duration::ZERO),
        Err(AddError::DuplicateId(1))
    );
    let mut c = config();
    c.num_blocks = 2;
    let mut small = Engine::new(c).unwrap();
    assert!(matches!(
        small.add_request(request(1, prompt(10, 0), 5), Duration::ZERO),
        Err(AddError::ExceedsKvCapacity {
            needed: 4,
            capacity: 2
        })
    ));
    // Without adapter slots a LoRA request would wait forever: it is refused, and
    // a base-model request still runs.
    let mut c = config();
    c.max_loras = 0;
    let mut no_lora = Engine::new(c).unwrap();
    let mut adapter = request(1, prompt(4, 0), 1);
    adapter.lora = Some("sql-lora".into());
    let refused = no_lora.add_request(adapter, Duration::ZERO);
    assert_eq!(refused, Err(AddError::LoraDisabled("sql-lora".into())));
    assert_eq!(refused.unwrap_err().status(), 400);
    no_lora
        .add_request(request(2, prompt(4, 0), 1), Duration::ZERO)
        .unwrap();
}

#[test]
fn configs_that_cannot_work_are_refused() {
    let mut c = config();
    c.enable_chunked_prefill = false;
    c.max_num_batched_tokens = 100;
    let err = Engine::new(c).err().unwrap();
    assert!(err.contains("--max-num-batched-tokens"), "{err}");
    let mut c = config();
    c.block_size = 0;
    assert!(Engine::new(c).err().unwrap().contains("--block-size"));
}

#[test]
fn noise_is_seeded() {
    let mut c = config();
    c.profile.step_noise = 0.2;
    let durations = |seed: u64| {
        let mut c = c.clone();
        c.seed = seed;
        let mut e = Engine::new(c).unwrap();
        e.add_request(request(1, prompt(8, 0), 20), Duration::ZERO)
            .unwrap();
        let mut now = Duration::ZERO;
        let mut out = Vec::new();
        while let StepResult::Ran(s) = e.step(now) {
            now = s.end;
            out.push(s.duration);
        }
        out
    };
    assert_eq!(durations(7), durations(7));
    assert_ne!(durations(7), durations(8));
    assert!(durations(7).windows(2).any(|w| w[0] != w[1]));
}

#[test]
fn a_client_request_records_its_n_and_longest_choice_once() {
    let mut e = Engine::new(config()).unwrap();
    let children = vec![request(1, prompt(12, 0), 3), request(2, prompt(12, 0), 7)];
    let params = RequestParams {
        n: 2,
        max_tokens: Some(7),
    };
    e.add_parents(vec![Parent { children, params }], Duration::ZERO)
        .unwrap();
    e.add_request(request(3, prompt(12, 9), 2), Duration::ZERO)
        .unwrap();
    run_to_end(&mut e, Duration::ZERO);
    let m = e.metrics();
    // The pair once (n = 2, longest 7) and the lone request (n = 1, its 2 tokens).
    assert_eq!(m.request_params_n.count(), 2);
    assert_eq!(m.request_params_n.sum(), 3.0);
    assert_eq!(m.request_max_num_generation_tokens.sum(), 9.0);
    // max_tokens per choice that carries one.
    assert_eq!(m.request_params_max_tokens.count(), 2);
    assert_eq!(m.request_params_max_tokens.sum(), 14.0);
    // The second choice reads the first's prompt blocks from the cache (block size 4).
    assert_eq!(m.request_prefill_kv_computed_tokens.count(), 3);
    let computed = m.request_prefill_kv_computed_tokens.sum() as u64;
    assert_eq!(computed + m.prompt_tokens_cached_total, 36);
    assert_eq!(
        m.prompt_tokens_local_compute_total + m.prompt_tokens_cached_total,
        m.prompt_tokens_total
    );
}

#[test]
fn a_batch_with_one_bad_choice_adds_nothing() {
    let mut e = Engine::new(config()).unwrap();
    let children = vec![request(1, prompt(4, 0), 3), request(2, vec![], 3)];
    let parent = Parent {
        children,
        params: RequestParams::default(),
    };
    assert_eq!(
        e.add_parents(vec![parent], Duration::ZERO),
        Err(AddError::EmptyPrompt)
    );
    assert_eq!(e.num_requests(), 0);
    let twice = vec![request(5, prompt(4, 0), 3), request(5, prompt(4, 0), 3)];
    let parent = Parent {
        children: twice,
        params: RequestParams::default(),
    };
    assert_eq!(
        e.add_parents(vec![parent], Duration::ZERO),
        Err(AddError::DuplicateId(5))
    );
    assert_eq!(e.num_requests(), 0);
    // Aborting every choice still records the client request once.
    let children = vec![request(7, prompt(4, 0), 30), request(8, prompt(4, 1), 30)];
    let params = RequestParams {
        n: 2,
        max_tokens: None,
    };
    e.add_parents(vec![Parent { children, params }], Duration::ZERO)
        .unwrap();
    assert!(e.abort(7, Duration::ZERO) && e.abort(8, Duration::ZERO));
    assert_eq!(e.metrics().request_params_n.count(), 1);
    assert_eq!(e.metrics().request_params_max_tokens.count(), 0);
}

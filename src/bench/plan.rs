//! A scenario turned into what is sent: per stage, every request with its send time.
//!
//! The plan is made once and shared by every strategy, so they all see the same
//! requests at the same times (the comparison is paired). The workload is one seeded
//! stream consumed across the stages in order; a finite workload that runs short is
//! repeated from its start (chat sessions as new sessions with prompts of their own,
//! [`sessions::repeated`]). Each stage's arrivals have their own seed, derived from
//! the scenario's, so adding a stage does not change the others' times.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::arrivals::{ArrivalProcess, Stage};
use super::retokenize::retokenize;
use super::scenario::Scenario;
use super::workload::{
    LORA_STREAM, LoraAssigner, TraceSpec, Workload, WorkloadError, WorkloadRequest, WorkloadSpec,
    sessions,
};
use crate::sim::tokens;

/// One request and when to send it, from its stage's start (pool time).
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRequest {
    pub at: Duration,
    pub request: Arc<WorkloadRequest>,
}

/// One stage's requests, in send order.
#[derive(Clone, Debug, PartialEq)]
pub struct StagePlan {
    /// 0-based, in run order.
    pub index: usize,
    pub stage: Stage,
    pub requests: Vec<PlannedRequest>,
}

impl StagePlan {
    /// Per request, the earlier request of this stage whose reply it waits for: a
    /// session's turn `k` waits for the latest turn `k − 1` of the same session sent
    /// before it (a client sends its next message once it has read the reply). A turn
    /// whose previous one fell in an earlier stage waits for nothing, since every stage
    /// starts on a fresh pool. Both drivers send a waiting request at its planned time
    /// or when the reply is complete, whichever is later.
    pub fn predecessors(&self) -> Vec<Option<usize>> {
        let mut latest: HashMap<(u64, usize), usize> = HashMap::new();
        self.requests
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let turn = p.request.session?;
                let before = turn
                    .turn
                    .checked_sub(1)
                    .and_then(|k| latest.get(&(turn.session, k)).copied());
                latest.insert((turn.session, turn.turn), i);
                before
            })
            .collect()
    }
}

/// Builds every stage's plan, its prompts counted with the pool's tokenizer
/// ([`retokenize`]). Fails only when the workload cannot be built.
pub fn plan(scenario: &Scenario) -> Result<Vec<StagePlan>, WorkloadError> {
    let mut plans = draw(scenario)?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    retokenize(&mut plans, &scenario.pool.loaded_tokenizer, threads)?;
    Ok(plans)
}

/// Every stage's plan with the built-in tokenizer's ids.
fn draw(scenario: &Scenario) -> Result<Vec<StagePlan>, WorkloadError> {
    if let (ArrivalProcess::Trace, WorkloadSpec::Trace(spec)) =
        (scenario.load.process, &scenario.workload)
    {
        return plan_trace(scenario, spec);
    }
    let stages = scenario.stages();
    let times: Vec<Vec<Duration>> = stages
        .iter()
        .enumerate()
        .map(|(i, &stage)| {
            scenario
                .load
                .process
                .schedule(stage, stage_seed(scenario.seed, i))
        })
        .collect();
    let total: usize = times.iter().map(Vec::len).sum();
    let spec = sized(&scenario.workload, total);
    let mut drawn: Vec<Arc<WorkloadRequest>> =
        Workload::new(&spec, &scenario.lora_traffic_split, scenario.seed)?
            .take(total)
            .map(Arc::new)
            .collect();
    if matches!(scenario.workload, WorkloadSpec::Sessions(_)) {
        interleave_sessions(&mut drawn);
    }
    if drawn.is_empty() && total > 0 {
        return Err(WorkloadError::Invalid(
            "the workload yields no requests".into(),
        ));
    }
    let have = drawn.len();
    // Repeated sessions become new sessions that share nothing with the originals.
    let sessions = drawn
        .iter()
        .filter_map(|r| r.session.map(|t| t.session + 1))
        .max()
        .unwrap_or(0);
    let repeats: Vec<usize> = (have..total).collect();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let copies = tokens::map_with_encoders(&repeats, threads, 256, |own, &i| {
        let original = &drawn[i % have];
        match original.session {
            None => original.clone(),
            Some(_) => Arc::new(sessions::repeated(original, i / have, sessions, own)),
        }
    });
    drawn.extend(copies);
    let mut drawn = drawn.into_iter();
    Ok(stages
        .into_iter()
        .zip(times)
        .enumerate()
        .map(|(index, (stage, times))| StagePlan {
            index,
            stage,
            requests: times
                .into_iter()
                .map(|at| PlannedRequest {
                    at,
                    request: drawn.next().expect("one request drawn per arrival"),
                })
                .collect(),
        })
        .collect())
}

/// Replays a trace's own arrivals. Every stage replays the trace from its start (the
/// trace repeated end to end if the stage outlasts it), compressed or stretched so
/// that the stage gets its `rate` on average while keeping the trace's bursts and
/// lulls: a stage at twice the trace's own rate replays `2 × duration` of it in
/// `duration`. Stages then differ in their rate only, as a sweep should, and the
/// higher ones see more of the trace.
fn plan_trace(scenario: &Scenario, spec: &TraceSpec) -> Result<Vec<StagePlan>, WorkloadError> {
    let trace = spec.read()?;
    let native = trace.native_rate().ok_or_else(|| {
        WorkloadError::Invalid(format!(
            "{}: load.type trace needs a trace with at least two requests at different \
             times (it sets the pace); use load.type poisson for this one",
            trace.path.display()
        ))
    })?;
    let stages = scenario.stages();
    // Per stage, (send time, entry index): the trace from its start, `rate / native`
    // times faster.
    let sends: Vec<Vec<(Duration, usize)>> = stages
        .iter()
        .map(|stage| {
            let scale = stage.rate / native;
            let window = trace.window(0.0, stage.duration.as_secs_f64() * scale);
            let at = |offset: f64| Duration::from_secs_f64(offset / scale);
            window
                .into_iter()
                .map(|(offset, i)| (at(offset), i))
                .collect()
        })
        .collect();
    // Only the entries some stage sends are turned into prompts.
    let mut needed: Vec<usize> = sends.iter().flatten().map(|&(_, i)| i).collect();
    needed.sort_unstable();
    needed.dedup();
    let mut requests: Vec<Option<Arc<WorkloadRequest>>> = vec![None; trace.entries.len()];
    for (&i, r) in needed
        .iter()
        .zip(spec.requests_of(&trace, &needed, scenario.seed))
    {
        requests[i] = Some(Arc::new(r));
    }
    // Adapters are drawn per send, so a trace replayed twice spreads anew; the stream
    // is the one `Workload` draws from, so the split matches other workloads'.
    let mut lora = match scenario.lora_traffic_split.is_empty() {
        true => None,
        false => Some(LoraAssigner::new(
            &scenario.lora_traffic_split,
            scenario.seed ^ LORA_STREAM,
        )?),
    };
    Ok(stages
        .into_iter()
        .zip(sends)
        .enumerate()
        .map(|(index, (stage, sends))| StagePlan {
            index,
            stage,
            requests: sends
                .into_iter()
                .map(|(at, i)| {
                    let built = requests[i].clone().expect("every sent entry was built");
                    let request = match &mut lora {
                        None => built,
                        Some(assigner) => {
                            let mut r = (*built).clone();
                            r.lora = Some(assigner.assign(None).to_string());
                            Arc::new(r)
                        }
                    };
                    PlannedRequest { at, request }
                })
                .collect(),
        })
        .collect())
}

/// Orders multi-turn sessions turn by turn: every session's first turn, then every
/// second turn, and so on (sessions in their own order within a turn). The workload
/// yields them session by session; planned that way a session's turns would be due
/// one arrival gap apart, long before the previous reply is in, and would all wait
/// for it. Interleaved, turn `k + 1` of a session is due about `num_sessions / rate`
/// seconds after turn `k`.
fn interleave_sessions(requests: &mut [Arc<WorkloadRequest>]) {
    requests.sort_by_key(|r| r.session.map(|s| (s.turn, s.session)));
}

/// The workload with `num_requests` set to what the stages need: ShareGPT's sample is
/// drawn (and oversampled) the way vLLM draws `--num-prompts`, and a trace builds
/// prompts for its first requests only.
fn sized(spec: &WorkloadSpec, total: usize) -> WorkloadSpec {
    let mut spec = spec.clone();
    match &mut spec {
        WorkloadSpec::ShareGpt(s) => s.num_requests = total,
        WorkloadSpec::Trace(s) => {
            s.num_requests = Some(s.num_requests.map_or(total, |n| n.min(total)).max(1))
        }
        _ => {}
    }
    spec
}

/// Stage `i`'s arrival seed: the scenario's seed mixed with the stage number.
fn stage_seed(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scenario::from_yaml_str;

    #[test]
    fn stages_share_one_workload_stream_and_are_seeded() {
        let s = from_yaml_str(
            "load:\n  type: constant\n  stages:\n  - {rate: 10, duration: 2s}\n  - {rate: 20, duration: 1s}\n",
            "t.yaml",
        )
        .unwrap();
        let p = plan(&s).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].requests.len(), 20);
        assert_eq!(p[1].requests.len(), 20);
        assert_eq!(p[1].requests[1].at, Duration::from_millis(50));
        // Different requests in each stage, the same ones for the same seed.
        assert_ne!(p[0].requests[0].request, p[1].requests[0].request);
        assert_eq!(p, plan(&s).unwrap());
    }

    #[test]
    fn session_turns_are_interleaved_so_a_session_waits_between_turns() {
        let s = from_yaml_str(
            "workload: {type: sessions, num_sessions: 4, source: {synthetic: {turns: {fixed: {value: 3}}, user: {fixed: {value: 5}}, reply: {fixed: {value: 5}}}}}\n\
             load: {type: constant, stages: [{rate: 12, duration: 1s}]}\n",
            "t.yaml",
        )
        .unwrap();
        let p = plan(&s).unwrap();
        let turns: Vec<(usize, u64)> = p[0]
            .requests
            .iter()
            .map(|r| {
                let t = r.request.session.unwrap();
                (t.turn, t.session)
            })
            .collect();
        let want: Vec<(usize, u64)> = (0..3).flat_map(|t| (0..4).map(move |s| (t, s))).collect();
        assert_eq!(turns, want);
        // Turn 1 of session s (index 4 + s) waits for its turn 0 (index s), and so on.
        let waits = p[0].predecessors();
        let want: Vec<Option<usize>> = (0..12usize).map(|i| i.checked_sub(4)).collect();
        assert_eq!(waits, want);
    }

    #[test]
    fn a_turn_whose_previous_one_is_in_an_earlier_stage_waits_for_nothing() {
        let s = from_yaml_str(
            "workload: {type: sessions, num_sessions: 2, source: {synthetic: {turns: {fixed: {value: 2}}, user: {fixed: {value: 5}}, reply: {fixed: {value: 5}}}}}\n\
             load: {type: constant, stages: [{rate: 3, duration: 1s}, {rate: 1, duration: 1s}]}\n",
            "t.yaml",
        )
        .unwrap();
        let p = plan(&s).unwrap();
        // Stage 0: s0 t0, s1 t0, s0 t1; stage 1: s1 t1, whose turn 0 ran in stage 0.
        assert_eq!(p[0].predecessors(), vec![None, None, Some(0)]);
        assert_eq!(p[1].requests[0].request.session.unwrap().turn, 1);
        assert_eq!(p[1].predecessors(), vec![None]);
        // Requests outside sessions wait for nothing.
        let plain = from_yaml_str(
            "load: {type: constant, stages: [{rate: 5, duration: 1s}]}\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(plan(&plain).unwrap()[0].predecessors(), vec![None; 5]);
    }

    #[test]
    fn repeated_sessions_are_new_sessions_with_prompts_of_their_own() {
        // 2 sessions × 2 turns = 4 requests for a stage of 10.
        let s = from_yaml_str(
            "workload: {type: sessions, num_sessions: 2, source: {synthetic: {turns: {fixed: {value: 2}}, user: {fixed: {value: 5}}, reply: {fixed: {value: 5}}}}}\n\
             load: {type: constant, stages: [{rate: 10, duration: 1s}]}\n",
            "t.yaml",
        )
        .unwrap();
        let p = plan(&s).unwrap();
        let r: Vec<&WorkloadRequest> = p[0].requests.iter().map(|p| &*p.request).collect();
        let ids: Vec<(u64, usize)> = r
            .iter()
            .map(|r| r.session.map(|t| (t.session, t.turn)).unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                (0, 0),
                (1, 0),
                (0, 1),
                (1, 1),
                (2, 0),
                (3, 0),
                (2, 1),
                (3, 1),
                (4, 0),
                (5, 0)
            ]
        );
        // A copy shares no more of its prompt with its original than two unrelated
        // sessions share (the chat template's opening), and its turn 1
        // still extends its own turn 0 (the prefix a cache can reuse).
        let common = |a: &WorkloadRequest, b: &WorkloadRequest| {
            let (a, b) = (&a.prompt_tokens, &b.prompt_tokens);
            a.iter().zip(b).take_while(|(x, y)| x == y).count()
        };
        let unrelated = common(r[0], r[1]);
        assert!(unrelated < r[0].prompt_tokens.len());
        assert!(
            common(r[4], r[0]) <= unrelated,
            "{} vs {unrelated}",
            common(r[4], r[0])
        );
        // Two copies also share their marker's `#`: one token, never a cache block.
        assert!(common(r[8], r[4]) <= unrelated + 1);
        assert!(common(r[8], r[0]) <= unrelated);
        assert!(
            common(r[6], r[4]) > unrelated,
            "turn 1 resends turn 0's prompt"
        );
        assert!(common(r[6], r[2]) <= unrelated, "not the original's turn 1");
        assert_eq!(r[4].output_tokens, r[0].output_tokens);
        // A copy's ids (the original's with the marker spliced in) are its text's.
        for copy in &r[4..] {
            let text = copy.prompt.flatten();
            assert_eq!(copy.prompt_tokens, crate::sim::tokens::encode(&text));
        }
        // And each copy's turn 1 waits for the copy's own turn 0.
        assert_eq!(p[0].predecessors()[6], Some(4));
        assert_eq!(p[0].predecessors()[7], Some(5));
    }

    #[test]
    fn a_short_finite_workload_repeats() {
        let s = from_yaml_str(
            "workload: {type: shared_prefix, num_groups: 1, num_prompts_per_group: 2, system_prompt_len: 5, question_len: 2, output_len: 3, num_requests: 3}\n\
             load: {type: constant, stages: [{rate: 10, duration: 1s}]}\n",
            "t.yaml",
        )
        .unwrap();
        let p = plan(&s).unwrap();
        let r = &p[0].requests;
        assert_eq!(r.len(), 10);
        assert_eq!(r[3].request, r[0].request);
        assert_eq!(r[9].request, r[0].request);
    }

    /// A four-request trace, one a second (a pass every 4 s), in a scenario with
    /// `load` as given.
    fn trace_scenario(test: &str, load: &str) -> Result<Scenario, String> {
        let dir = std::env::temp_dir().join(format!("igw-plan-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jsonl");
        let lines: Vec<String> = (0..4)
            .map(|i| {
                format!(
                    r#"{{"timestamp": {}, "input_length": {}, "output_length": 5}}"#,
                    i * 1000,
                    10 + i
                )
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let yaml = format!(
            "workload: {{type: trace, path: {}}}\nload: {load}\n",
            path.display()
        );
        from_yaml_str(&yaml, "t.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_trace_is_replayed_at_each_stages_rate_with_its_own_gaps() {
        let s = trace_scenario(
            "replay",
            "{type: trace, stages: [{rate: 2, duration: 3s}, {rate: 1, duration: 2s}]}",
        )
        .unwrap();
        let p = plan(&s).unwrap();
        let at =
            |k: usize| -> Vec<f64> { p[k].requests.iter().map(|r| r.at.as_secs_f64()).collect() };
        let len = |k: usize| -> Vec<usize> {
            (p[k].requests.iter())
                .map(|r| r.request.prompt_tokens.len())
                .collect()
        };
        // Twice the trace's pace: 6 s of it in 3 s, wrapping after its 4 s pass.
        assert_eq!(at(0), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(len(0), [10, 11, 12, 13, 10, 11]);
        // The next stage starts the trace again, at its own pace.
        assert_eq!(at(1), [0.0, 1.0]);
        assert_eq!(len(1), [10, 11]);
        assert_eq!(p, plan(&s).unwrap());
    }

    #[test]
    fn num_requests_replays_only_the_start_of_a_trace_at_its_own_pace() {
        let mut s =
            trace_scenario("capped", "{type: trace, stages: [{rate: 1, duration: 6s}]}").unwrap();
        if let WorkloadSpec::Trace(t) = &mut s.workload {
            t.num_requests = Some(2);
        }
        // Two requests 1 s apart repeat every 2 s, so 1 req/s is their own pace.
        let p = plan(&s).unwrap();
        let at: Vec<f64> = p[0].requests.iter().map(|r| r.at.as_secs_f64()).collect();
        assert_eq!(at, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let lens: Vec<usize> = (p[0].requests.iter())
            .map(|r| r.request.prompt_tokens.len())
            .collect();
        assert_eq!(lens, [10, 11, 10, 11, 10, 11]);
    }

    #[test]
    fn a_trace_gives_its_lengths_to_other_arrivals_and_its_times_only_to_its_own() {
        let s = trace_scenario(
            "lengths",
            "{type: constant, stages: [{rate: 10, duration: 1s}]}",
        )
        .unwrap();
        let p = plan(&s).unwrap();
        let lens: Vec<usize> = (p[0].requests.iter())
            .map(|r| r.request.prompt_tokens.len())
            .collect();
        // In the trace's order, repeated to fill the stage.
        assert_eq!(lens, [10, 11, 12, 13, 10, 11, 12, 13, 10, 11]);
        assert_eq!(p[0].requests[1].at, Duration::from_millis(100));

        // Fewer sends than the trace holds: only the first ones become prompts.
        let short = trace_scenario(
            "short",
            "{type: constant, stages: [{rate: 3, duration: 1s}]}",
        )
        .unwrap();
        let lens: Vec<usize> = (plan(&short).unwrap()[0].requests.iter())
            .map(|r| r.request.prompt_tokens.len())
            .collect();
        assert_eq!(lens, [10, 11, 12]);

        let err = from_yaml_str(
            "load: {type: trace, stages: [{rate: 1, duration: 1s}]}\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("load.type") && err.contains("workload.type: trace"),
            "{err}"
        );
    }
}

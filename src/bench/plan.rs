//! A scenario turned into what is sent: per stage, every request with its send time.
//!
//! The plan is made once and shared by every strategy, so they all see the same
//! requests at the same times (the comparison is paired). The workload is one seeded
//! stream consumed across the stages in order; a finite workload that runs short is
//! repeated from its start. Each stage's arrivals have their own seed, derived from
//! the scenario's, so adding a stage does not change the others' times.

use std::sync::Arc;
use std::time::Duration;

use super::arrivals::Stage;
use super::scenario::Scenario;
use super::workload::{Workload, WorkloadError, WorkloadRequest, WorkloadSpec};

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

/// Builds every stage's plan. Fails only when the workload cannot be built.
pub fn plan(scenario: &Scenario) -> Result<Vec<StagePlan>, WorkloadError> {
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
    for i in have..total {
        drawn.push(drawn[i % have].clone());
    }
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

/// Orders multi-turn sessions turn by turn: every session's first turn, then every
/// second turn, and so on (sessions in their own order within a turn). The workload
/// yields them session by session; sent that way a session's turns would leave one
/// arrival gap apart, long before the previous reply is in. Interleaved, turn `k + 1`
/// of a session is sent about `num_sessions / rate` seconds after turn `k`.
fn interleave_sessions(requests: &mut [Arc<WorkloadRequest>]) {
    requests.sort_by_key(|r| r.session.map(|s| (s.turn, s.session)));
}

/// The workload with ShareGPT's `num_requests` set to what the stages need, so the
/// sample is drawn (and oversampled) the way vLLM draws `--num-prompts`.
fn sized(spec: &WorkloadSpec, total: usize) -> WorkloadSpec {
    let mut spec = spec.clone();
    if let WorkloadSpec::ShareGpt(s) = &mut spec {
        s.num_requests = total;
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
}

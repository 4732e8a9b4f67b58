//! The scheduler end to end over hand-built profiles: GIE's hermetic scheduling cases
//! (gie-facts §9.1), clamping, failures and their HTTP codes, ordered fallbacks,
//! seeded tie-breaks, prefix affinity after `on_scheduled`, hook fan-out, and the
//! herding that scrape lag causes (DESIGN invariant 6). Seeded RNGs only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::plugins::PickerParams;
use super::plugins::inflight_load::InflightLoadScorer;
use super::plugins::kv_cache::KvCacheScorer;
use super::plugins::lora_affinity::LoraAffinityScorer;
use super::plugins::max_score::MaxScorePicker;
use super::plugins::prefix_cache::PrefixCacheScorer;
use super::plugins::queue::QueueScorer;
use super::plugins::single_profile::SingleProfileHandler;
use super::plugins::utilization::UtilizationDetector;
use super::prefix::PrefixParams;
use super::testing::{NOW, pod, request, rng, with_lora};
use super::*;

/// GIE v1.5's default profile: queue 2, kv 2, prefix 3, max-score picker.
fn gie_default() -> Scheduler {
    let profile = SchedulingProfile::new("default", Arc::new(MaxScorePicker::default()))
        .with_scorer(Arc::new(QueueScorer), 2.0)
        .with_scorer(Arc::new(KvCacheScorer), 2.0)
        .with_scorer(
            Arc::new(PrefixCacheScorer::new(PrefixParams::default())),
            3.0,
        );
    single(profile)
}

fn single(profile: SchedulingProfile) -> Scheduler {
    Scheduler::new(Arc::new(SingleProfileHandler), vec![profile])
}

fn decide(
    s: &Scheduler,
    req: &LlmRequest,
    cands: &[Candidate],
    seed: u64,
) -> Result<SchedulingResult, SchedulingError> {
    let mut r = rng(seed);
    let mut cycle = CycleState::default();
    let mut ctx = SchedulingContext::new(NOW, &mut r, &mut cycle);
    let result = s.schedule(req, cands, &mut ctx);
    if let Ok(res) = &result {
        s.on_scheduled(req, &cands[res.target()], ctx.cycle);
    }
    result
}

/// Schedules `req` over `cands` with `seed` and compares the destination list.
fn check(s: &Scheduler, req: &LlmRequest, cands: &[Candidate], seed: u64, want: &[usize]) {
    let got = decide(s, req, cands, seed).expect("scheduled");
    assert_eq!(got.primary, want, "seed {seed}");
}

#[test]
fn gie_hermetic_cases() {
    let req = request("my-model", "test1");
    // "select lower queue and kv cache": P(3, 0.2), P(0, 0.1), P(10, 0.2) → the second.
    let cands = [pod(0, 3, 0.2), pod(1, 0, 0.1), pod(2, 10, 0.2)];
    for seed in 0..8 {
        check(&gie_default(), &req, &cands, seed, &[1]);
    }
    let lora_profile = || {
        single(
            SchedulingProfile::new("default", Arc::new(MaxScorePicker::default()))
                .with_scorer(Arc::new(QueueScorer), 1.0)
                .with_scorer(Arc::new(KvCacheScorer), 1.0)
                .with_scorer(Arc::new(LoraAffinityScorer::default()), 1.0),
        )
    };
    let lora = request("sql-lora-1fdg2", "test2");
    // "select active lora, low queue": the pod running the adapter wins.
    let cands = [
        with_lora(pod(0, 0, 0.2), &["foo", "bar"], &[], 2),
        with_lora(pod(1, 0, 0.1), &["foo", "sql-lora-1fdg2"], &[], 2),
        with_lora(pod(2, 10, 0.2), &["foo", "bar"], &[], 2),
    ];
    check(&lora_profile(), &lora, &cands, 0, &[1]);
    // "select lora despite higher kv cache": 1 + 0.8 + 1 beats 1 + 0.9 + 0.
    let cands = [
        with_lora(pod(0, 0, 0.2), &["sql-lora-1fdg2"], &[], 2),
        with_lora(pod(1, 0, 0.1), &["foo", "bar"], &[], 2),
    ];
    check(&lora_profile(), &lora, &cands, 0, &[0]);
}

/// A scorer that returns fixed scores by candidate index.
struct Fixed(Vec<f64>);
impl Plugin for Fixed {}
impl Scorer for Fixed {
    fn score(
        &self,
        _: &LlmRequest,
        _: &[Candidate],
        subset: &[usize],
        _: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    ) {
        for (s, &i) in scores.iter_mut().zip(subset) {
            *s = self.0[i];
        }
    }
}

#[test]
fn scores_are_clamped_and_weighted_without_normalising() {
    let top2 = || {
        Arc::new(MaxScorePicker::new(PickerParams {
            max_num_of_endpoints: 2,
        }))
    };
    // Clamped: 5 → 1, NaN → 0, so totals are (1 + 0, 0.5 + 0.6).
    let s = single(
        SchedulingProfile::new("p", top2())
            .with_scorer(Arc::new(Fixed(vec![5.0, 0.5])), 1.0)
            .with_scorer(Arc::new(Fixed(vec![f64::NAN, 0.6])), 1.0),
    );
    let cands = [pod(0, 0, 0.), pod(1, 0, 0.)];
    check(&s, &request("m", ""), &cands, 0, &[1, 0]);
    // Weights are used as given: 3 × 0.4 = 1.2 beats 1 × 1.0.
    let s = single(
        SchedulingProfile::new("p", top2())
            .with_scorer(Arc::new(Fixed(vec![1.0, 0.0])), 1.0)
            .with_scorer(Arc::new(Fixed(vec![0.0, 0.4])), 3.0),
    );
    check(&s, &request("m", ""), &cands, 0, &[1, 0]);
}

#[test]
fn fallbacks_are_ordered_and_ties_follow_the_seed() {
    let s = single(
        SchedulingProfile::new(
            "p",
            Arc::new(MaxScorePicker::new(PickerParams {
                max_num_of_endpoints: 3,
            })),
        )
        .with_scorer(Arc::new(QueueScorer), 1.0),
    );
    let cands = [pod(0, 4, 0.), pod(1, 0, 0.), pod(2, 9, 0.), pod(3, 2, 0.)];
    check(&s, &request("m", ""), &cands, 0, &[1, 3, 0]);
    // Equal endpoints: each seed decides, always the same way.
    let equal: Vec<Candidate> = (0..4).map(|i| pod(i, 1, 0.5)).collect();
    let mut targets = std::collections::BTreeSet::new();
    for seed in 0..32 {
        let first = decide(&s, &request("m", ""), &equal, seed).unwrap().primary;
        assert_eq!(
            first,
            decide(&s, &request("m", ""), &equal, seed).unwrap().primary
        );
        targets.insert(first[0]);
    }
    assert_eq!(targets.len(), 4);
}

#[test]
fn failures_map_to_gie_codes() {
    let s = single(
        SchedulingProfile::new("strict", Arc::new(MaxScorePicker::default()))
            .with_filter(Arc::new(Dropper)),
    );
    let err = decide(&s, &request("m", ""), &[pod(0, 0, 0.)], 0).unwrap_err();
    assert_eq!(
        err,
        SchedulingError::NoEndpoint {
            profile: "strict".into()
        }
    );
    assert!(
        err.to_string().contains("failed to find target endpoint"),
        "{err}"
    );
    let err = decide(&gie_default(), &request("m", ""), &[], 0).unwrap_err();
    assert_eq!(err, SchedulingError::NoCandidates);
    // The utilization filter fails open rather than failing the profile.
    let s = single(
        SchedulingProfile::new("p", Arc::new(MaxScorePicker::default()))
            .with_filter(Arc::new(UtilizationDetector::default())),
    );
    check(&s, &request("m", ""), &[pod(0, 50, 0.99)], 0, &[0]);
}

/// A filter that drops everything.
struct Dropper;
impl Plugin for Dropper {}
impl Filter for Dropper {
    fn filter(
        &self,
        _: &LlmRequest,
        _: &[Candidate],
        _: &mut SchedulingContext<'_>,
        subset: &mut Vec<usize>,
    ) {
        subset.clear();
    }
}

/// Runs every profile in one round (or forever, if `looping`); the first success wins.
struct RunAll {
    looping: bool,
}
impl Plugin for RunAll {}
impl ProfileHandler for RunAll {
    fn pick(
        &self,
        _: &LlmRequest,
        profiles: &[SchedulingProfile],
        done: &[ProfileResult],
        next: &mut Vec<usize>,
    ) {
        if done.is_empty() || self.looping {
            next.extend(0..profiles.len());
        }
    }
    fn process_results(
        &self,
        _: &LlmRequest,
        results: &[ProfileResult],
    ) -> Result<usize, SchedulingError> {
        Ok(results
            .iter()
            .position(|r| r.targets.is_some())
            .unwrap_or(0))
    }
}

/// Counts its hook calls.
#[derive(Default)]
struct Counting(AtomicUsize, AtomicUsize);
impl Plugin for Counting {
    fn on_scheduled(&self, _: &LlmRequest, _: &Candidate, _: &mut CycleState) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn on_endpoint_removed(&self, _: &str) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}
impl Scorer for Counting {
    fn score(
        &self,
        _: &LlmRequest,
        _: &[Candidate],
        _: &[usize],
        _: &mut SchedulingContext<'_>,
        _: &mut [f64],
    ) {
    }
}

#[test]
fn multi_profile_results_and_hooks_once_per_instance() {
    let shared = Arc::new(Counting::default());
    let picker = Arc::new(MaxScorePicker::default());
    let profiles = || {
        vec![
            SchedulingProfile::new("first", picker.clone())
                .with_filter(Arc::new(Dropper))
                .with_scorer(shared.clone(), 1.0),
            SchedulingProfile::new("second", picker.clone()).with_scorer(shared.clone(), 1.0),
        ]
    };
    let s = Scheduler::new(Arc::new(RunAll { looping: false }), profiles());
    let res = decide(&s, &request("m", ""), &[pod(0, 0, 0.)], 0).unwrap();
    assert_eq!(&*res.primary_profile, "second");
    assert_eq!(res.profiles.len(), 2);
    assert_eq!(res.profiles[0].targets, None);
    s.on_endpoint_removed("pod-0");
    assert_eq!(shared.0.load(Ordering::Relaxed), 1);
    assert_eq!(shared.1.load(Ordering::Relaxed), 1);
    let looping = Scheduler::new(Arc::new(RunAll { looping: true }), profiles());
    let err = decide(&looping, &request("m", ""), &[pod(0, 0, 0.)], 0).unwrap_err();
    assert!(matches!(err, SchedulingError::Handler(_)), "{err:?}");
}

#[test]
fn a_repeated_prefix_follows_the_first_endpoint() {
    let s = gie_default();
    let cands: Vec<Candidate> = (0..8).map(|i| pod(i, 1, 0.3)).collect();
    let system = "You are a helpful assistant. ".repeat(40);
    let first = decide(&s, &request("m", &format!("{system} Q0")), &cands, 99).unwrap();
    for (k, seed) in (1..20).zip(1000..) {
        let req = request("m", &format!("{system} Q{k}"));
        check(&s, &req, &cands, seed, &first.primary);
    }
    // After the endpoint leaves, the prefix no longer pulls anywhere in particular.
    s.on_endpoint_removed(&cands[first.target()].endpoint.name);
    let targets: std::collections::BTreeSet<usize> = (0..16)
        .map(|seed| {
            let mut r = rng(seed);
            let mut cycle = CycleState::default();
            let mut ctx = SchedulingContext::new(NOW, &mut r, &mut cycle);
            s.schedule(&request("m", &system), &cands, &mut ctx)
                .unwrap()
                .target()
        })
        .collect();
    assert!(targets.len() > 1, "{targets:?}");
}

/// Sends `n` requests inside one scrape interval: metrics stay as scraped, while the
/// host counts what it sent. Returns how many went to each endpoint.
fn burst(s: &Scheduler, mut cands: Vec<Candidate>, n: usize) -> Vec<u64> {
    let mut r = rng(7);
    let mut cycle = CycleState::default();
    for k in 0..n {
        let req = request("m", &format!("request {k}"));
        let mut ctx = SchedulingContext::new(NOW, &mut r, &mut cycle);
        let target = s.schedule(&req, &cands, &mut ctx).unwrap().target();
        cands[target].sent_since_scrape += 1;
        cands[target].in_flight += 1;
    }
    cands.iter().map(|c| c.sent_since_scrape).collect()
}

#[test]
fn lag_makes_queue_scorer_herd_and_inflight_load_spread() {
    // The last scrape showed pod-1 idlest; 30 requests arrive before the next one.
    let stale = vec![pod(0, 2, 0.2), pod(1, 0, 0.2), pod(2, 1, 0.2)];
    let by = |scorer: Arc<dyn Scorer>| {
        single(
            SchedulingProfile::new("p", Arc::new(MaxScorePicker::default()))
                .with_scorer(scorer, 1.0),
        )
    };
    assert_eq!(
        burst(&by(Arc::new(QueueScorer)), stale.clone(), 30),
        [0, 30, 0]
    );
    // Estimated queues end level: 2 + 9 = 0 + 11 = 1 + 10 = 11.
    let spread = burst(&by(Arc::new(InflightLoadScorer::default())), stale, 30);
    assert_eq!(spread, [9, 11, 10]);
}

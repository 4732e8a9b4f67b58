//! Every plugin's formula with hand-computed numbers: scorers, pickers, the
//! utilization filter and detector, and Go durations. Seeded RNGs only.

use std::sync::Arc;
use std::time::Duration;

use super::concurrency::{ConcurrencyDetector, ConcurrencyMode, ConcurrencyParams};
use super::inflight_load::{InflightLoadParams, InflightLoadScorer};
use super::kv_cache::KvCacheScorer;
use super::least_request::LeastRequestPicker;
use super::load_aware_prefix::{LoadAwarePrefixParams, LoadAwarePrefixScorer};
use super::lora_affinity::{LoraAffinityParams, LoraAffinityScorer};
use super::max_score::MaxScorePicker;
use super::queue::QueueScorer;
use super::random::RandomPicker;
use super::round_robin::RoundRobinPicker;
use super::running_requests::RunningRequestsScorer;
use super::token_load::{TokenLoadParams, TokenLoadScorer};
use super::utilization::{UtilizationDetector, UtilizationParams};
use super::weighted_random::WeightedRandomPicker;
use super::weighted_round_robin::{WeightedRoundRobinPicker, WrrParams};
use super::*;
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::testing::{NOW, pod, request, rng, unscraped, with_lora};
use crate::epp::scheduler::{
    CycleState, Filter, Picker, Plugin, SchedulingContext, Scored, Scorer,
};

/// Scores every candidate with `scorer` and compares with `want` (to 1e-9).
fn check(scorer: &dyn Scorer, req: &LlmRequest, cands: &[Candidate], want: &[f64]) {
    let mut r = rng(1);
    let mut cycle = CycleState::default();
    let mut ctx = SchedulingContext::new(NOW, &mut r, &mut cycle);
    let subset: Vec<usize> = (0..cands.len()).collect();
    let mut got = vec![0.0; cands.len()];
    scorer.score(req, cands, &subset, &mut ctx, &mut got);
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 1e-9,
            "candidate {k}: got {got:?}, want {want:?}"
        );
    }
}

fn running(i: usize, r: u64) -> Candidate {
    let mut c = pod(i, 0, 0.0);
    c.metrics.as_mut().unwrap().running_requests = r;
    c
}

fn tokens(mut c: Candidate, in_flight_tokens: u64) -> Candidate {
    c.in_flight_tokens = in_flight_tokens;
    c
}

fn sent(mut c: Candidate, sent: u64, in_flight: u64) -> Candidate {
    c.sent_since_scrape = sent;
    c.in_flight = in_flight;
    c
}

/// A named scorer case: candidates and the scores they must get.
type Case = (&'static str, Box<dyn Scorer>, Vec<Candidate>, Vec<f64>);

#[test]
fn metric_scorers_follow_gie_formulas() {
    let req = request("m", "");
    let cases: Vec<Case> = vec![
        // (maxQ − q)/(maxQ − minQ) = (10−3)/10, 10/10, 0/10.
        (
            "queue",
            Box::new(QueueScorer),
            vec![pod(0, 3, 0.), pod(1, 0, 0.), pod(2, 10, 0.)],
            vec![0.7, 1.0, 0.0],
        ),
        (
            "queue equal",
            Box::new(QueueScorer),
            vec![pod(0, 5, 0.), pod(1, 5, 0.)],
            vec![1.0, 1.0],
        ),
        // Unscraped endpoints score 0 and do not enter min/max.
        (
            "queue unscraped",
            Box::new(QueueScorer),
            vec![pod(0, 2, 0.), unscraped(1), pod(2, 6, 0.)],
            vec![1.0, 0.0, 0.0],
        ),
        (
            "kv",
            Box::new(KvCacheScorer),
            vec![pod(0, 0, 0.2), pod(1, 0, 0.1), pod(2, 0, 0.9), unscraped(3)],
            vec![0.8, 0.9, 0.1, 0.0],
        ),
        (
            "running",
            Box::new(RunningRequestsScorer),
            vec![running(0, 2), running(1, 4), running(2, 6)],
            vec![1.0, 0.5, 0.0],
        ),
        // L = q + sent: 3, 5, 10 → (10−3)/7, (10−5)/7, 0.
        (
            "inflight-load",
            Box::new(InflightLoadScorer::default()),
            vec![pod(0, 3, 0.), sent(pod(1, 0, 0.), 5, 5), pod(2, 10, 0.)],
            vec![1.0, 5.0 / 7.0, 0.0],
        ),
        // With inFlightWeight 0.5: L = 3 + 0.5·2 = 4, 5, 10 → 1, 5/6, 0.
        (
            "inflight-load weighted",
            Box::new(InflightLoadScorer::new(InflightLoadParams {
                in_flight_weight: 0.5,
            })),
            vec![
                sent(pod(0, 3, 0.), 0, 2),
                sent(pod(1, 0, 0.), 5, 0),
                pod(2, 10, 0.),
                unscraped(3),
            ],
            vec![1.0, 5.0 / 6.0, 0.0, 0.0],
        ),
        // 1 − min(1, tokens / 4,194,304); metrics play no part (unscraped too).
        (
            "token-load",
            Box::new(TokenLoadScorer::default()),
            vec![
                tokens(pod(0, 9, 0.9), 0),
                tokens(pod(1, 0, 0.), 1_048_576),
                tokens(unscraped(2), 4_194_304),
                tokens(pod(3, 0, 0.), 9_000_000),
            ],
            vec![1.0, 0.75, 0.0, 0.0],
        ),
        // A threshold of 1,000: 250 → 0.75. A threshold ≤ 0 means GIE's default.
        (
            "token-load threshold",
            Box::new(TokenLoadScorer::new(TokenLoadParams {
                queue_threshold_tokens: 1_000,
            })),
            vec![tokens(pod(0, 0, 0.), 250), tokens(pod(1, 0, 0.), 1_000)],
            vec![0.75, 0.0],
        ),
        (
            "token-load default threshold",
            Box::new(TokenLoadScorer::new(TokenLoadParams {
                queue_threshold_tokens: -5,
            })),
            vec![tokens(pod(0, 0, 0.), 2_097_152)],
            vec![0.5],
        ),
    ];
    for (name, scorer, cands, want) in cases {
        eprintln!("case {name}");
        check(scorer.as_ref(), &req, &cands, &want);
    }
}

#[test]
fn lora_affinity_tiers() {
    let req = request("sql-lora", "");
    let cands = [
        with_lora(pod(0, 0, 0.), &["sql-lora"], &[], 1), // running: 1.0
        with_lora(pod(1, 0, 0.), &["foo"], &[], 2),      // 1 + 0 < 2: 0.8
        with_lora(pod(2, 0, 0.), &["foo"], &["sql-lora"], 2), // full, waiting: 0.6
        with_lora(pod(3, 0, 0.), &["foo", "bar"], &[], 2), // full, absent: 0
        with_lora(pod(4, 0, 0.), &[], &[], 0),           // no LoRA metric: 0
        unscraped(5),
    ];
    check(
        &LoraAffinityScorer::default(),
        &req,
        &cands,
        &[1.0, 0.8, 0.6, 0.0, 0.0, 0.0],
    );
}

/// A request for the base model: GIE treats it as an adapter nobody runs (free slot
/// 0.8, full 0); with `baseModelIsActive` every endpoint that reports serving it scores
/// 1.0, and one that reports another model (or none) keeps GIE's tiers.
#[test]
fn lora_affinity_base_model() {
    let base = "meta-llama/Llama-3.1-8B-Instruct";
    let req = request(base, "");
    let serving = |c: Candidate, model: Option<&str>| {
        let mut c = c;
        c.metrics.as_mut().expect("scraped").served_model = model.map(Arc::from);
        c
    };
    let cands = [
        serving(with_lora(pod(0, 0, 0.), &["a"], &[], 2), Some(base)), // free slot
        serving(with_lora(pod(1, 0, 0.), &["a", "b"], &[], 2), Some(base)), // full
        serving(with_lora(pod(2, 0, 0.), &["a", "b"], &[], 2), Some("other")),
        with_lora(pod(3, 0, 0.), &["a", "b"], &[], 2), // no model_name label
    ];
    check(
        &LoraAffinityScorer::default(),
        &req,
        &cands,
        &[0.8, 0.0, 0.0, 0.0],
    );
    let neutral = LoraAffinityScorer::new(LoraAffinityParams {
        base_model_is_active: true,
    });
    check(&neutral, &req, &cands, &[1.0, 1.0, 0.0, 0.0]);
    // An adapter request is scored as GIE scores it either way.
    let adapter = request("a", "");
    check(&neutral, &adapter, &cands, &[1.0, 1.0, 1.0, 1.0]);
    let absent = request("c", "");
    check(&neutral, &absent, &cands, &[0.8, 0.0, 0.0, 0.0]);
}

#[test]
fn load_aware_prefix_gives_way_to_load() {
    // 128 bytes = two 64-byte blocks; pod-0 holds both.
    let prompt = "x".repeat(128);
    let req = request("m", &prompt);
    let scorer = LoadAwarePrefixScorer::new(LoadAwarePrefixParams::default());
    scorer.on_scheduled(&req, &pod(0, 0, 0.), &mut CycleState::default());
    let cases = [
        // Within slack (S = 4): the prefix score as it is.
        ([0, 0, 0], [1.0, 0.0, 0.0]),
        ([4, 0, 2], [1.0, 0.0, 0.0]),
        // e0 = 8 = S + 4 → 2^−1; e0 = 12 → 2^−2 (excess over the least loaded, 0).
        ([8, 0, 0], [0.5, 0.0, 0.0]),
        ([12, 0, 4], [0.25, 0.0, 0.0]),
        // The excess counts from the least loaded: 14 − 2 = 12 → 2^−2.
        ([14, 2, 3], [0.25, 0.0, 0.0]),
    ];
    for (queues, want) in cases {
        let cands: Vec<Candidate> = (0..3).map(|i| pod(i, queues[i], 0.)).collect();
        check(&scorer, &req, &cands, &want);
    }
    // A miss scores nothing anywhere: the profile's load scorers decide.
    let other = request("m", &"y".repeat(128));
    let cands = [pod(0, 2, 0.), pod(1, 0, 0.), pod(2, 4, 0.), unscraped(3)];
    check(&scorer, &other, &cands, &[0.0, 0.0, 0.0, 0.0]);
}

/// Runs `picker` over `scores` (candidate i has score `scores[i]`) with a seed.
fn pick(picker: &dyn Picker, cands: &[Candidate], scores: &[f64], seed: u64) -> Vec<usize> {
    let mut r = rng(seed);
    let mut cycle = CycleState::default();
    let mut ctx = SchedulingContext::new(NOW, &mut r, &mut cycle);
    let mut scored: Vec<Scored> = scores
        .iter()
        .enumerate()
        .map(|(index, &score)| Scored { index, score })
        .collect();
    let mut picked = Vec::new();
    picker.pick(cands, &mut scored, &mut ctx, &mut picked);
    picked
}

fn pods(n: usize) -> Vec<Candidate> {
    (0..n).map(|i| pod(i, 0, 0.)).collect()
}

fn picker_params(n: usize) -> PickerParams {
    PickerParams {
        max_num_of_endpoints: n,
    }
}

#[test]
fn max_score_orders_by_score_and_breaks_ties_by_seed() {
    let cands = pods(4);
    let scores = [0.5, 0.9, 0.9, 0.1];
    let top3 = MaxScorePicker::new(picker_params(3));
    let mut firsts = Vec::new();
    for seed in 0..32 {
        let got = pick(&top3, &cands, &scores, seed);
        assert_eq!(got.len(), 3);
        assert!(got[..2] == [1, 2] || got[..2] == [2, 1], "{got:?}");
        assert_eq!(got[2], 0);
        // The same seed makes the same choice.
        assert_eq!(got, pick(&top3, &cands, &scores, seed));
        firsts.push(got[0]);
    }
    // Both tied endpoints win under some seed.
    assert!(firsts.contains(&1) && firsts.contains(&2));
    assert_eq!(
        pick(&MaxScorePicker::default(), &cands, &scores, 0).len(),
        1
    );
}

#[test]
fn random_pickers() {
    let cands = pods(3);
    let mut seen = [false; 3];
    for seed in 0..64 {
        let got = pick(
            &RandomPicker::new(picker_params(2)),
            &cands,
            &[0.0; 3],
            seed,
        );
        assert_eq!(got.len(), 2);
        assert_ne!(got[0], got[1]);
        seen[got[0]] = true;
    }
    assert_eq!(seen, [true; 3]);

    // A-Res: only pod-1 has weight, so it always comes first; the rest follow.
    let wr = WeightedRandomPicker::new(picker_params(3));
    for seed in 0..32 {
        let got = pick(&wr, &cands, &[0.0, 0.7, 0.0], seed);
        assert_eq!(got[0], 1);
        assert_eq!(got.len(), 3);
    }
    // Weights 3:1 → about 75 % first picks over many seeds.
    let wins = (0..4000)
        .filter(|&seed| {
            pick(
                &WeightedRandomPicker::default(),
                &cands[..2],
                &[0.75, 0.25],
                seed,
            )[0] == 0
        })
        .count();
    assert!((2800..3200).contains(&wins), "{wins}");
}

#[test]
fn classic_pickers() {
    let cands = pods(3);
    let rr = RoundRobinPicker::new(picker_params(2));
    let got: Vec<Vec<usize>> = (0..4).map(|_| pick(&rr, &cands, &[0.0; 3], 0)).collect();
    assert_eq!(got, [vec![0, 1], vec![1, 2], vec![2, 0], vec![0, 1]]);

    let mut busy = pods(3);
    for (c, n) in busy.iter_mut().zip([3, 1, 2]) {
        c.in_flight = n;
    }
    let lr = LeastRequestPicker::new(picker_params(3));
    assert_eq!(pick(&lr, &busy, &[1.0, 0.0, 0.5], 7), [1, 2, 0]);

    // Smooth WRR, pod-0 weight 3, pod-1 default 1: credits (3,1)→0, (2,2)→0 (table
    // order), (1,3)→1, (4,0)→0.
    let params = WrrParams {
        weights: [("pod-0".to_string(), 3)].into(),
        ..WrrParams::default()
    };
    let wrr = WeightedRoundRobinPicker::new(params);
    let seq: Vec<usize> = (0..8)
        .map(|_| pick(&wrr, &cands[..2], &[0.0; 2], 0)[0])
        .collect();
    assert_eq!(seq, [0, 0, 1, 0, 0, 0, 1, 0]);
    wrr.on_endpoint_removed("pod-0");
}

/// Filters `cands` with `detector` and returns the kept indices.
fn filtered(detector: &dyn Filter, cands: &[Candidate], now: Duration) -> Vec<usize> {
    let mut r = rng(1);
    let mut cycle = CycleState::default();
    let mut ctx = SchedulingContext::new(now, &mut r, &mut cycle);
    let mut subset: Vec<usize> = (0..cands.len()).collect();
    detector.filter(&request("m", ""), cands, &mut ctx, &mut subset);
    subset
}

#[test]
fn utilization_filter_and_saturation() {
    let d = UtilizationDetector::default();
    let cands = [
        pod(0, 3, 0.2),  // kept
        pod(1, 5, 0.2),  // queue 5 is not < 5
        pod(2, 0, 0.85), // kv 0.85 is not < 0.8
        unscraped(3),
    ];
    assert_eq!(filtered(&d, &cands, NOW), [0]);
    // 250 ms after the scrape every endpoint is stale: fail open, keep all.
    assert_eq!(
        filtered(&d, &cands, Duration::from_millis(250)),
        [0, 1, 2, 3]
    );
    // Headroom 0.2 lets queue 5 < 6 and kv 0.85 < 0.96 through.
    let roomy = UtilizationDetector::new(UtilizationParams {
        headroom: 0.2,
        ..UtilizationParams::default()
    });
    assert_eq!(filtered(&roomy, &cands, NOW), [0, 1, 2]);
    // Saturation: max(5/5, 0.4/0.8) = 1, max(0/5, 0.2/0.8) = 0.25, unscraped 1.
    let sat = d.saturation(&[pod(0, 5, 0.4), pod(1, 0, 0.2), unscraped(2)], NOW);
    assert!((sat - 2.25 / 3.0).abs() < 1e-12, "{sat}");
    assert_eq!(d.saturation(&[], NOW), 1.0);
}

#[test]
fn concurrency_filter_and_saturation_in_both_modes() {
    let load = |i, requests, tokens| {
        let mut c = sent(unscraped(i), 0, requests);
        c.in_flight_tokens = tokens;
        c
    };
    // Requests mode, maxConcurrency 4: loads 0, 3, 4, 9 of 4 each.
    let d = ConcurrencyDetector::new(ConcurrencyParams {
        max_concurrency: 4,
        ..ConcurrencyParams::default()
    });
    let cands = [load(0, 0, 900), load(1, 3, 0), load(2, 4, 0), load(3, 9, 0)];
    // Metrics play no part: unscraped endpoints with room are kept.
    assert_eq!(filtered(&d, &cands, NOW), [0, 1]);
    assert_eq!(d.saturation(&cands), 16.0 / 16.0);
    assert_eq!(d.saturation(&cands[..2]), 3.0 / 8.0);
    assert_eq!(d.saturation(&[]), 1.0);
    // Headroom 0.3: limit int(4 × 1.3) = 5, so 4 passes and 9 does not.
    let roomy = ConcurrencyDetector::new(ConcurrencyParams {
        max_concurrency: 4,
        headroom: 0.3,
        ..ConcurrencyParams::default()
    });
    assert_eq!(filtered(&roomy, &cands, NOW), [0, 1, 2]);
    // No fail-open: every endpoint full leaves none.
    assert!(filtered(&d, &cands[2..], NOW).is_empty());
    // Tokens mode, maxTokenConcurrency 1,000: 900 < 1,000 passes, request counts
    // do not matter.
    let t = ConcurrencyDetector::new(ConcurrencyParams {
        concurrency_mode: ConcurrencyMode::Tokens,
        max_token_concurrency: 1_000,
        ..ConcurrencyParams::default()
    });
    let cands = [load(0, 50, 900), load(1, 0, 1_000), load(2, 0, 100)];
    assert_eq!(filtered(&t, &cands, NOW), [0, 2]);
    assert_eq!(t.saturation(&cands), 2_000.0 / 3_000.0);
}

#[test]
fn params_validate() {
    let bad: Vec<(Box<dyn Params>, &str)> = vec![
        (Box::new(picker_params(0)), "maxNumOfEndpoints"),
        (
            Box::new(UtilizationParams {
                kv_cache_util_threshold: 1.5,
                ..Default::default()
            }),
            "kvCacheUtilThreshold",
        ),
        (
            Box::new(UtilizationParams {
                queue_depth_threshold: 0,
                ..Default::default()
            }),
            "queueDepthThreshold",
        ),
        (
            Box::new(UtilizationParams {
                headroom: -1.0,
                ..Default::default()
            }),
            "headroom",
        ),
        (
            Box::new(InflightLoadParams {
                in_flight_weight: f64::NAN,
            }),
            "inFlightWeight",
        ),
        (
            Box::new(ConcurrencyParams {
                max_concurrency: 0,
                ..Default::default()
            }),
            "maxConcurrency",
        ),
        (
            Box::new(ConcurrencyParams {
                max_token_concurrency: -1,
                ..Default::default()
            }),
            "maxTokenConcurrency",
        ),
        (
            Box::new(ConcurrencyParams {
                headroom: f64::INFINITY,
                ..Default::default()
            }),
            "headroom",
        ),
        (
            Box::new(LoadAwarePrefixParams {
                load_slack: 0.0,
                ..Default::default()
            }),
            "loadSlack",
        ),
        (
            Box::new(LoadAwarePrefixParams {
                block_size_tokens: 0,
                ..Default::default()
            }),
            "blockSizeTokens",
        ),
        (
            Box::new(WrrParams {
                default_weight: 0,
                ..Default::default()
            }),
            "defaultWeight",
        ),
    ];
    for (params, field) in bad {
        assert_eq!(params.validate().unwrap_err().field, field);
    }
    assert!(UtilizationParams::default().validate().is_ok());
}

#[test]
fn go_durations() {
    let ms = Duration::from_millis;
    let ok = [
        ("200ms", ms(200)),
        ("1.5s", ms(1500)),
        ("1m30s", ms(90_000)),
        ("2h", ms(7_200_000)),
        ("0", ms(0)),
        ("10us", Duration::from_micros(10)),
    ];
    for (text, want) in ok {
        assert_eq!(parse_go_duration(text), Ok(want), "{text}");
    }
    for text in ["", "200", "-1s", "1x", "ms", "1e999h"] {
        assert!(parse_go_duration(text).is_err(), "{text}");
    }
}

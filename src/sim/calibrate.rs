//! `igw sim calibrate`: run one engine in virtual time on constant-rate stages of a
//! shared-prefix workload and report what a load generator would have measured.
//!
//! The default workload and rates are those of the published vLLM 0.11 H100
//! measurement (sim-facts §4.4: 10 system prompts × 128 tokens + a question, ≈204
//! prompt tokens, 64 output tokens with `ignore_eos`, 60 s constant-rate stages), so
//! `igw sim calibrate --max-num-seqs 128 --no-prefix-caching --no-chunked-prefill
//! --max-model-len 512` puts the simulator side by side with real vLLM.
//!
//! No HTTP and no tokio: the engine is stepped by a virtual clock, so a minute of load
//! takes milliseconds and the result is the same on every run.

use std::time::Duration;

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::engine::{Engine, EngineConfig, EngineEvent, NewRequest, StepResult};
use super::metrics::FinishReason;

/// The workload and stages to run.
#[derive(Clone, Debug)]
pub struct CalibrationPlan {
    /// Constant arrival rates, req/s, one stage each, run one after the other.
    pub rates: Vec<f64>,
    /// Length of each stage's sending phase; the stage then drains.
    pub stage_duration: Duration,
    /// Total prompt length, tokens (shared prefix + unique question).
    pub prompt_tokens: usize,
    /// Length of each shared system prompt, tokens.
    pub shared_prefix_tokens: usize,
    /// Number of distinct system prompts, used round-robin.
    pub num_prefixes: usize,
    /// Tokens generated per request (`ignore_eos`).
    pub output_tokens: usize,
    /// Seeds the synthetic token ids.
    pub seed: u64,
}

/// What one stage measured, in a load generator's units.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageReport {
    pub requested_rate: f64,
    pub requests: usize,
    /// Completed requests / (last completion − stage start), req/s.
    pub achieved_rate: f64,
    pub ttft_mean_ms: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    /// Mean of (e2e − TTFT) / (output tokens − 1), ms.
    pub decode_ms_per_token: f64,
    pub e2e_mean_s: f64,
    pub output_tokens_per_s: f64,
    pub preemptions: u64,
}

/// One published vLLM 0.11 H100 stage (sim-facts §4.4, variant `vllm`).
#[derive(Clone, Copy, Debug)]
pub struct PublishedStage {
    pub requested_rate: f64,
    pub achieved_rate: f64,
    pub ttft_mean_ms: f64,
    pub decode_ms_per_token: f64,
    pub e2e_mean_s: f64,
}

/// vLLM 0.11, Llama-3-8B-Instruct, 1×H100-80GB, `--max-num-seqs=128
/// --no-enable-prefix-caching --no-enable-chunked-prefill --max-model-len=512`
/// (inference-perf `demos/kubecon-na-2025/vllm`, via sim-facts §4.4).
pub const PUBLISHED_VLLM_0_11_H100: [PublishedStage; 5] = [
    PublishedStage {
        requested_rate: 1.0,
        achieved_rate: 1.0,
        ttft_mean_ms: 31.1,
        decode_ms_per_token: 7.2,
        e2e_mean_s: 0.48,
    },
    PublishedStage {
        requested_rate: 31.4,
        achieved_rate: 31.4,
        ttft_mean_ms: 29.8,
        decode_ms_per_token: 8.4,
        e2e_mean_s: 0.55,
    },
    PublishedStage {
        requested_rate: 61.8,
        achieved_rate: 61.8,
        ttft_mean_ms: 34.9,
        decode_ms_per_token: 10.5,
        e2e_mean_s: 0.68,
    },
    PublishedStage {
        requested_rate: 92.2,
        achieved_rate: 92.2,
        ttft_mean_ms: 50.5,
        decode_ms_per_token: 15.8,
        e2e_mean_s: 1.02,
    },
    PublishedStage {
        requested_rate: 122.6,
        achieved_rate: 106.5,
        ttft_mean_ms: 2617.0,
        decode_ms_per_token: 20.0,
        e2e_mean_s: 3.84,
    },
];

impl PublishedStage {
    /// The published stage run at `rate`, if any.
    pub fn at_rate(rate: f64) -> Option<PublishedStage> {
        PUBLISHED_VLLM_0_11_H100
            .iter()
            .copied()
            .find(|p| (p.requested_rate - rate).abs() < 0.05)
    }
}

/// Per-request timestamps collected while a stage runs.
#[derive(Clone, Copy, Default)]
struct Timing {
    sent: Duration,
    first_token: Option<Duration>,
    done: Option<Duration>,
}

/// Runs every stage of `plan` on a fresh engine built from `config`.
pub fn run(config: &EngineConfig, plan: &CalibrationPlan) -> Result<Vec<StageReport>, String> {
    if plan.shared_prefix_tokens >= plan.prompt_tokens {
        return Err(format!(
            "--shared-prefix-tokens ({}) must be smaller than --prompt-tokens ({})",
            plan.shared_prefix_tokens, plan.prompt_tokens
        ));
    }
    if plan.num_prefixes == 0 || plan.output_tokens == 0 {
        return Err("--num-prefixes and --output-tokens must be greater than 0".into());
    }
    if let Some(r) = plan.rates.iter().find(|r| !r.is_finite() || **r <= 0.0) {
        return Err(format!("--rates: every rate must be a number > 0, got {r}"));
    }
    let mut engine = Engine::new(config.clone())?;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    // Token ids above 1,000 look like ordinary vocabulary; the exact values only matter
    // for prefix-cache hashing.
    let mut random_tokens =
        |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(1_000..100_000)).collect() };
    let prefixes: Vec<Vec<u32>> = (0..plan.num_prefixes)
        .map(|_| random_tokens(plan.shared_prefix_tokens))
        .collect();
    let output: Vec<u32> = random_tokens(plan.output_tokens);
    // Request number `n` of a stage: a shared system prompt, round-robin, plus a
    // question of its own, arriving at `at`.
    let mut send = |engine: &mut Engine,
                    timing: &mut Timing,
                    n: usize,
                    id: u64,
                    at: Duration|
     -> Result<(), String> {
        let mut prompt = prefixes[n % plan.num_prefixes].clone();
        prompt.extend(random_tokens(
            plan.prompt_tokens - plan.shared_prefix_tokens,
        ));
        timing.sent = at;
        add(engine, id, prompt, &output, at)
    };

    let mut reports = Vec::new();
    let mut now = Duration::ZERO;
    let mut next_id = 0u64;
    for &rate in &plan.rates {
        let stage_start = now;
        let count = (rate * plan.stage_duration.as_secs_f64()).round().max(1.0) as usize;
        let preemptions_before = engine.metrics().num_preemptions_total;
        let mut timings = vec![Timing::default(); count];
        let first_id = next_id;
        let mut sent = 0usize;
        let mut in_flight_until: Option<Duration> = None;
        let mut pending: Vec<EngineEvent> = Vec::new();
        loop {
            let next_arrival =
                (sent < count).then(|| stage_start + Duration::from_secs_f64(sent as f64 / rate));
            if let Some(end) = in_flight_until {
                // A step is running: arrivals before its end join the queue; then its
                // events land.
                if let Some(t) = next_arrival.filter(|t| *t <= end) {
                    send(&mut engine, &mut timings[sent], sent, next_id, t)?;
                    next_id += 1;
                    sent += 1;
                    continue;
                }
                now = end;
                in_flight_until = None;
                for event in pending.drain(..) {
                    record(&mut timings, first_id, &event, now);
                }
                continue;
            }
            match engine.step(now) {
                StepResult::Ran(out) => {
                    in_flight_until = Some(out.end);
                    pending = out.events;
                }
                StepResult::Idle { wake_at } => {
                    let next = match (wake_at, next_arrival) {
                        (Some(w), Some(a)) => w.min(a),
                        (w, a) => match w.or(a) {
                            Some(t) => t,
                            None => break, // stage sent and drained
                        },
                    };
                    if next_arrival == Some(next) {
                        send(&mut engine, &mut timings[sent], sent, next_id, next)?;
                        next_id += 1;
                        sent += 1;
                    }
                    now = now.max(next);
                }
            }
        }
        let preemptions = engine.metrics().num_preemptions_total - preemptions_before;
        reports.push(summarise(
            rate,
            stage_start,
            &timings,
            plan.output_tokens,
            preemptions,
        ));
    }
    Ok(reports)
}

fn add(
    engine: &mut Engine,
    id: u64,
    prompt: Vec<u32>,
    output: &[u32],
    at: Duration,
) -> Result<(), String> {
    engine
        .add_request(
            NewRequest {
                id,
                prompt,
                output: output.to_vec(),
                finish_reason: FinishReason::Length,
                lora: None,
            },
            at,
        )
        .map_err(|e| e.to_string())
}

fn record(timings: &mut [Timing], first_id: u64, event: &EngineEvent, at: Duration) {
    let (id, is_first, is_done) = match event {
        EngineEvent::Token { id, index, .. } => (*id, *index == 0, false),
        EngineEvent::Finished { id, .. } => (*id, false, true),
    };
    let Some(t) = id
        .checked_sub(first_id)
        .and_then(|i| timings.get_mut(i as usize))
    else {
        return;
    };
    if is_first {
        t.first_token = Some(at);
    }
    if is_done {
        t.done = Some(at);
    }
}

fn summarise(
    rate: f64,
    stage_start: Duration,
    timings: &[Timing],
    output_tokens: usize,
    preemptions: u64,
) -> StageReport {
    let done: Vec<&Timing> = timings.iter().filter(|t| t.done.is_some()).collect();
    let n = done.len().max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut ttft: Vec<f64> = done
        .iter()
        .map(|t| ms(t.first_token.unwrap_or_default().saturating_sub(t.sent)))
        .collect();
    ttft.sort_by(f64::total_cmp);
    let e2e: Vec<f64> = done
        .iter()
        .map(|t| {
            t.done
                .unwrap_or_default()
                .saturating_sub(t.sent)
                .as_secs_f64()
        })
        .collect();
    let decode: f64 = done
        .iter()
        .map(|t| {
            let span = t
                .done
                .unwrap_or_default()
                .saturating_sub(t.first_token.unwrap_or_default());
            ms(span) / (output_tokens.max(2) - 1) as f64
        })
        .sum::<f64>()
        / n;
    let last = done
        .iter()
        .filter_map(|t| t.done)
        .max()
        .unwrap_or(stage_start);
    let span = last.saturating_sub(stage_start).as_secs_f64().max(1e-9);
    StageReport {
        requested_rate: rate,
        requests: done.len(),
        achieved_rate: done.len() as f64 / span,
        ttft_mean_ms: ttft.iter().sum::<f64>() / n,
        ttft_p50_ms: percentile(&ttft, 0.50),
        ttft_p99_ms: percentile(&ttft, 0.99),
        decode_ms_per_token: decode,
        e2e_mean_s: e2e.iter().sum::<f64>() / n,
        output_tokens_per_s: (done.len() * output_tokens) as f64 / span,
        preemptions,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Renders reports as an aligned text table, with the published vLLM figures and the
/// relative error beside each stage that has one.
pub fn render_table(reports: &[StageReport]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}  {:>6}  |  {:>9}  {:>8}  {:>8}  {:>6}",
        "rate",
        "req/s",
        "ttft_mean",
        "ttft_p50",
        "ttft_p99",
        "decode",
        "e2e_mean",
        "preempt",
        "vllm_req/s",
        "vllm_e2e",
        "e2e_err",
        "tput_err"
    );
    let _ = writeln!(
        out,
        "{:>8}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}  {:>6}  |  {:>9}  {:>8}  {:>8}  {:>6}",
        "req/s", "", "ms", "ms", "ms", "ms/tok", "s", "", "", "s", "", ""
    );
    for r in reports {
        let _ = write!(
            out,
            "{:>8.1}  {:>9.1}  {:>9.1}  {:>9.1}  {:>9.1}  {:>9.2}  {:>8.3}  {:>6}  |",
            r.requested_rate,
            r.achieved_rate,
            r.ttft_mean_ms,
            r.ttft_p50_ms,
            r.ttft_p99_ms,
            r.decode_ms_per_token,
            r.e2e_mean_s,
            r.preemptions
        );
        match PublishedStage::at_rate(r.requested_rate) {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "  {:>9.1}  {:>8.2}  {:>+7.1}%  {:>+5.1}%",
                    p.achieved_rate,
                    p.e2e_mean_s,
                    (r.e2e_mean_s / p.e2e_mean_s - 1.0) * 100.0,
                    (r.achieved_rate / p.achieved_rate - 1.0) * 100.0
                );
            }
            None => {
                let _ = writeln!(out, "  {:>9}  {:>8}  {:>8}  {:>6}", "-", "-", "-", "-");
            }
        }
    }
    out
}

/// `igw sim calibrate` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct CalibrateOptions {
    /// Constant arrival rates to run, req/s, one stage each.
    #[arg(long, value_delimiter = ',', default_value = "1,31.4,61.8,92.2,122.6")]
    pub rates: Vec<f64>,
    /// Sending time of each stage, seconds (each stage then drains).
    #[arg(long, default_value_t = 60.0)]
    pub duration_s: f64,
    /// Prompt length, tokens.
    #[arg(long, default_value_t = 204)]
    pub prompt_tokens: usize,
    /// Shared system-prompt length, tokens.
    #[arg(long, default_value_t = 128)]
    pub shared_prefix_tokens: usize,
    /// Distinct system prompts.
    #[arg(long, default_value_t = 10)]
    pub num_prefixes: usize,
    /// Output tokens per request.
    #[arg(long, default_value_t = 64)]
    pub output_tokens: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: super::options::EngineOptions,
}

impl CalibrateOptions {
    /// Runs the calibration and returns what to print.
    pub fn run(&self) -> anyhow::Result<String> {
        let config = self.engine.engine_config()?;
        if !self.duration_s.is_finite() || self.duration_s <= 0.0 {
            anyhow::bail!("--duration-s must be a number > 0, got {}", self.duration_s);
        }
        let plan = CalibrationPlan {
            rates: self.rates.clone(),
            stage_duration: Duration::from_secs_f64(self.duration_s),
            prompt_tokens: self.prompt_tokens,
            shared_prefix_tokens: self.shared_prefix_tokens,
            num_prefixes: self.num_prefixes,
            output_tokens: self.output_tokens,
            seed: self.engine.seed,
        };
        let reports = run(&config, &plan).map_err(anyhow::Error::msg)?;
        if self.json {
            return Ok(serde_json::to_string_pretty(&reports)? + "\n");
        }
        Ok(format!(
            "profile {}: max_num_seqs={} max_num_batched_tokens={} kv_blocks={} block_size={} \
             prefix_caching={} chunked_prefill={}\n{}",
            config.profile.name,
            config.max_num_seqs,
            config.max_num_batched_tokens,
            config.num_blocks,
            config.block_size,
            config.enable_prefix_caching,
            config.enable_chunked_prefill,
            render_table(&reports)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::options::EngineOptions;

    /// The published setup: 128 seqs, no prefix caching, no chunked prefill, 512 tokens.
    fn published_setup() -> EngineConfig {
        EngineOptions {
            max_num_seqs: Some(128),
            no_prefix_caching: true,
            no_chunked_prefill: true,
            max_model_len: Some(512),
            max_loras: 1,
            ..Default::default()
        }
        .engine_config()
        .unwrap()
    }

    fn plan(rates: &[f64], seconds: u64) -> CalibrationPlan {
        CalibrationPlan {
            rates: rates.to_vec(),
            stage_duration: Duration::from_secs(seconds),
            prompt_tokens: 204,
            shared_prefix_tokens: 128,
            num_prefixes: 10,
            output_tokens: 64,
            seed: 0,
        }
    }

    #[test]
    fn reproduces_published_vllm_e2e_within_ten_percent() {
        let rates = [1.0, 31.4, 61.8, 92.2];
        let reports = run(&published_setup(), &plan(&rates, 60)).unwrap();
        for r in &reports {
            let p = PublishedStage::at_rate(r.requested_rate).unwrap();
            let err = r.e2e_mean_s / p.e2e_mean_s - 1.0;
            assert!(
                err.abs() < 0.10,
                "rate {}: e2e {} vs {}",
                r.requested_rate,
                r.e2e_mean_s,
                p.e2e_mean_s
            );
            assert!(
                (r.achieved_rate / r.requested_rate - 1.0).abs() < 0.02,
                "{r:?}"
            );
            assert_eq!(r.requests, (r.requested_rate * 60.0).round() as usize);
        }
    }

    #[test]
    fn saturates_near_published_throughput() {
        let reports = run(&published_setup(), &plan(&[122.6], 60)).unwrap();
        let achieved = reports[0].achieved_rate;
        assert!(
            (achieved / 106.5 - 1.0).abs() < 0.10,
            "saturated at {achieved} req/s"
        );
        assert!(
            reports[0].ttft_mean_ms > 1000.0,
            "a saturated server queues"
        );
    }

    #[test]
    fn an_idle_server_answers_in_overhead_plus_one_prefill_step() {
        let reports = run(&published_setup(), &plan(&[0.5], 10)).unwrap();
        // 18 ms frontend + 6.9 + 0.028 × 204 ms = 30.612 ms.
        assert!(
            (reports[0].ttft_mean_ms - 30.612).abs() < 0.01,
            "{:?}",
            reports[0]
        );
        assert_eq!(reports[0].preemptions, 0);
    }

    #[test]
    fn same_seed_same_report() {
        let a = run(&published_setup(), &plan(&[50.0], 5)).unwrap();
        let b = run(&published_setup(), &plan(&[50.0], 5)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_plans_name_the_flag() {
        let mut p = plan(&[1.0], 1);
        p.shared_prefix_tokens = 300;
        assert!(
            run(&published_setup(), &p)
                .unwrap_err()
                .contains("--shared-prefix-tokens")
        );
        let p = plan(&[0.0], 1);
        assert!(run(&published_setup(), &p).unwrap_err().contains("--rates"));
    }
}

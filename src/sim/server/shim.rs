//! Stand-ins for the tokenizer and the Prometheus renderer until their real modules
//! land. Must not outlive that: it is deleted when `sim::tokens` and
//! `sim::metrics::render_prometheus` exist.

pub mod tokens {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use crate::sim::metrics::FinishReason;

    pub fn encode(text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }

    pub fn decode(tokens: &[u32]) -> String {
        tokens.iter().map(|&t| token_text(t)).collect()
    }

    pub fn token_text(token: u32) -> String {
        char::from_u32(token).map(String::from).unwrap_or_default()
    }

    pub struct ChatTurn<'a> {
        pub role: &'a str,
        pub content: &'a str,
    }

    pub fn apply_chat_template(turns: &[ChatTurn<'_>]) -> String {
        let mut s = String::new();
        for t in turns {
            s.push_str(t.role);
            s.push_str(": ");
            s.push_str(t.content);
            s.push('\n');
        }
        s.push_str("assistant: ");
        s
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
    pub enum OutputMode {
        #[default]
        Random,
        Echo,
    }

    pub struct OutputPlan {
        pub tokens: Vec<u32>,
        pub finish_reason: FinishReason,
    }

    pub fn plan_output(
        mode: OutputMode,
        seed: u64,
        prompt: &[u32],
        max_tokens: usize,
        ignore_eos: bool,
    ) -> OutputPlan {
        let mut rng = StdRng::seed_from_u64(seed);
        let len = if ignore_eos {
            max_tokens
        } else {
            rng.random_range(1..=max_tokens.max(1))
        };
        let tokens: Vec<u32> = match mode {
            OutputMode::Random => (0..len).map(|_| rng.random_range(97..123)).collect(),
            OutputMode::Echo => prompt.iter().copied().cycle().take(len).collect(),
        };
        let finish_reason = if tokens.len() == max_tokens {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        OutputPlan {
            tokens,
            finish_reason,
        }
    }
}

pub mod metrics {
    use std::fmt::Write;

    use crate::sim::metrics::{EngineGauges, EngineMetrics, FinishReason};

    #[allow(dead_code)]
    pub struct ReplicaInfo {
        pub model_name: String,
        pub engine: usize,
        pub block_size: usize,
        pub num_gpu_blocks: usize,
        pub enable_prefix_caching: bool,
        pub max_loras: usize,
    }

    pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

    pub fn render_prometheus(
        out: &mut String,
        info: &ReplicaInfo,
        metrics: &EngineMetrics,
        gauges: &EngineGauges,
        _unix_time_secs: f64,
    ) {
        let l = format!(
            "model_name=\"{}\",engine=\"{}\"",
            info.model_name, info.engine
        );
        let _ = writeln!(
            out,
            "vllm:num_requests_running{{{l}}} {}",
            gauges.num_requests_running
        );
        let _ = writeln!(
            out,
            "vllm:num_requests_waiting{{{l}}} {}",
            gauges.num_requests_waiting
        );
        let _ = writeln!(
            out,
            "vllm:kv_cache_usage_perc{{{l}}} {}",
            gauges.kv_cache_usage_perc
        );
        for (i, r) in FinishReason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "vllm:request_success_total{{{l},finished_reason=\"{}\"}} {}",
                r.as_str(),
                metrics.request_success_total[i]
            );
        }
    }
}

//! Command-line options that shape an engine, shared by `igw sim serve` and
//! `igw sim calibrate` (and later by the benchmark's pool definitions).
//!
//! Flag names follow vLLM's where vLLM has the knob (`--max-num-seqs`,
//! `--max-num-batched-tokens`, `--block-size`, `--max-model-len`, `--max-loras`); the
//! shorter igw spellings keep vLLM's as aliases (`--no-prefix-caching` is also
//! `--no-enable-prefix-caching`, `--no-chunked-prefill` `--no-enable-chunked-prefill`,
//! `--kv-blocks` `--num-gpu-blocks-override`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::engine::EngineConfig;
use super::profile::{DEFAULT_PROFILE, LatencyProfile};

/// Engine shape and pricing. Every flag left out comes from the profile.
/// [`Default`] is what the command line gives with no flags.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct EngineOptions {
    /// Built-in latency profile: h100-llama3-8b (default), h100-llama2-7b, a100-llama3-8b.
    #[arg(long, value_name = "NAME", conflicts_with = "profile_file")]
    pub profile: Option<String>,
    /// Latency profile from a YAML file (kebab-case fields, optional `base:`).
    #[arg(long, value_name = "FILE")]
    pub profile_file: Option<PathBuf>,
    /// Most sequences in one batch.
    #[arg(long, value_name = "N")]
    pub max_num_seqs: Option<usize>,
    /// Token budget of one engine step.
    #[arg(long, value_name = "N")]
    pub max_num_batched_tokens: Option<usize>,
    /// KV-cache capacity in blocks (vLLM's --num-gpu-blocks-override).
    #[arg(long, value_name = "N", visible_alias = "num-gpu-blocks-override")]
    pub kv_blocks: Option<usize>,
    /// Tokens per KV block.
    #[arg(long, value_name = "N")]
    pub block_size: Option<usize>,
    /// Longest prompt + output a request may ask for, tokens.
    #[arg(long, value_name = "N")]
    pub max_model_len: Option<usize>,
    /// Turn off automatic prefix caching.
    #[arg(long, visible_alias = "no-enable-prefix-caching")]
    pub no_prefix_caching: bool,
    /// Turn off chunked prefill: a prompt is computed whole in one step.
    #[arg(long, visible_alias = "no-enable-chunked-prefill")]
    pub no_chunked_prefill: bool,
    /// LoRA adapters the running batch may use at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LORAS)]
    pub max_loras: usize,
    /// Time to load an adapter that is not resident into a GPU slot, ms.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_LORA_LOAD_MS)]
    pub lora_load_ms: f64,
    /// Relative std dev of per-step latency noise (0 = off); overrides the profile.
    #[arg(long, value_name = "X")]
    pub step_noise: Option<f64>,
    /// Seed for every random choice (noise, generated text, failures).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

/// Adapters a running batch may use at once unless `--max-loras` says otherwise
/// (vLLM's `--max-loras` default, sim-facts §4.7).
pub const DEFAULT_MAX_LORAS: usize = 1;
/// Time to load an adapter into a GPU slot unless `--lora-load-ms` says otherwise
/// (activation from the CPU cache takes 1–20 ms, sim-facts §4.7).
pub const DEFAULT_LORA_LOAD_MS: f64 = 10.0;

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            profile: None,
            profile_file: None,
            max_num_seqs: None,
            max_num_batched_tokens: None,
            kv_blocks: None,
            block_size: None,
            max_model_len: None,
            no_prefix_caching: false,
            no_chunked_prefill: false,
            max_loras: DEFAULT_MAX_LORAS,
            lora_load_ms: DEFAULT_LORA_LOAD_MS,
            step_noise: None,
            seed: 0,
        }
    }
}

impl EngineOptions {
    /// The profile named or loaded by these options, with `--step-noise` applied.
    pub fn profile(&self) -> anyhow::Result<LatencyProfile> {
        let mut profile = match (&self.profile, &self.profile_file) {
            (_, Some(path)) => LatencyProfile::from_yaml_file(path)?,
            (name, None) => {
                let name = name.as_deref().unwrap_or(DEFAULT_PROFILE);
                LatencyProfile::named(name).map_err(|e| anyhow::anyhow!("--profile: {e}"))?
            }
        };
        if let Some(noise) = self.step_noise {
            if !(0.0..=0.5).contains(&noise) {
                anyhow::bail!("--step-noise must be between 0 and 0.5, got {noise:?}");
            }
            profile.step_noise = noise;
        }
        Ok(profile)
    }

    /// The engine configuration these options describe, validated.
    pub fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let mut c = EngineConfig::from_profile(self.profile()?);
        if let Some(v) = self.max_model_len {
            c.max_model_len = v;
        }
        if let Some(v) = self.max_num_seqs {
            c.max_num_seqs = v;
        }
        c.enable_prefix_caching = !self.no_prefix_caching;
        c.enable_chunked_prefill = !self.no_chunked_prefill;
        c.max_num_batched_tokens = match self.max_num_batched_tokens {
            Some(v) => v,
            // As vLLM does without chunked prefill: the budget must hold a whole prompt.
            None if self.no_chunked_prefill => c.max_num_batched_tokens.max(c.max_model_len),
            None => c.max_num_batched_tokens,
        };
        if let Some(v) = self.kv_blocks {
            c.num_blocks = v;
        }
        if let Some(v) = self.block_size {
            c.block_size = v;
        }
        let max_ms = super::engine::MAX_LORA_LOAD_TIME.as_millis() as f64;
        if !(0.0..=max_ms).contains(&self.lora_load_ms) {
            anyhow::bail!(
                "--lora-load-ms must be between 0 and {max_ms}, got {:?}",
                self.lora_load_ms
            );
        }
        c.max_loras = self.max_loras;
        c.lora_load_time = Duration::from_secs_f64(self.lora_load_ms / 1000.0);
        c.seed = self.seed;
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::EngineOptions;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        engine: EngineOptions,
    }

    #[test]
    fn the_default_is_the_command_line_without_flags() {
        let parsed = Cli::try_parse_from(["igw"]).unwrap().engine;
        assert_eq!(EngineOptions::default(), parsed);
        // One adapter slot, as vLLM's `--max-loras` default, so LoRA requests are
        // served by a default engine.
        assert_eq!(
            EngineOptions::default().engine_config().unwrap().max_loras,
            1
        );
    }
}

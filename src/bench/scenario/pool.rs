//! The `pool` section of a scenario: the simulated replicas, one engine shape or a
//! mixed fleet of several (`also`), with the engine fields of `igw sim serve`'s flags.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::go_duration;
use crate::sim::options::EngineOptions;
use crate::sim::tokens::Tokenizer;

/// The simulated pool: replicas of one engine shape, plus any groups of other shapes
/// in `also`. Engine fields have the names and meanings of `igw sim serve`'s flags
/// (with `_` for `-`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// The base model the replicas serve and requests name.
    #[serde(default = "default_model")]
    pub model: String,
    /// A built-in latency profile (`h100-llama3-8b`, `h100-llama2-7b`,
    /// `a100-llama3-8b`); the simulator's default when unset.
    #[serde(default)]
    pub profile: Option<String>,
    /// A profile YAML file instead of a built-in one.
    #[serde(default)]
    pub profile_file: Option<PathBuf>,
    #[serde(default)]
    pub max_num_seqs: Option<usize>,
    #[serde(default)]
    pub max_num_batched_tokens: Option<usize>,
    #[serde(default)]
    pub kv_blocks: Option<usize>,
    #[serde(default)]
    pub block_size: Option<usize>,
    #[serde(default)]
    pub max_model_len: Option<usize>,
    #[serde(default)]
    pub no_prefix_caching: bool,
    #[serde(default)]
    pub no_chunked_prefill: bool,
    #[serde(default = "default_max_loras")]
    pub max_loras: usize,
    #[serde(default = "default_lora_load_ms")]
    pub lora_load_ms: f64,
    #[serde(default)]
    pub step_noise: Option<f64>,
    /// Live mode: how many times faster than real time the simulators run (and the
    /// schedule is sent). Reports are always in the pool's time.
    #[serde(default = "default_speedup")]
    pub speedup: f64,
    /// How often the picker scrapes each replica (GIE's `--refresh-metrics-interval`).
    #[serde(default = "default_scrape_interval", deserialize_with = "go_duration")]
    pub scrape_interval: Duration,
    /// More replicas beside those above, each group with a shape of its own: a mixed
    /// fleet (say H100s and A100s serving the same model). They come after the
    /// first `replicas` in endpoint order.
    #[serde(default)]
    pub also: Vec<ReplicaGroup>,
    /// A Hugging Face `tokenizer.json` the served model uses (`igw sim serve
    /// --tokenizer`): the workload's prompts are counted with it, the replicas count
    /// and write tokens with it, so the report's token counts are the ones a client
    /// with that tokenizer (inference-perf, guidellm) sees. Unset: the built-in
    /// `cl100k_base`. `igw bench --tokenizer` overrides it.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// [`tokenizer`](Self::tokenizer), loaded (see [`PoolSpec::load_tokenizer`]).
    #[serde(skip)]
    pub loaded_tokenizer: Tokenizer,
}

/// A group of replicas of one shape in a mixed pool (`pool.also`). Its profile and
/// shape are its own (a field left out takes its profile's value, not the pool's);
/// the engine's switches (prefix caching, chunked prefill, LoRA slots, step noise)
/// and `max_model_len` are the pool's.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaGroup {
    pub replicas: usize,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub profile_file: Option<PathBuf>,
    #[serde(default)]
    pub max_num_seqs: Option<usize>,
    #[serde(default)]
    pub max_num_batched_tokens: Option<usize>,
    #[serde(default)]
    pub kv_blocks: Option<usize>,
    #[serde(default)]
    pub block_size: Option<usize>,
}

impl Default for PoolSpec {
    fn default() -> PoolSpec {
        PoolSpec {
            replicas: default_replicas(),
            model: default_model(),
            profile: None,
            profile_file: None,
            max_num_seqs: None,
            max_num_batched_tokens: None,
            kv_blocks: None,
            block_size: None,
            max_model_len: None,
            no_prefix_caching: false,
            no_chunked_prefill: false,
            max_loras: default_max_loras(),
            lora_load_ms: default_lora_load_ms(),
            step_noise: None,
            speedup: default_speedup(),
            scrape_interval: default_scrape_interval(),
            also: Vec::new(),
            tokenizer: None,
            loaded_tokenizer: Tokenizer::builtin(),
        }
    }
}

fn default_replicas() -> usize {
    4
}

fn default_model() -> String {
    "meta-llama/Llama-3.1-8B-Instruct".into()
}

fn default_max_loras() -> usize {
    crate::sim::options::DEFAULT_MAX_LORAS
}

fn default_lora_load_ms() -> f64 {
    crate::sim::options::DEFAULT_LORA_LOAD_MS
}

fn default_speedup() -> f64 {
    1.0
}

fn default_scrape_interval() -> Duration {
    crate::epp::scrape::DEFAULT_REFRESH_INTERVAL
}

impl PoolSpec {
    /// Loads [`tokenizer`](Self::tokenizer) into
    /// [`loaded_tokenizer`](Self::loaded_tokenizer) (the built-in one when unset);
    /// the error says why the file is not a usable `tokenizer.json`.
    pub fn load_tokenizer(&mut self) -> Result<(), String> {
        self.loaded_tokenizer = match &self.tokenizer {
            None => Tokenizer::builtin(),
            Some(path) => Tokenizer::from_file(path).map_err(|e| e.to_string())?,
        };
        Ok(())
    }

    /// The engine shape as `igw sim serve`'s flags state it; replica `i` adds `i` to
    /// `seed` so their step noise differs.
    pub fn engine_options(&self, seed: u64) -> EngineOptions {
        EngineOptions {
            profile: self.profile.clone(),
            profile_file: self.profile_file.clone(),
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens: self.max_num_batched_tokens,
            kv_blocks: self.kv_blocks,
            block_size: self.block_size,
            max_model_len: self.max_model_len,
            no_prefix_caching: self.no_prefix_caching,
            no_chunked_prefill: self.no_chunked_prefill,
            max_loras: self.max_loras,
            lora_load_ms: self.lora_load_ms,
            step_noise: self.step_noise,
            seed,
        }
    }

    /// Replicas in all, `also` included.
    pub fn total_replicas(&self) -> usize {
        self.replicas + self.also.iter().map(|g| g.replicas).sum::<usize>()
    }

    /// Each group of replicas with its engine shape, in endpoint order: the pool's own
    /// `replicas` first, then `also`. A group's seed is `seed` plus the index of its
    /// first replica, so every replica's step noise differs.
    pub fn groups(&self, seed: u64) -> Vec<(usize, EngineOptions)> {
        let mut groups = vec![(self.replicas, self.engine_options(seed))];
        let mut first = self.replicas;
        for g in &self.also {
            let options = EngineOptions {
                profile: g.profile.clone(),
                profile_file: g.profile_file.clone(),
                max_num_seqs: g.max_num_seqs,
                max_num_batched_tokens: g.max_num_batched_tokens,
                kv_blocks: g.kv_blocks,
                block_size: g.block_size,
                ..self.engine_options(seed.wrapping_add(first as u64))
            };
            groups.push((g.replicas, options));
            first += g.replicas;
        }
        groups
    }
}

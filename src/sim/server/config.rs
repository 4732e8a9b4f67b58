//! What one simulated model server is: its names, adapters, engine, clock speed and
//! failure rate ([`SimServerConfig`]), and the `igw sim serve` flags that build it
//! ([`ServeOptions`]).
//!
//! Flag names follow vLLM's (`--model`, `--served-model-name`, `--lora-modules`) and
//! llm-d-inference-sim's where vLLM has no equivalent (`--mode`, `--failure-rate`).
//! Nothing here binds sockets or spawns tasks.

use std::str::FromStr;

use clap::Args;

use crate::serve::{ServeLimitOptions, ServeLimits};
use crate::sim::engine::EngineConfig;
use crate::sim::options::EngineOptions;
use crate::sim::tokens::{OutputMode, Tokenizer};

/// vLLM has no request-body limit; 16 MiB matches the gateway's default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Adapters one replica holds at once unless `--max-lora-adapters` says otherwise.
/// vLLM itself has no such cap (its `--max-cpu-loras` sizes an LRU cache of adapter
/// weights and limits no registration); 1,024 is far more than a replica serves in
/// practice and keeps `/v1/models` under ~5 MB.
pub const DEFAULT_MAX_LORA_ADAPTERS: usize = 1024;
/// The longest adapter name accepted, bytes: names are echoed in every response, in
/// `/v1/models` and in the `vllm:lora_requests_info` labels.
pub const MAX_LORA_NAME_BYTES: usize = 256;
/// The longest adapter path accepted, bytes (Linux's `PATH_MAX`).
pub const MAX_LORA_PATH_BYTES: usize = 4096;
/// The most `--max-lora-adapters` may be: `/v1/models` lists every adapter.
const MAX_MAX_LORA_ADAPTERS: usize = 65_536;

/// The slowest clock accepted: a thousand times slower than real time.
pub const MIN_SPEEDUP: f64 = 1e-3;
/// The fastest clock accepted.
pub const MAX_SPEEDUP: f64 = 1e9;

/// Everything one replica needs, independent of where it listens.
#[derive(Clone, Debug)]
pub struct SimServerConfig {
    /// The base model (`root` of its model cards).
    pub model: String,
    /// Names requests may use for the base model; the first one labels metrics. Empty
    /// means `[model]`.
    pub served_model_names: Vec<String>,
    /// Adapters loaded at start.
    pub lora_modules: Vec<LoraModule>,
    /// Most adapters loaded at once, at start and through `/v1/load_lora_adapter`.
    pub max_lora_adapters: usize,
    pub engine: EngineConfig,
    /// Engine seconds per wall second: every modelled latency is divided by this.
    pub speedup: f64,
    /// How output tokens are chosen.
    pub mode: OutputMode,
    /// Share of generation requests answered with an injected error, percent (0–100).
    pub failure_rate: f64,
    /// Largest request body accepted, bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Sent back as `x-inference-pod` (and, with it, `x-inference-port`).
    pub pod_name: Option<String>,
    /// Sent back as `x-inference-namespace`.
    pub pod_namespace: Option<String>,
    /// The `engine` label of this replica's metrics.
    pub engine_index: usize,
    /// What clients may hold of the replica's HTTP server: timeouts, connections,
    /// buffered request bytes.
    pub limits: ServeLimits,
    /// vLLM's `--gpu-memory-utilization`, only reported (`vllm:cache_config_info`).
    pub gpu_memory_utilization: f64,
    /// The KV blocks a flag set instead of the profile (`num_gpu_blocks_override`).
    pub num_gpu_blocks_override: Option<usize>,
    /// Whether `--block-size` was given (reported as `user_specified_block_size`).
    pub user_specified_block_size: bool,
    /// Prompt counts, output text, usage and prefix-cache ids (`--tokenizer`).
    pub tokenizer: Tokenizer,
    /// vLLM's `--enable-auto-tool-choice`: `tool_choice: "auto"` is served.
    pub enable_auto_tool_choice: bool,
    /// vLLM's `--tool-call-parser`, required by `--enable-auto-tool-choice`; only
    /// checked for presence, as the simulator writes its tool calls as plain JSON.
    pub tool_call_parser: Option<String>,
    /// What the model serves: generation, or embeddings (a pooling model).
    pub runner: Runner,
    /// Length of each embedding vector (a pooling model's hidden size).
    pub embedding_dimensions: usize,
    /// vLLM's version string, answered by `GET /version`.
    pub version: String,
}

/// What a served model does, as vLLM's `--runner` says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Runner {
    /// Text generation: `/v1/completions` and `/v1/chat/completions`.
    #[default]
    Generate,
    /// Embeddings: `/v1/embeddings`; the generation endpoints are not served.
    Pooling,
}

/// The version `GET /version` reports: the vLLM release whose API is emulated.
pub const VLLM_VERSION: &str = "0.26.0";
/// vLLM's default of `max_logprobs`: the most `logprobs` / `top_logprobs` asked for.
pub const MAX_LOGPROBS: u32 = 20;
/// The most sequences one request may ask for (prompts × `n`). vLLM has no cap; this
/// one keeps a single request from filling the waiting queue without bound.
pub const MAX_SEQUENCES_PER_REQUEST: usize = 1024;
/// Embedding length when none is given (a small sentence-embedding model's, 384).
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 384;
/// The longest embedding accepted, floats.
pub const MAX_EMBEDDING_DIMENSIONS: usize = 65_536;

/// vLLM's `--gpu-memory-utilization` default as v0.26 reports it.
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f64 = 0.9;

impl SimServerConfig {
    /// A server for `model` with no adapters, real-time clock, random output, no
    /// injected failures.
    pub fn new(model: impl Into<String>, engine: EngineConfig) -> SimServerConfig {
        SimServerConfig {
            model: model.into(),
            served_model_names: Vec::new(),
            lora_modules: Vec::new(),
            max_lora_adapters: DEFAULT_MAX_LORA_ADAPTERS,
            engine,
            speedup: 1.0,
            mode: OutputMode::default(),
            failure_rate: 0.0,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            pod_name: None,
            pod_namespace: None,
            engine_index: 0,
            limits: ServeLimits::default(),
            gpu_memory_utilization: DEFAULT_GPU_MEMORY_UTILIZATION,
            num_gpu_blocks_override: None,
            user_specified_block_size: false,
            tokenizer: Tokenizer::builtin(),
            enable_auto_tool_choice: false,
            tool_call_parser: None,
            runner: Runner::Generate,
            embedding_dimensions: DEFAULT_EMBEDDING_DIMENSIONS,
            version: VLLM_VERSION.to_string(),
        }
    }

    /// The names requests may use for the base model, first one first.
    pub fn served_names(&self) -> Vec<String> {
        if self.served_model_names.is_empty() {
            vec![self.model.clone()]
        } else {
            self.served_model_names.clone()
        }
    }

    /// Checks every knob; the message names the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.model.is_empty() {
            return Err("--model must not be empty".into());
        }
        if self.served_model_names.iter().any(String::is_empty) {
            return Err("--served-model-name must not be empty".into());
        }
        // Bounds keep engine time ↔ wall time (× and ÷ speedup) far from overflow:
        // an hour-long step at the lowest speedup still ends within 42 days.
        if !(MIN_SPEEDUP..=MAX_SPEEDUP).contains(&self.speedup) {
            return Err(format!(
                "--speedup must be between {MIN_SPEEDUP} and {MAX_SPEEDUP:e}, got {:?}",
                self.speedup
            ));
        }
        if !self.failure_rate.is_finite() || !(0.0..=100.0).contains(&self.failure_rate) {
            return Err(format!(
                "--failure-rate must be a percentage between 0 and 100, got {}",
                self.failure_rate
            ));
        }
        let u = self.gpu_memory_utilization;
        if !(u > 0.0 && u <= 1.0) {
            return Err(format!(
                "--gpu-memory-utilization must be between 0 (exclusive) and 1, got {u}"
            ));
        }
        if self.enable_auto_tool_choice && self.tool_call_parser.is_none() {
            // vLLM refuses to start so too.
            return Err("--enable-auto-tool-choice requires --tool-call-parser".into());
        }
        if !(1..=MAX_EMBEDDING_DIMENSIONS).contains(&self.embedding_dimensions) {
            return Err(format!(
                "--embedding-dimensions must be between 1 and {MAX_EMBEDDING_DIMENSIONS}, got {}",
                self.embedding_dimensions
            ));
        }
        if self.engine.max_loras == 0 {
            // An adapter request could never be admitted and would wait forever.
            return Err(format!(
                "--max-loras must be between 1 and {}, got 0",
                crate::sim::engine::MAX_LORAS
            ));
        }
        self.limits.validate().map_err(|e| e.to_string())?;
        if self.max_body_bytes == 0 || self.max_body_bytes > self.limits.max_inflight_body_bytes {
            // A body larger than the whole budget could never be taken.
            return Err(format!(
                "--max-body-bytes must be between 1 and --max-inflight-body-bytes ({}), got {}",
                self.limits.max_inflight_body_bytes, self.max_body_bytes
            ));
        }
        if !(1..=MAX_MAX_LORA_ADAPTERS).contains(&self.max_lora_adapters)
            || self.max_lora_adapters < self.lora_modules.len()
        {
            return Err(format!(
                "--max-lora-adapters must be between 1 and {MAX_MAX_LORA_ADAPTERS}, and at least \
                 the {} adapters of --lora-modules, got {}",
                self.lora_modules.len(),
                self.max_lora_adapters
            ));
        }
        let served = self.served_names();
        for (i, m) in self.lora_modules.iter().enumerate() {
            if served.contains(&m.name) {
                return Err(format!(
                    "--lora-modules: adapter `{}` has the name of a served model",
                    m.name
                ));
            }
            if self.lora_modules[..i].iter().any(|o| o.name == m.name) {
                return Err(format!(
                    "--lora-modules: adapter `{}` is given twice",
                    m.name
                ));
            }
        }
        self.engine.validate()
    }
}

/// A LoRA adapter: the name requests use and the path it was loaded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoraModule {
    pub name: String,
    pub path: String,
}

impl FromStr for LoraModule {
    type Err = String;

    /// Accepts vLLM's forms: `name=path`, a JSON object `{"name": …, "path": …}`, and a
    /// bare `name` (its path is then the name, as the simulator loads nothing).
    fn from_str(s: &str) -> Result<LoraModule, String> {
        let s = s.trim();
        if s.starts_with('{') {
            #[derive(serde::Deserialize)]
            struct Json {
                name: String,
                path: Option<String>,
            }
            let j: Json =
                serde_json::from_str(s).map_err(|e| format!("invalid adapter JSON `{s}`: {e}"))?;
            return LoraModule::checked(j.name.clone(), j.path.unwrap_or(j.name));
        }
        match s.split_once('=') {
            Some((name, path)) => LoraModule::checked(name.to_string(), path.to_string()),
            None => LoraModule::checked(s.to_string(), s.to_string()),
        }
    }
}

impl LoraModule {
    fn checked(name: String, path: String) -> Result<LoraModule, String> {
        if name.is_empty() || path.is_empty() {
            return Err("an adapter needs a non-empty name and path (NAME=PATH)".into());
        }
        if name.len() > MAX_LORA_NAME_BYTES || path.len() > MAX_LORA_PATH_BYTES {
            return Err(format!(
                "an adapter name may have at most {MAX_LORA_NAME_BYTES} bytes and a path \
                 {MAX_LORA_PATH_BYTES}; got {} and {}",
                name.len(),
                path.len()
            ));
        }
        Ok(LoraModule { name, path })
    }
}

/// `igw sim serve`: one or more vLLM-compatible model servers in this process.
#[derive(Args, Clone, Debug)]
pub struct ServeOptions {
    /// The base model name, as `vllm serve MODEL` takes it.
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// The base model name (vLLM's older `--model` spelling; MODEL wins if both match).
    #[arg(long = "model", value_name = "NAME")]
    pub model_flag: Option<String>,
    /// vLLM's `--enable-prefix-caching`: prefix caching is on unless
    /// `--no-enable-prefix-caching` is given; of the two, the last one given wins.
    #[arg(long, overrides_with = "no_prefix_caching")]
    pub enable_prefix_caching: bool,
    /// vLLM's `--enable-chunked-prefill` (the default); the last of it and
    /// `--no-enable-chunked-prefill` wins.
    #[arg(long, overrides_with = "no_chunked_prefill")]
    pub enable_chunked_prefill: bool,
    /// Accepted for vLLM's command lines: the simulator holds no weights in GPU
    /// memory, so the KV cache keeps the profile's size (or --kv-blocks); the value is
    /// reported in `vllm:cache_config_info`. Between 0 (exclusive) and 1.
    #[arg(long, value_name = "FRACTION")]
    pub gpu_memory_utilization: Option<f64>,
    /// Names requests may use for the model; the first labels metrics. Default: --model.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub served_model_name: Vec<String>,
    /// Address to listen on. 0.0.0.0, vLLM's default and `igw epp run`'s: a simulator
    /// standing in for a model server in a container or pod must be reachable by a
    /// gateway elsewhere. 127.0.0.1 serves this machine only.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// Port of the first replica; replica i listens on port + i (0: any free port each).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Independent servers to run, each with its own engine.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub replicas: usize,
    /// LoRA adapters loaded at start: NAME=PATH, NAME, or vLLM's JSON form.
    #[arg(long, value_name = "NAME=PATH", num_args = 1..)]
    pub lora_modules: Vec<LoraModule>,
    /// Most LoRA adapters loaded at once (--lora-modules and /v1/load_lora_adapter
    /// together); past it loading answers 400. vLLM has no such cap: its
    /// --max-cpu-loras sizes a cache of adapter weights, not the adapters registered.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LORA_ADAPTERS)]
    pub max_lora_adapters: usize,
    /// Run the clock X times faster than real time (every latency divided by X).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speedup: f64,
    /// How output text is chosen.
    #[arg(long, value_enum, default_value_t)]
    pub mode: OutputMode,
    /// Percent of generation requests answered with an injected error (0–100).
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Largest request body accepted, bytes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Pod name reported in `x-inference-pod` (set by Kubernetes' downward API).
    #[arg(long, env = "POD_NAME", hide = true)]
    pub pod_name: Option<String>,
    /// Pod namespace reported in `x-inference-namespace`.
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pub pod_namespace: Option<String>,
    /// A Hugging Face `tokenizer.json` to count and write tokens with (the served
    /// model's, for exact counts); default: the built-in `cl100k_base`.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<std::path::PathBuf>,
    /// vLLM's `--enable-auto-tool-choice`: serve `tool_choice: "auto"` (needs
    /// --tool-call-parser).
    #[arg(long)]
    pub enable_auto_tool_choice: bool,
    /// vLLM's `--tool-call-parser NAME`; any name is accepted, tool calls are JSON.
    #[arg(long, value_name = "NAME")]
    pub tool_call_parser: Option<String>,
    /// vLLM's `--runner`: `generate`, or `pooling` for an embedding model.
    #[arg(long, value_enum)]
    pub runner: Option<Runner>,
    /// vLLM's `--convert embed`: serve the model as an embedding model (pooling).
    #[arg(long, value_name = "TYPE", value_parser = ["auto", "none", "embed"])]
    pub convert: Option<String>,
    /// The older vLLM spelling of the above: `--task embed` (or `generate`).
    #[arg(long, value_name = "TASK", value_parser = ["auto", "generate", "embed", "embedding"])]
    pub task: Option<String>,
    /// Length of the vectors `/v1/embeddings` returns.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_EMBEDDING_DIMENSIONS)]
    pub embedding_dimensions: usize,
    #[command(flatten)]
    pub engine: EngineOptions,
    #[command(flatten)]
    pub limits: ServeLimitOptions,
}

impl ServeOptions {
    /// The configuration of the first replica, validated.
    pub fn config(&self) -> anyhow::Result<SimServerConfig> {
        if !(1..=1024).contains(&self.replicas) {
            anyhow::bail!(
                "--replicas must be between 1 and 1024, got {}",
                self.replicas
            );
        }
        let model = match (&self.model, &self.model_flag) {
            (Some(a), Some(b)) if a != b => anyhow::bail!(
                "the model is given twice, as MODEL `{a}` and as --model `{b}`; give one"
            ),
            (Some(m), _) | (None, Some(m)) => m.clone(),
            (None, None) => {
                anyhow::bail!("a model is needed: `igw sim serve MODEL` (or --model NAME)")
            }
        };
        let mut c = SimServerConfig::new(model, self.engine.engine_config()?);
        c.num_gpu_blocks_override = self.engine.kv_blocks;
        c.user_specified_block_size = self.engine.block_size.is_some();
        if let Some(u) = self.gpu_memory_utilization {
            c.gpu_memory_utilization = u;
        }
        c.served_model_names = self.served_model_name.clone();
        c.lora_modules = self.lora_modules.clone();
        c.max_lora_adapters = self.max_lora_adapters;
        c.speedup = self.speedup;
        c.mode = self.mode;
        c.failure_rate = self.failure_rate;
        c.max_body_bytes = self.max_body_bytes;
        c.limits = self.limits.limits()?;
        c.pod_name = self.pod_name.clone().filter(|s| !s.is_empty());
        c.pod_namespace = self.pod_namespace.clone().filter(|s| !s.is_empty());
        if let Some(path) = &self.tokenizer {
            c.tokenizer =
                Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("--tokenizer: {e}"))?;
        }
        c.enable_auto_tool_choice = self.enable_auto_tool_choice;
        c.tool_call_parser = self.tool_call_parser.clone();
        let embed = self.convert.as_deref() == Some("embed")
            || matches!(self.task.as_deref(), Some("embed" | "embedding"));
        c.runner = match (self.runner, embed) {
            (Some(Runner::Generate), true) => anyhow::bail!(
                "--runner generate cannot serve an embedding model (--convert/--task embed)"
            ),
            (Some(r), _) => r,
            (None, true) => Runner::Pooling,
            (None, false) => Runner::Generate,
        };
        c.embedding_dimensions = self.embedding_dimensions;
        c.validate().map_err(anyhow::Error::msg)?;
        if let Some(u) = self.gpu_memory_utilization {
            tracing::info!(
                "--gpu-memory-utilization {u}: the simulator holds no model weights or \
                 activations in GPU memory, so this fraction sizes nothing here; the KV cache \
                 keeps {} blocks of {} tokens (from the profile, or --kv-blocks / \
                 --num-gpu-blocks-override), and the value is only reported in \
                 vllm:cache_config_info",
                c.engine.num_blocks,
                c.engine.block_size
            );
        }
        Ok(c)
    }

    /// Where to listen.
    pub fn listen(&self) -> Listen {
        Listen {
            host: self.host.clone(),
            port: self.port,
            replicas: self.replicas,
        }
    }
}

/// Where [`spawn`](super::spawn) binds: `replicas` servers on `host`, on consecutive
/// ports from `port` (each on a free port of its own when `port` is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub host: String,
    pub port: u16,
    pub replicas: usize,
}

impl Listen {
    /// `replicas` servers on free loopback ports, as tests and benchmarks want.
    pub fn local(replicas: usize) -> Listen {
        Listen {
            host: "127.0.0.1".into(),
            port: 0,
            replicas,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_modules_parse_every_vllm_form() {
        let m = |s: &str| s.parse::<LoraModule>();
        assert_eq!(
            m("sql=/adapters/sql"),
            Ok(LoraModule {
                name: "sql".into(),
                path: "/adapters/sql".into()
            })
        );
        assert_eq!(
            m("sql"),
            Ok(LoraModule {
                name: "sql".into(),
                path: "sql".into()
            })
        );
        assert_eq!(
            m(r#"{"name":"sql","path":"/a","base_model_name":"m"}"#),
            Ok(LoraModule {
                name: "sql".into(),
                path: "/a".into()
            })
        );
        assert!(m("=x").is_err());
        assert!(m("{not json").is_err());
    }

    #[test]
    fn validate_names_the_flag() {
        let profile = crate::sim::profile::LatencyProfile::builtin("h100-llama3-8b").unwrap();
        let mut c = SimServerConfig::new("m", EngineConfig::from_profile(profile));
        assert_eq!(c.validate(), Ok(()));
        for speedup in [0.0, 1e-22, 1e300, f64::NAN, f64::INFINITY] {
            c.speedup = speedup;
            assert!(c.validate().unwrap_err().contains("--speedup"), "{speedup}");
        }
        c.speedup = 1.0;
        c.failure_rate = 101.0;
        assert!(c.validate().unwrap_err().contains("--failure-rate"));
        c.failure_rate = 0.0;
        c.lora_modules = vec!["m".parse().unwrap()];
        assert!(c.validate().unwrap_err().contains("--lora-modules"));
        c.lora_modules = vec!["a".parse().unwrap(), "b".parse().unwrap()];
        c.max_lora_adapters = 1;
        assert!(c.validate().unwrap_err().contains("--max-lora-adapters"));
        c.max_lora_adapters = DEFAULT_MAX_LORA_ADAPTERS;
        assert_eq!(c.validate(), Ok(()));
        assert!(
            format!("{}=/p", "n".repeat(257))
                .parse::<LoraModule>()
                .is_err()
        );
        assert!(
            format!("{}=/p", "n".repeat(256))
                .parse::<LoraModule>()
                .is_ok()
        );
    }
}

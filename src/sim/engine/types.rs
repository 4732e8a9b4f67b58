//! The engine's vocabulary: its configuration, the requests it accepts, and what a
//! step reports back. Plain data with validation; no scheduling logic lives here.

use std::sync::Arc;
use std::time::Duration;

use crate::sim::metrics::FinishReason;

/// A caller-chosen request id, unique among the engine's live requests.
pub type RequestId = u64;
use crate::sim::profile::{LatencyProfile, StepShape};

/// The most sequences in one batch: 1,024 times vLLM's H100 default.
pub const MAX_NUM_SEQS: usize = 1 << 20;
/// The longest context and the largest step budget, tokens (16.7 M, past any served
/// model's window).
pub const MAX_TOKENS: usize = 1 << 24;
/// The most KV blocks: 16.7 M, ~45 bytes of bookkeeping each (~750 MB).
pub const MAX_KV_BLOCKS: usize = 1 << 24;
/// The largest KV block, tokens (vLLM's largest choice is 256).
pub const MAX_BLOCK_SIZE: usize = 1024;
/// The most adapter slots in one batch.
pub const MAX_LORAS: usize = 4096;
/// The longest adapter load: an hour.
pub const MAX_LORA_LOAD_TIME: Duration = Duration::from_secs(3600);

/// How an engine is shaped and priced.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Step pricing and the default shape (the fields below override its shape).
    pub profile: LatencyProfile,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub max_model_len: usize,
    pub enable_prefix_caching: bool,
    pub enable_chunked_prefill: bool,
    /// Adapters the running batch may use at once (vLLM `--max-loras`).
    pub max_loras: usize,
    /// Added to the step that first uses an adapter that is not resident.
    pub lora_load_time: Duration,
    /// Seeds the step-noise generator.
    pub seed: u64,
}

impl EngineConfig {
    /// An engine shaped as the profile says, prefix caching and chunked prefill on,
    /// one LoRA slot loading in 10 ms (sim-facts §4.7: GPU-slot activation 1–20 ms).
    pub fn from_profile(profile: LatencyProfile) -> EngineConfig {
        EngineConfig {
            max_num_seqs: profile.max_num_seqs,
            max_num_batched_tokens: profile.max_num_batched_tokens,
            num_blocks: profile.kv_blocks,
            block_size: profile.block_size,
            max_model_len: profile.max_model_len,
            profile,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            max_loras: 1,
            lora_load_time: Duration::from_millis(10),
            seed: 0,
        }
    }

    /// Checks the shape; the message names the flag at fault and the accepted range.
    /// The upper bounds keep every product of them (KV tokens, a step's tokens ×
    /// its price, engine time ÷ speedup) far from overflow and every allocation sized
    /// by them within memory.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, v, max) in [
            ("--max-num-seqs", self.max_num_seqs, MAX_NUM_SEQS),
            (
                "--max-num-batched-tokens",
                self.max_num_batched_tokens,
                MAX_TOKENS,
            ),
            ("--kv-blocks", self.num_blocks, MAX_KV_BLOCKS),
            ("--block-size", self.block_size, MAX_BLOCK_SIZE),
            ("--max-model-len", self.max_model_len, MAX_TOKENS),
        ] {
            if !(1..=max).contains(&v) {
                return Err(format!("{flag} must be between 1 and {max}, got {v}"));
            }
        }
        // 0 is an engine without adapters (a LoRA request is refused, not queued).
        if self.max_loras > MAX_LORAS {
            return Err(format!(
                "--max-loras must be between 0 and {MAX_LORAS}, got {}",
                self.max_loras
            ));
        }
        if self.lora_load_time > MAX_LORA_LOAD_TIME {
            return Err(format!(
                "--lora-load-ms must be between 0 and {}, got {}",
                MAX_LORA_LOAD_TIME.as_millis(),
                self.lora_load_time.as_secs_f64() * 1000.0
            ));
        }
        if !self.enable_chunked_prefill && self.max_num_batched_tokens < self.max_model_len {
            // vLLM refuses this too: a long prompt could never be scheduled whole.
            return Err(format!(
                "--max-num-batched-tokens ({}) is smaller than --max-model-len ({}) with chunked \
                 prefill disabled; raise it or enable chunked prefill",
                self.max_num_batched_tokens, self.max_model_len
            ));
        }
        self.profile.validate()
    }
}

/// A request handed to the engine. The caller decides the output up front (its token
/// ids and why it ends), so the engine's only job is timing.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub id: RequestId,
    /// Prompt token ids; at least one.
    pub prompt: Vec<u32>,
    /// The token ids to generate, in order; at least one.
    pub output: Vec<u32>,
    /// Reported when the last output token is produced.
    pub finish_reason: FinishReason,
    /// The adapter serving the request, if any.
    pub lora: Option<Arc<str>>,
}

/// What a client request asked for that vLLM records (`vllm:request_params_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestParams {
    /// The choices asked for (`n`).
    pub n: u32,
    /// `max_tokens` as the server settled it (the client's, or what the context
    /// window leaves); `None` records nothing.
    pub max_tokens: Option<u32>,
}

impl Default for RequestParams {
    fn default() -> RequestParams {
        RequestParams {
            n: 1,
            max_tokens: None,
        }
    }
}

/// One client request: its choices, each a sequence of its own in the engine.
#[derive(Clone, Debug)]
pub struct Parent {
    /// One request per choice; at least one.
    pub children: Vec<NewRequest>,
    pub params: RequestParams,
}

/// Why the engine refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("request {0} is already in the engine")]
    DuplicateId(RequestId),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the request asks for no output tokens")]
    NoOutput,
    #[error(
        "this model's maximum context length is {max_model_len} tokens, but the request asks \
         for {total} ({prompt} in the prompt, {output} to generate)"
    )]
    TooLong {
        max_model_len: usize,
        total: usize,
        prompt: usize,
        output: usize,
    },
    #[error("the request needs {needed} KV blocks but the cache holds only {capacity}")]
    ExceedsKvCapacity { needed: usize, capacity: usize },
    /// With no adapter slots a LoRA request could never join a batch; refusing it
    /// here keeps it from waiting forever.
    #[error("LoRA adapter {0} was requested but the engine has no adapter slots (max_loras 0)")]
    LoraDisabled(Arc<str>),
}

impl AddError {
    /// The HTTP status the simulator's server answers with: 400 when the request
    /// itself cannot be served, 500 for what its own validation should have caught
    /// earlier (a duplicate id, no output asked for).
    pub fn status(&self) -> u16 {
        match self {
            AddError::TooLong { .. }
            | AddError::ExceedsKvCapacity { .. }
            | AddError::EmptyPrompt
            | AddError::LoraDisabled(_) => 400,
            AddError::DuplicateId(_) | AddError::NoOutput => 500,
        }
    }
}

/// Something a step produced, visible at the step's end time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// The request's output token number `index` (0-based).
    Token {
        id: RequestId,
        index: u32,
        token: u32,
    },
    /// The request is done; its blocks are already free.
    Finished {
        id: RequestId,
        reason: FinishReason,
        usage: Usage,
    },
}

/// Token accounting of a finished request, as OpenAI's `usage` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens served from the prefix cache when the request was first admitted
    /// (block-granular, as vLLM's `prompt_tokens_details.cached_tokens`).
    pub cached_tokens: u32,
}

/// What one call to [`Engine::step`](super::Engine::step) did.
#[derive(Debug)]
pub enum StepResult {
    /// A forward pass ran; its events happen at `end`.
    Ran(StepOutput),
    /// Nothing can run now. `wake_at` is when a request that has arrived becomes ready
    /// (after the frontend overhead); `None` means the engine is empty.
    Idle { wake_at: Option<Duration> },
}

/// One forward pass.
#[derive(Debug)]
pub struct StepOutput {
    /// When the step's events become visible: the call's `now` plus `duration`.
    pub end: Duration,
    /// Modelled duration, including noise and adapter loads.
    pub duration: Duration,
    /// The token mix that was priced.
    pub shape: StepShape,
    /// Tokens and completions, in running-queue order.
    pub events: Vec<EngineEvent>,
}

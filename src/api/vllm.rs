//! vLLM's own endpoints beside the OpenAI ones: `/tokenize`, `/detokenize`, the
//! render endpoints, `/version`, and the embeddings API (OpenAI's shape, which vLLM
//! serves for pooling models).
//!
//! Only data and (de)serialisation live here: no I/O, no validation policy.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::openai::{ChatMessage, Usage};

/// The body of `POST /tokenize`: a completion's `prompt` or a chat's `messages`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    /// Add the tokenizer's special tokens (a BOS): vLLM's default is true for a
    /// prompt and false for messages (the chat template writes its own).
    pub add_special_tokens: Option<bool>,
    /// Chat only: end with the assistant's turn header (default true).
    pub add_generation_prompt: Option<bool>,
    /// Also return each token's vocabulary spelling.
    pub return_token_strs: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What `POST /tokenize` answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenizeResponse {
    pub count: usize,
    pub max_model_len: usize,
    pub tokens: Vec<u32>,
    /// Null unless `return_token_strs` was asked for.
    pub token_strs: Option<Vec<String>>,
}

/// The body of `POST /detokenize`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    /// Required; `Option` so a missing list can be reported with `param: "tokens"`.
    pub tokens: Option<Vec<u32>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What `POST /detokenize` answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DetokenizeResponse {
    pub prompt: String,
}

/// `GET /version`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VersionResponse {
    pub version: String,
}

/// One rendered prompt, as `/v1/completions/render` (a list of these, one per prompt)
/// and `/v1/chat/completions/render` (one) answer: the request as the engine would get
/// it, tokenized, without generating.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RenderedPrompt {
    /// `cmpl-…` or `chatcmpl-…`.
    pub request_id: String,
    pub token_ids: Vec<u32>,
    pub sampling_params: RenderedSampling,
    pub model: String,
    pub stream: bool,
}

/// The sampling parameters a rendered prompt would run with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RenderedSampling {
    pub n: u32,
    /// Output tokens at most, after defaulting to what the context window leaves.
    pub max_tokens: usize,
    pub seed: Option<i64>,
    pub ignore_eos: bool,
    pub logprobs: Option<u32>,
}

/// The body of `POST /v1/embeddings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct EmbeddingRequest {
    pub model: Option<String>,
    /// Required: text, texts, token ids, or lists of token ids.
    pub input: Option<super::openai::Prompt>,
    /// `float` (default) or `base64` (little-endian f32s).
    pub encoding_format: Option<String>,
    /// Refused: the simulated model has no matryoshka representation.
    pub dimensions: Option<u32>,
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/embeddings`'s answer (`object: "list"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingResponse {
    /// `embd-…`.
    pub id: String,
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
    pub data: Vec<EmbeddingData>,
    /// Prompt tokens only; `completion_tokens` is 0.
    pub usage: Usage,
}

/// One input's vector.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingData {
    pub index: u32,
    /// Always `embedding`.
    pub object: String,
    /// Floats, or a base64 string of little-endian f32s.
    pub embedding: Value,
}

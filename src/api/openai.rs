//! OpenAI-compatible request and response bodies, as vLLM accepts and emits them.
//!
//! Requests are lenient the way vLLM is: unknown fields are kept aside in `extra` (so a
//! server can log them) instead of being rejected, because gateways add fields of their
//! own. Sampling knobs the simulator does not model (`temperature`, `top_p`, `stop`, …)
//! are typed, so a wrong type is still a 400, and otherwise ignored. Responses carry
//! exactly vLLM's field names (sim-facts §1.3, §1.5, §2.6).
//!
//! Only data and (de)serialisation live here: no I/O, no validation policy, no defaults
//! that depend on a server's configuration.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `stream_options` of a streaming request.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct StreamOptions {
    /// Send a final chunk with `usage` and `choices: []` before `[DONE]`.
    #[serde(default)]
    pub include_usage: Option<bool>,
    /// vLLM extension: usage in every chunk. Accepted and ignored.
    #[serde(default)]
    pub continuous_usage_stats: Option<bool>,
}

/// Fields common to `/v1/completions` and `/v1/chat/completions` that only tune
/// sampling. They are type-checked and otherwise ignored by the simulator.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SamplingFields {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub n: Option<u32>,
    pub best_of: Option<u32>,
    /// A string or an array of strings.
    pub stop: Option<Value>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub logit_bias: Option<Value>,
    pub user: Option<String>,
    pub min_tokens: Option<u32>,
    pub skip_special_tokens: Option<bool>,
    pub use_beam_search: Option<bool>,
}

/// The body of `POST /v1/completions`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CompletionRequest {
    /// Served model name or adapter name; vLLM falls back to the first served name.
    pub model: Option<String>,
    /// Required; `Option` so a missing prompt can be reported with `param: "prompt"`.
    pub prompt: Option<Prompt>,
    /// Output tokens at most; `None` means "up to the context window".
    pub max_tokens: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// vLLM extension: generate exactly `max_tokens`, never stop early.
    pub ignore_eos: Option<bool>,
    /// Seeds the generated text; the same seed and prompt give the same output.
    pub seed: Option<i64>,
    /// Echo the prompt in the output. Accepted and ignored.
    pub echo: Option<bool>,
    /// Log probabilities of this many most likely tokens at each position (and of the
    /// sampled one); at most vLLM's `max_logprobs`.
    pub logprobs: Option<u32>,
    pub suffix: Option<String>,
    /// `{"type": "json_object"}` or `{"type": "json_schema", ...}`: JSON output.
    pub response_format: Option<Value>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Every field the simulator does not know, kept for logging.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `prompt` of a completion request: text, token ids, or (rejected by the simulator)
/// a batch of either.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(
    untagged,
    expecting = "must be a string, an array of token ids, or an array of strings or token-id arrays"
)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    TextBatch(Vec<String>),
    TokenBatch(Vec<Vec<u32>>),
}

/// The body of `POST /v1/chat/completions`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
    /// Required; `Option` so a missing list can be reported with `param: "messages"`.
    pub messages: Option<Vec<ChatMessage>>,
    /// Output tokens at most (deprecated by OpenAI in favour of `max_completion_tokens`).
    pub max_tokens: Option<i64>,
    /// Output tokens at most; wins over `max_tokens` when both are given.
    pub max_completion_tokens: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub ignore_eos: Option<bool>,
    pub seed: Option<i64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub response_format: Option<Value>,
    pub chat_template_kwargs: Option<Value>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat turn.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    /// Absent or null for e.g. an assistant turn that only calls tools.
    #[serde(default)]
    pub content: Option<MessageContent>,
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message's content: plain text or a list of typed parts.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged, expecting = "must be a string or an array of content parts")]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message. Only `{"type": "text", "text": …}` carries text
/// the simulator can use.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of `POST /v1/load_lora_adapter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct LoadLoraAdapterRequest {
    #[serde(default)]
    pub lora_name: String,
    #[serde(default)]
    pub lora_path: String,
}

/// The body of `POST /v1/unload_lora_adapter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct UnloadLoraAdapterRequest {
    #[serde(default)]
    pub lora_name: String,
    /// vLLM accepts an adapter's integer id instead of its name; the simulator only
    /// resolves names.
    pub lora_int_id: Option<i64>,
}

/// Token accounting, as OpenAI's `usage` object.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// Breakdown of the prompt tokens.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache (block-granular).
    pub cached_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens }),
        }
    }
}

/// A non-streaming `/v1/completions` response (`object: "text_completion"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompletionResponse {
    pub id: String,
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: Usage,
}

/// One choice of a completion response or stream chunk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    pub logprobs: Option<Value>,
    /// `stop` or `length` on the last chunk or a whole response; null otherwise.
    pub finish_reason: Option<String>,
    pub stop_reason: Option<Value>,
}

/// One SSE chunk of a streaming `/v1/completions` response (`object: "text_completion"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub usage: Option<Usage>,
}

/// A non-streaming `/v1/chat/completions` response (`object: "chat.completion"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatCompletionResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

/// One choice of a chat response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ResponseMessage,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<String>,
    pub stop_reason: Option<Value>,
}

/// The assistant's message in a chat response. vLLM always writes `tool_calls`,
/// empty when the model called none.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResponseMessage {
    pub role: String,
    /// Null when the reply is only tool calls.
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
}

/// A call of one of the request's tools.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    /// `chatcmpl-tool-…`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

/// The function a tool call names and its arguments, a JSON text.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// One SSE chunk of a streaming chat response (`object: "chat.completion.chunk"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub usage: Option<Usage>,
}

/// One choice of a chat stream chunk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<String>,
}

/// The increment a chat chunk carries; both fields absent on the finishing chunk.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content: Option<String>,
    /// Tool-call increments: the first carries the call's id, type and name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tool_calls: Option<Vec<Value>>,
}

/// `GET /v1/models`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ModelCard>,
}

/// One served model or adapter (sim-facts §1.3).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelCard {
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    pub owned_by: String,
    /// The base model for served names; the adapter's path for adapters.
    pub root: Option<String>,
    /// The first served name for adapters; null for base models.
    pub parent: Option<String>,
    /// Context window in tokens; null for adapters, as vLLM reports them.
    pub max_model_len: Option<usize>,
}

/// vLLM's error body: `{"error": {"message", "type", "param", "code"}}` (sim-facts §2.6).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorResponse {
    pub error: ErrorInfo,
}

/// The inside of an [`ErrorResponse`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorInfo {
    pub message: String,
    /// e.g. `BadRequestError`, `NotFoundError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when known.
    pub param: Option<String>,
    /// The HTTP status code.
    pub code: u16,
}

impl ErrorResponse {
    /// The body for `status` with `message`, typed by [`error_type`].
    pub fn new(status: u16, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            error: ErrorInfo {
                message: message.into(),
                kind: error_type(status).into(),
                param: None,
                code: status,
            },
        }
    }
}

/// OpenAI's client error classes by status (the `openai` npm/Python packages), the
/// `type` vLLM writes.
pub fn error_type(status: u16) -> &'static str {
    match status {
        // 413 has no class of its own; it is a bad request all the same.
        400 | 413 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        409 => "ConflictError",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        s if s >= 500 => "InternalServerError",
        _ => "APIError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_request_keeps_unknown_fields_aside() {
        let r: CompletionRequest = serde_json::from_str(
            r#"{"model":"m","prompt":[1,2,3],"max_tokens":5,"temperature":0.2,
                "x-gateway-hint":"a","stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(r.prompt, Some(Prompt::Tokens(vec![1, 2, 3])));
        assert_eq!(r.sampling.temperature, Some(0.2));
        assert_eq!(r.extra.keys().collect::<Vec<_>>(), vec!["x-gateway-hint"]);
        assert_eq!(r.stream_options.unwrap().include_usage, Some(true));
    }

    #[test]
    fn chat_content_may_be_text_parts_or_null() {
        let r: ChatCompletionRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"hi"},
                {"role":"user","content":[{"type":"text","text":"a"}]},
                {"role":"assistant","content":null}]}"#,
        )
        .unwrap();
        let m = r.messages.unwrap();
        assert_eq!(m[0].content, Some(MessageContent::Text("hi".into())));
        assert!(matches!(m[1].content, Some(MessageContent::Parts(_))));
        assert_eq!(m[2].content, None);
    }

    #[test]
    fn usage_and_errors_serialise_with_vllm_names() {
        let u = serde_json::to_value(Usage::new(10, 5, 8)).unwrap();
        assert_eq!(
            u,
            serde_json::json!({"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
                               "prompt_tokens_details":{"cached_tokens":8}})
        );
        let e = ErrorResponse {
            error: ErrorInfo {
                message: "m".into(),
                kind: "NotFoundError".into(),
                param: None,
                code: 404,
            },
        };
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            serde_json::json!({"error":{"message":"m","type":"NotFoundError","param":null,"code":404}})
        );
    }
}

//! What the picker knows about one request once its body is parsed, and how its
//! response ended.
//!
//! Pure data, shared by the scheduler (which decides on [`LlmRequest`] and tells its
//! plugins about each [`Completion`]) and the lifecycle around it.

use std::time::Duration;

/// The OpenAI API a request body targets, chosen by path suffix as GIE's
/// `openai-parser` does (gie-facts §1.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    Completions,
    ChatCompletions,
    Embeddings,
    Responses,
    /// The body is not interpreted (GIE's `passthrough-parser`).
    Passthrough,
}

/// A request as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmRequest {
    /// From `x-request-id`, or generated.
    pub request_id: String,
    /// The body's `model`.
    pub incoming_model: String,
    /// The model the endpoint must serve: `x-gateway-model-name-rewrite`, else the
    /// incoming model. Base model or LoRA adapter name.
    pub target_model: String,
    pub api: ApiKind,
    /// The bytes prefix-affinity hashes: the completion prompt text, or the JSON of
    /// the chat `messages` (gie-facts §4.2).
    pub prefix_bytes: Vec<u8>,
    /// `cache_salt`, mixed into the prefix hash seed when present.
    pub cache_salt: Option<String>,
    /// From the request's InferenceObjective; 0 when none. Below 0 is sheddable.
    pub priority: i32,
    pub stream: bool,
    /// The body's length in bytes.
    pub body_len: usize,
}

/// Token accounting of one response, from its `usage` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// How a forwarded request's response ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The response's HTTP status.
    pub status: u16,
    /// The response body reached its end (not abandoned by the client or cut by the
    /// server).
    pub complete: bool,
    /// From the body, if the server sent a `usage` object.
    pub usage: Option<TokenUsage>,
    /// From sending the request to the first body byte.
    pub first_byte: Option<Duration>,
    /// From sending the request to the end (or abandonment) of the body.
    pub elapsed: Duration,
    /// Response bytes passed on.
    pub bytes: u64,
}

/// Bytes per token GIE's in-flight load producer assumes for a request body.
const BYTES_PER_TOKEN: usize = 4;
/// Expected output tokens per input token in that estimate.
const OUTPUT_RATIO: f64 = 1.5;

impl LlmRequest {
    /// The tokens this request is expected to hold on its endpoint, as GIE's
    /// `inflight-load-producer` books them for `token-load-scorer` (its
    /// `SimpleTokenEstimator`): input ≈ body bytes / 4 (at least 1), output ≈ 1.5 ×
    /// input, the sum of both. A rough size, not a tokenisation: it costs nothing on
    /// the request path and orders requests by how much KV they are likely to take.
    pub fn estimated_tokens(&self) -> u64 {
        let input = (self.body_len / BYTES_PER_TOKEN).max(1) as u64;
        let output = (input as f64 * OUTPUT_RATIO).round() as u64;
        input + output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body_len: usize) -> LlmRequest {
        LlmRequest {
            request_id: "r".into(),
            incoming_model: "m".into(),
            target_model: "m".into(),
            api: ApiKind::Completions,
            prefix_bytes: Vec::new(),
            cache_salt: None,
            priority: 0,
            stream: false,
            body_len,
        }
    }

    #[test]
    fn estimated_tokens_follow_gie_simple_estimator() {
        // 4,000 bytes → 1,000 input + 1,500 output.
        assert_eq!(request(4_000).estimated_tokens(), 2_500);
        // 10 bytes → 2 input + 3 output.
        assert_eq!(request(10).estimated_tokens(), 5);
        // 6 bytes → 1 input + round(1.5) = 2 output.
        assert_eq!(request(6).estimated_tokens(), 3);
        // An empty body still counts as one input token.
        assert_eq!(request(0).estimated_tokens(), 3);
    }
}

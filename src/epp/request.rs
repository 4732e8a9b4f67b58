//! What the picker knows about one request once its body is parsed.

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

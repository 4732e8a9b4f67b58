//! `POST /v1/completions` and `POST /v1/chat/completions`: the request flow.
//!
//! parse → resolve the model (a served name or a loaded adapter) → refuse a text
//! too long for the context window from its length alone → tokenize, off the runtime
//! when large (chat: apply the chat template first; see `prompt`) → default and
//! validate `max_tokens` against the context window → roll failure injection → plan the output → hand it to the driver → answer
//! whole or as a stream. Every check answers with vLLM's status and error shape; none
//! may panic on client input. Nothing here touches the engine directly.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiJson};
use super::prompt;
use super::replica::{Replica, Resolved, unix_secs};
use super::stream::{self, Api, ResponseMeta};
use crate::api::openai::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, CompletionChoice, CompletionRequest,
    CompletionResponse, MessageContent, Prompt, ResponseMessage, StreamOptions,
};
use crate::sim::engine::NewRequest;
use crate::sim::tokens::{self, ChatTurn};

/// `POST /v1/completions`.
pub async fn completions(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    log_unknown_fields("/v1/completions", req.extra.keys());
    let model = replica.resolve(req.model.as_deref())?;
    let max_len = replica.config.engine.max_model_len;
    let prompt = match req.prompt {
        None => return Err(ApiError::bad_request("`prompt` is required.").with_param("prompt")),
        Some(Prompt::Text(text)) => {
            prompt::check_length(max_len, text.len(), req.max_tokens, "prompt")?;
            prompt::encode(text).await?
        }
        Some(Prompt::Tokens(ids)) => ids,
        Some(Prompt::TextBatch(mut texts)) if texts.len() == 1 => {
            let text = texts.pop().unwrap_or_default();
            prompt::check_length(max_len, text.len(), req.max_tokens, "prompt")?;
            prompt::encode(text).await?
        }
        Some(Prompt::TokenBatch(mut lists)) if lists.len() == 1 => lists.pop().unwrap_or_default(),
        Some(Prompt::TextBatch(_) | Prompt::TokenBatch(_)) => {
            return Err(
                ApiError::bad_request("batched prompts are not supported").with_param("prompt")
            );
        }
    };
    let stream = stream_mode(req.stream, req.stream_options.as_ref())?;
    let job = Job {
        prompt,
        max_tokens: req.max_tokens,
        max_tokens_param: "max_tokens",
        prompt_param: "prompt",
        ignore_eos: req.ignore_eos.unwrap_or(false),
        seed: req.seed,
    };
    let (request, model) = prepare(&replica, job, model)?;
    let meta = ResponseMeta {
        id: format!("cmpl-{:032x}", rand::random::<u128>()),
        created: unix_secs(),
        model,
    };
    let running = stream::submit(&replica.driver, request).await?;
    if let Some(include_usage) = stream {
        return Ok(stream::sse(Api::Completions, meta, include_usage, running).into_response());
    }
    let out = stream::collect(running).await?;
    Ok(Json(CompletionResponse {
        id: meta.id,
        object: "text_completion".into(),
        created: meta.created,
        model: meta.model,
        choices: vec![CompletionChoice {
            index: 0,
            text: tokens::decode(&out.tokens),
            logprobs: None,
            finish_reason: Some(out.reason.as_str().into()),
            stop_reason: None,
        }],
        usage: out.usage,
    })
    .into_response())
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    log_unknown_fields("/v1/chat/completions", req.extra.keys());
    let model = replica.resolve(req.model.as_deref())?;
    let Some(messages) = req.messages else {
        return Err(ApiError::bad_request("`messages` is required.").with_param("messages"));
    };
    if messages.is_empty() {
        return Err(
            ApiError::bad_request("`messages` must contain at least one message.")
                .with_param("messages"),
        );
    }
    let mut contents = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        contents.push(message_text(m.content.as_ref()).map_err(|what| {
            ApiError::bad_request(format!("messages[{i}].content: {what}")).with_param("messages")
        })?);
    }
    let turns: Vec<ChatTurn<'_>> = messages
        .iter()
        .zip(&contents)
        .map(|(m, content)| ChatTurn {
            role: &m.role,
            content,
        })
        .collect();
    let (max_tokens, max_tokens_param) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(n), _) => (Some(n), "max_completion_tokens"),
        (None, n) => (n, "max_tokens"),
    };
    let text = tokens::apply_chat_template(&turns);
    // Only the flattened text is needed now; don't hold three copies across the await.
    drop(turns);
    drop((contents, messages));
    let max_len = replica.config.engine.max_model_len;
    prompt::check_length(max_len, text.len(), max_tokens, "messages")?;
    let prompt = prompt::encode(text).await?;
    let stream = stream_mode(req.stream, req.stream_options.as_ref())?;
    let job = Job {
        prompt,
        max_tokens,
        max_tokens_param,
        prompt_param: "messages",
        ignore_eos: req.ignore_eos.unwrap_or(false),
        seed: req.seed,
    };
    let (request, model) = prepare(&replica, job, model)?;
    let meta = ResponseMeta {
        id: format!("chatcmpl-{:032x}", rand::random::<u128>()),
        created: unix_secs(),
        model,
    };
    let running = stream::submit(&replica.driver, request).await?;
    if let Some(include_usage) = stream {
        return Ok(stream::sse(Api::Chat, meta, include_usage, running).into_response());
    }
    let out = stream::collect(running).await?;
    Ok(Json(ChatCompletionResponse {
        id: meta.id,
        object: "chat.completion".into(),
        created: meta.created,
        model: meta.model,
        choices: vec![ChatChoice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content: tokens::decode(&out.tokens),
            },
            logprobs: None,
            finish_reason: Some(out.reason.as_str().into()),
            stop_reason: None,
        }],
        usage: out.usage,
    })
    .into_response())
}

/// A message's text: the string, or its text parts joined by newlines (as vLLM
/// joins them); null content is empty.
fn message_text(content: Option<&MessageContent>) -> Result<String, String> {
    match content {
        None => Ok(String::new()),
        Some(MessageContent::Text(s)) => Ok(s.clone()),
        Some(MessageContent::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for p in parts {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => texts.push(t.as_str()),
                    ("text", None) => return Err("a text part needs a `text` field".into()),
                    (other, _) => {
                        return Err(format!(
                            "content parts of type `{other}` are not supported; only `text` is"
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

/// `Some(include_usage)` for a streaming request. vLLM refuses stream options
/// without streaming.
fn stream_mode(
    stream: Option<bool>,
    options: Option<&StreamOptions>,
) -> Result<Option<bool>, ApiError> {
    let include_usage = options.and_then(|o| o.include_usage).unwrap_or(false);
    // vLLM tests the options for truthiness: `{}` passes, any set field does not.
    let any_set =
        options.is_some_and(|o| o.include_usage.is_some() || o.continuous_usage_stats.is_some());
    match stream {
        Some(true) => Ok(Some(include_usage)),
        _ if any_set => Err(ApiError::bad_request(
            "Stream options can only be defined when `stream=True`.",
        )
        .with_param("stream_options")),
        _ => Ok(None),
    }
}

/// What the two endpoints share once their prompt is tokenized.
struct Job {
    prompt: Vec<u32>,
    max_tokens: Option<i64>,
    /// The field `max_tokens` came from, for error messages.
    max_tokens_param: &'static str,
    /// The field the prompt came from, for error messages.
    prompt_param: &'static str,
    ignore_eos: bool,
    seed: Option<i64>,
}

/// Validates a job against the context window and plans its output. Returns the
/// engine request and the model name to echo.
fn prepare(replica: &Replica, job: Job, model: Resolved) -> Result<(NewRequest, String), ApiError> {
    let max_len = replica.config.engine.max_model_len;
    let prompt_len = job.prompt.len();
    if prompt_len == 0 {
        return Err(
            ApiError::bad_request("The prompt cannot be empty.").with_param(job.prompt_param)
        );
    }
    let max_tokens = match job.max_tokens {
        Some(n) if n < 1 => {
            return Err(ApiError::bad_request(format!(
                "{} must be at least 1, got {n}.",
                job.max_tokens_param
            ))
            .with_param(job.max_tokens_param));
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None if prompt_len >= max_len => {
            return Err(ApiError::bad_request(format!(
                "This model's maximum context length is {max_len} tokens. However, you \
                 requested {prompt_len} tokens in the messages, Please reduce the length of \
                 the messages."
            ))
            .with_param(job.prompt_param));
        }
        // vLLM's default: whatever the context window leaves.
        None => max_len - prompt_len,
    };
    if prompt_len.saturating_add(max_tokens) > max_len {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {max_len} tokens. However, you requested \
             {} tokens ({prompt_len} in the messages, {max_tokens} in the completion). Please \
             reduce the length of the messages or completion.",
            prompt_len.saturating_add(max_tokens)
        ))
        .with_param(job.prompt_param));
    }
    if let Some(e) = replica.roll_failure() {
        return Err(e);
    }
    let id = replica.next_request_id();
    let seed = match job.seed {
        // The bits of the client's seed, whatever its sign.
        Some(s) => s as u64,
        // Distinct per request, reproducible per replica run.
        None => splitmix(replica.config.engine.seed ^ splitmix(id)),
    };
    let plan = tokens::plan_output(
        replica.config.mode,
        seed,
        &job.prompt,
        max_tokens,
        job.ignore_eos,
    );
    let request = NewRequest {
        id,
        prompt: job.prompt,
        output: plan.tokens,
        finish_reason: plan.finish_reason,
        lora: model.lora,
    };
    Ok((request, model.name))
}

/// SplitMix64's finaliser: spreads consecutive ids over the whole seed space.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn log_unknown_fields<'a>(path: &str, keys: impl Iterator<Item = &'a String>) {
    let keys: Vec<&String> = keys.collect();
    if !keys.is_empty() {
        tracing::debug!(path, fields = ?keys, "ignoring unknown request fields");
    }
}

//! `POST /v1/completions` and `POST /v1/chat/completions`: the request flow.
//!
//! parse → resolve the model (a served name or a loaded adapter) → refuse a text
//! too long for the context window from its length alone → tokenize with the
//! replica's tokenizer, off the runtime when large (chat: apply the chat template
//! first; see `prompt`) → the output's shape (`response_format`, tools; see `tools`)
//! → validate and plan every choice (`job`) → hand each sequence to the driver →
//! answer whole or as a stream (`sse`). Every check answers with vLLM's status and
//! error shape; none may panic on client input. Nothing here touches the engine
//! directly.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::choice::{ChoiceSpec, UsageSum};
use super::error::{ApiError, ApiJson};
use super::job::{self, Job};
use super::logprobs;
use super::prompt;
use super::replica::{Replica, unix_secs};
use super::sse::{self, Api, ResponseMeta};
use super::stream::{self, Collected, Running};
use super::tools;
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
    let stream = stream_mode(req.stream, req.stream_options.as_ref())?;
    job::check_logprobs(req.logprobs, "logprobs")?;
    let shape = tools::response_shape(req.response_format.as_ref())?;
    let Some(prompt) = req.prompt else {
        return Err(ApiError::bad_request("`prompt` is required.").with_param("prompt"));
    };
    let prompts = completion_prompts(&replica, prompt, req.max_tokens).await?;
    let job = Job {
        prompts,
        n: req.sampling.n.map(i64::from),
        max_tokens: req.max_tokens,
        max_tokens_param: "max_tokens",
        prompt_param: "prompt",
        ignore_eos: req.ignore_eos.unwrap_or(false),
        seed: req.seed,
        logprobs: req.logprobs,
        shape,
    };
    let (sequences, model) = job::prepare(&replica, job, model)?;
    let meta = ResponseMeta {
        id: format!("cmpl-{:032x}", rand::random::<u128>()),
        created: unix_secs(),
        model,
    };
    let running = submit_all(&replica, sequences).await?;
    let tokenizer = replica.config.tokenizer.clone();
    if let Some(include_usage) = stream {
        let body = sse::sse(Api::Completions, meta, include_usage, tokenizer, running);
        return Ok(body.into_response());
    }
    let (outs, usage) = collect_all(running).await?;
    let choices = outs
        .into_iter()
        .map(|(spec, out)| CompletionChoice {
            index: spec.index,
            text: tokenizer.decode(&out.tokens),
            logprobs: spec.logprobs.map(|top| {
                let entries = logprob_entries(&replica, &spec, &out, top);
                logprobs::completion_object(&tokenizer, &entries, 0)
            }),
            finish_reason: Some(spec.finish_reason(out.reason)),
            stop_reason: None,
        })
        .collect();
    Ok(Json(CompletionResponse {
        id: meta.id,
        object: "text_completion".into(),
        created: meta.created,
        model: meta.model,
        choices,
        usage,
    })
    .into_response())
}

/// A completion's prompts tokenized: one text or id list, or a list of either.
async fn completion_prompts(
    replica: &Replica,
    prompt: Prompt,
    max_tokens: Option<i64>,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let tokenizer = &replica.config.tokenizer;
    let max_len = replica.config.engine.max_model_len;
    let texts = match prompt {
        Prompt::Tokens(ids) => return Ok(vec![ids]),
        Prompt::TokenBatch(lists) => return Ok(lists),
        Prompt::Text(text) => vec![text],
        Prompt::TextBatch(texts) => texts,
    };
    if texts.len() > super::config::MAX_SEQUENCES_PER_REQUEST {
        // Refused before any is tokenized; `job` words the same cap for ids.
        return Err(ApiError::bad_request(format!(
            "A request may ask for at most {} sequences (prompts × n); this one has {} prompts.",
            super::config::MAX_SEQUENCES_PER_REQUEST,
            texts.len()
        ))
        .with_param("prompt"));
    }
    for text in &texts {
        prompt::check_length(tokenizer, max_len, text.len(), max_tokens, "prompt")?;
    }
    let mut out = Vec::with_capacity(texts.len());
    for text in texts {
        // vLLM's completions add the tokenizer's special tokens (a BOS).
        out.push(prompt::encode(tokenizer, text, true, "prompt").await?);
    }
    Ok(out)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    log_unknown_fields("/v1/chat/completions", req.extra.keys());
    let model = replica.resolve(req.model.as_deref())?;
    let stream = stream_mode(req.stream, req.stream_options.as_ref())?;
    let top_logprobs = match (req.logprobs, req.top_logprobs) {
        (Some(true), top) => Some(top.unwrap_or(0)),
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "when using `top_logprobs`, `logprobs` must be set to true.",
            )
            .with_param("top_logprobs"));
        }
        _ => None,
    };
    job::check_logprobs(top_logprobs, "top_logprobs")?;
    let shape = match tools::tool_shape(
        &replica.config,
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        req.seed,
    )? {
        Some(shape) => shape,
        None => tools::response_shape(req.response_format.as_ref())?,
    };
    let text = chat_prompt_text(req.messages)?;
    let (max_tokens, max_tokens_param) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(n), _) => (Some(n), "max_completion_tokens"),
        (None, n) => (n, "max_tokens"),
    };
    let tokenizer = replica.config.tokenizer.clone();
    let max_len = replica.config.engine.max_model_len;
    prompt::check_length(&tokenizer, max_len, text.len(), max_tokens, "messages")?;
    // The template writes the turns' markers itself: no special tokens added.
    let prompt = prompt::encode(&tokenizer, text, false, "messages").await?;
    let job = Job {
        prompts: vec![prompt],
        n: req.sampling.n.map(i64::from),
        max_tokens,
        max_tokens_param,
        prompt_param: "messages",
        ignore_eos: req.ignore_eos.unwrap_or(false),
        seed: req.seed,
        logprobs: top_logprobs,
        shape,
    };
    let (sequences, model) = job::prepare(&replica, job, model)?;
    let meta = ResponseMeta {
        id: format!("chatcmpl-{:032x}", rand::random::<u128>()),
        created: unix_secs(),
        model,
    };
    let running = submit_all(&replica, sequences).await?;
    if let Some(include_usage) = stream {
        let body = sse::sse(Api::Chat, meta, include_usage, tokenizer, running);
        return Ok(body.into_response());
    }
    let (outs, usage) = collect_all(running).await?;
    let choices = outs
        .into_iter()
        .map(|(spec, out)| {
            let text = tokenizer.decode(&out.tokens);
            let (content, tool_calls) = match spec.tool_call(text.clone()) {
                // vLLM leaves an auto tool call's content null, a forced one's empty.
                Some(call) => {
                    let null = matches!(
                        &spec.output,
                        super::choice::Output::ToolCall {
                            content_null: true,
                            ..
                        }
                    );
                    ((!null).then(String::new), vec![call])
                }
                None => (Some(text), Vec::new()),
            };
            ChatChoice {
                index: spec.index,
                message: ResponseMessage {
                    role: "assistant".into(),
                    content,
                    tool_calls,
                },
                logprobs: spec.logprobs.map(|top| {
                    let entries = logprob_entries(&replica, &spec, &out, top);
                    logprobs::chat_object(&tokenizer, &entries)
                }),
                finish_reason: Some(spec.finish_reason(out.reason)),
                stop_reason: None,
            }
        })
        .collect();
    Ok(Json(ChatCompletionResponse {
        id: meta.id,
        object: "chat.completion".into(),
        created: meta.created,
        model: meta.model,
        choices,
        usage,
    })
    .into_response())
}

/// A conversation flattened by the chat template, checked as vLLM checks messages.
pub fn chat_prompt_text(
    messages: Option<Vec<crate::api::openai::ChatMessage>>,
) -> Result<String, ApiError> {
    let Some(messages) = messages else {
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
    Ok(tokens::apply_chat_template(&turns))
}

/// Hands every sequence to the engine. A refusal of any aborts those already in
/// (their guards drop with the error).
async fn submit_all(
    replica: &Replica,
    sequences: Vec<(ChoiceSpec, NewRequest)>,
) -> Result<Vec<(ChoiceSpec, Running)>, ApiError> {
    let mut running = Vec::with_capacity(sequences.len());
    for (spec, request) in sequences {
        running.push((spec, stream::submit(&replica.driver, request).await?));
    }
    Ok(running)
}

/// Waits for every sequence; the usage summed as vLLM sums it.
async fn collect_all(
    running: Vec<(ChoiceSpec, Running)>,
) -> Result<(Vec<(ChoiceSpec, Collected)>, crate::api::openai::Usage), ApiError> {
    let mut sum = UsageSum::default();
    let specs: Vec<ChoiceSpec> = running.iter().map(|(s, _)| s.clone()).collect();
    let outs =
        futures::future::try_join_all(running.into_iter().map(|(_, r)| stream::collect(r))).await?;
    for (spec, out) in specs.iter().zip(&outs) {
        sum.add(spec, &out.usage);
    }
    Ok((specs.into_iter().zip(outs).collect(), sum.usage()))
}

fn logprob_entries(
    replica: &Replica,
    spec: &ChoiceSpec,
    out: &Collected,
    top: u32,
) -> Vec<logprobs::TokenLogprob> {
    let tokenizer = &replica.config.tokenizer;
    out.tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| logprobs::sample(tokenizer, spec.seed, i as u32, t, top))
        .collect()
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

fn log_unknown_fields<'a>(path: &str, keys: impl Iterator<Item = &'a String>) {
    let keys: Vec<&String> = keys.collect();
    if !keys.is_empty() {
        tracing::debug!(path, fields = ?keys, "ignoring unknown request fields");
    }
}

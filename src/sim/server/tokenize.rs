//! vLLM's tokenizer endpoints, with the engine's own tokenizer and chat template:
//! `/tokenize` (a prompt or messages), `/detokenize`, the render endpoints (a request
//! as the engine would get it, tokenized, nothing generated) and `/version`.
//!
//! Texts are length-checked and large ones encoded off the runtime as the generation
//! endpoints do (`prompt`). Nothing here reaches the engine.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::error::{ApiError, ApiJson};
use super::generate::chat_prompt_text;
use super::prompt;
use super::replica::Replica;
use crate::api::openai::{ChatCompletionRequest, CompletionRequest, Prompt};
use crate::api::vllm::{
    DetokenizeRequest, DetokenizeResponse, RenderedPrompt, RenderedSampling, TokenizeRequest,
    TokenizeResponse, VersionResponse,
};

/// `POST /tokenize`.
pub async fn tokenize(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    replica.resolve(req.model.as_deref())?;
    let tokenizer = &replica.config.tokenizer;
    let max_len = replica.config.engine.max_model_len;
    let (text, add_special, param) = match (req.prompt, req.messages) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Either `prompt` or `messages` must be given, not both.",
            ));
        }
        (Some(p), None) => (p, req.add_special_tokens.unwrap_or(true), "prompt"),
        (None, Some(m)) => {
            if req.add_generation_prompt == Some(false) {
                // The template here always ends with the assistant's header.
                tracing::debug!("add_generation_prompt=false is not modelled; the header stays");
            }
            (
                chat_prompt_text(Some(m))?,
                req.add_special_tokens.unwrap_or(false),
                "messages",
            )
        }
        (None, None) => {
            return Err(
                ApiError::bad_request("`prompt` or `messages` is required.").with_param("prompt")
            );
        }
    };
    // A text no context window could hold is refused as generation would be; its
    // length alone bounds its tokens (vLLM tokenizes it, at a cost we avoid).
    prompt::check_length(
        tokenizer,
        max_len.saturating_mul(64),
        text.len(),
        None,
        param,
    )?;
    let tokens = prompt::encode(tokenizer, text, add_special, param).await?;
    let token_strs = req.return_token_strs.unwrap_or(false).then(|| {
        tokens
            .iter()
            .map(|&id| tokenizer.token_str(id).unwrap_or_default())
            .collect()
    });
    Ok(Json(TokenizeResponse {
        count: tokens.len(),
        max_model_len: max_len,
        tokens,
        token_strs,
    }))
}

/// `POST /detokenize`.
pub async fn detokenize(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    replica.resolve(req.model.as_deref())?;
    let Some(tokens) = req.tokens else {
        return Err(ApiError::bad_request("`tokens` is required.").with_param("tokens"));
    };
    let tokenizer = replica.config.tokenizer.clone();
    if let Some(&id) = tokens.iter().max()
        && id as usize >= tokenizer.vocab_size()
    {
        return Err(
            ApiError::bad_request(format!("Token id {id} is out of vocabulary"))
                .with_param("tokens"),
        );
    }
    let prompt = if tokens.len() <= prompt::INLINE_BYTES / 4 {
        tokenizer.decode(&tokens)
    } else {
        prompt::off_thread(move || tokenizer.decode(&tokens)).await?
    };
    Ok(Json(DetokenizeResponse { prompt }))
}

/// `GET /version`.
pub async fn version(State(replica): State<Arc<Replica>>) -> Json<VersionResponse> {
    Json(VersionResponse {
        version: replica.config.version.clone(),
    })
}

/// The sampling a rendered prompt of `len` tokens would run with.
fn sampling(
    replica: &Replica,
    len: usize,
    n: Option<u32>,
    max_tokens: Option<i64>,
    seed: Option<i64>,
    ignore_eos: Option<bool>,
    logprobs: Option<u32>,
) -> Result<RenderedSampling, ApiError> {
    let max_len = replica.config.engine.max_model_len;
    let max_tokens = match max_tokens {
        Some(n) if n < 1 => {
            return Err(
                ApiError::bad_request(format!("max_tokens must be at least 1, got {n}."))
                    .with_param("max_tokens"),
            );
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => max_len.saturating_sub(len),
    };
    if len.saturating_add(max_tokens) > max_len || max_tokens == 0 {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {max_len} tokens. However, you requested \
             {} tokens ({len} in the messages, {max_tokens} in the completion). Please \
             reduce the length of the messages or completion.",
            len.saturating_add(max_tokens)
        ))
        .with_param("prompt"));
    }
    Ok(RenderedSampling {
        n: n.unwrap_or(1),
        max_tokens,
        seed,
        ignore_eos: ignore_eos.unwrap_or(false),
        logprobs,
    })
}

/// `POST /v1/completions/render`: one rendered prompt per prompt.
pub async fn render_completion(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Json<Vec<RenderedPrompt>>, ApiError> {
    let model = replica.resolve(req.model.as_deref())?;
    let prompts = match req.prompt {
        None => return Err(ApiError::bad_request("`prompt` is required.").with_param("prompt")),
        Some(Prompt::Tokens(ids)) => vec![ids],
        Some(Prompt::TokenBatch(lists)) => lists,
        Some(Prompt::Text(t)) => vec![encode_one(&replica, t, req.max_tokens).await?],
        Some(Prompt::TextBatch(texts)) => {
            if texts.len() > super::config::MAX_SEQUENCES_PER_REQUEST {
                return Err(ApiError::bad_request("Too many prompts.").with_param("prompt"));
            }
            let mut out = Vec::with_capacity(texts.len());
            for t in texts {
                out.push(encode_one(&replica, t, req.max_tokens).await?);
            }
            out
        }
    };
    let id = format!("cmpl-{:032x}", rand::random::<u128>());
    let mut out = Vec::with_capacity(prompts.len());
    for (i, ids) in prompts.into_iter().enumerate() {
        let sampling = sampling(
            &replica,
            ids.len(),
            req.sampling.n,
            req.max_tokens,
            req.seed,
            req.ignore_eos,
            req.logprobs,
        )?;
        out.push(RenderedPrompt {
            request_id: format!("{id}-{i}"),
            token_ids: ids,
            sampling_params: sampling,
            model: model.name.clone(),
            stream: req.stream.unwrap_or(false),
        });
    }
    Ok(Json(out))
}

async fn encode_one(
    replica: &Replica,
    text: String,
    max_tokens: Option<i64>,
) -> Result<Vec<u32>, ApiError> {
    let tokenizer = &replica.config.tokenizer;
    let max_len = replica.config.engine.max_model_len;
    prompt::check_length(tokenizer, max_len, text.len(), max_tokens, "prompt")?;
    prompt::encode(tokenizer, text, true, "prompt").await
}

/// `POST /v1/chat/completions/render`: the conversation through the chat template.
pub async fn render_chat(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Json<RenderedPrompt>, ApiError> {
    let model = replica.resolve(req.model.as_deref())?;
    let tokenizer = &replica.config.tokenizer;
    let max_len = replica.config.engine.max_model_len;
    let text = chat_prompt_text(req.messages)?;
    let max_tokens = req.max_completion_tokens.or(req.max_tokens);
    prompt::check_length(tokenizer, max_len, text.len(), max_tokens, "messages")?;
    let ids = prompt::encode(tokenizer, text, false, "messages").await?;
    let sampling = sampling(
        &replica,
        ids.len(),
        req.sampling.n,
        max_tokens,
        req.seed,
        req.ignore_eos,
        req.top_logprobs,
    )?;
    Ok(Json(RenderedPrompt {
        request_id: format!("chatcmpl-{:032x}", rand::random::<u128>()),
        token_ids: ids,
        sampling_params: sampling,
        model: model.name,
        stream: req.stream.unwrap_or(false),
    }))
}

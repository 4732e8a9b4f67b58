//! `POST /v1/embeddings` for a pooling model (`--runner pooling`, `--convert embed`):
//! one unit-length vector per input, `--embedding-dimensions` long, seeded by the
//! input's token ids (the same input always gets the same vector), in OpenAI's shape
//! with `usage.prompt_tokens`.
//!
//! Vectors are computed here, not by the engine: a pooling model runs prefill only,
//! and the engine models generation. Inputs are tokenized as the generation
//! endpoints tokenize prompts, and bounded the same way.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use xxhash_rust::xxh64::xxh64;

use super::error::{ApiError, ApiJson};
use super::prompt;
use super::replica::{Replica, unix_secs};
use crate::api::openai::{Prompt, Usage};
use crate::api::vllm::{EmbeddingData, EmbeddingRequest, EmbeddingResponse};

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(replica): State<Arc<Replica>>,
    ApiJson(req): ApiJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    let model = replica.resolve(req.model.as_deref())?;
    if req.dimensions.is_some() {
        return Err(ApiError::bad_request(format!(
            "Model \"{}\" does not support matryoshka representation, changing output \
             dimensions will lead to poor results.",
            model.name
        ))
        .with_param("dimensions"));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format `{other}` is not supported; use `float` or `base64`."
            ))
            .with_param("encoding_format"));
        }
    };
    let tokenizer = &replica.config.tokenizer;
    let max_len = replica.config.engine.max_model_len;
    let texts = match req.input {
        None => return Err(ApiError::bad_request("`input` is required.").with_param("input")),
        Some(Prompt::Tokens(ids)) => return finish(&replica, model.name, vec![ids], base64),
        Some(Prompt::TokenBatch(lists)) => return finish(&replica, model.name, lists, base64),
        Some(Prompt::Text(t)) => vec![t],
        Some(Prompt::TextBatch(ts)) => ts,
    };
    if texts.len() > super::config::MAX_SEQUENCES_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "At most {} inputs per request.",
            super::config::MAX_SEQUENCES_PER_REQUEST
        ))
        .with_param("input"));
    }
    let mut inputs = Vec::with_capacity(texts.len());
    for text in texts {
        // The completion bound (at least one output token) is one token stricter
        // than an embedding needs, which is harmless for a length-only refusal.
        prompt::check_length(
            tokenizer,
            max_len.saturating_add(1),
            text.len(),
            None,
            "input",
        )?;
        inputs.push(prompt::encode(tokenizer, text, true, "input").await?);
    }
    finish(&replica, model.name, inputs, base64)
}

/// The response for tokenized `inputs`.
fn finish(
    replica: &Replica,
    model: String,
    inputs: Vec<Vec<u32>>,
    base64: bool,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    let max_len = replica.config.engine.max_model_len;
    if inputs.len() > super::config::MAX_SEQUENCES_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "At most {} inputs per request.",
            super::config::MAX_SEQUENCES_PER_REQUEST
        ))
        .with_param("input"));
    }
    let dims = replica.config.embedding_dimensions;
    let mut data = Vec::with_capacity(inputs.len());
    let mut prompt_tokens = 0u32;
    for (i, ids) in inputs.into_iter().enumerate() {
        if ids.is_empty() {
            return Err(ApiError::bad_request("The input cannot be empty.").with_param("input"));
        }
        if ids.len() > max_len {
            return Err(ApiError::bad_request(format!(
                "This model's maximum context length is {max_len} tokens. However, you \
                 requested {} tokens in the input for embedding generation. Please reduce the \
                 length of the input.",
                ids.len()
            ))
            .with_param("input"));
        }
        prompt_tokens = prompt_tokens.saturating_add(u32::try_from(ids.len()).unwrap_or(u32::MAX));
        let vector = vector(&ids, dims);
        let embedding = if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            Value::String(encode_base64(&bytes))
        } else {
            Value::from(vector)
        };
        data.push(EmbeddingData {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            object: "embedding".into(),
            embedding,
        });
    }
    Ok(Json(EmbeddingResponse {
        id: format!("embd-{:032x}", rand::random::<u128>()),
        object: "list".into(),
        created: unix_secs(),
        model,
        data,
        usage: Usage {
            prompt_tokens,
            completion_tokens: 0,
            total_tokens: prompt_tokens,
            prompt_tokens_details: None,
        },
    }))
}

/// A unit vector of `dims` floats seeded by `ids`.
fn vector(ids: &[u32], dims: usize) -> Vec<f32> {
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    let mut rng = StdRng::seed_from_u64(xxh64(&bytes, 0xe5be));
    let raw: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    raw.into_iter().map(|x| x / norm).collect()
}

/// Standard base64 with padding.
fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

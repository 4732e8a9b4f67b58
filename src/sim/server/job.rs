//! What the two generation endpoints share once their prompts are tokenized: the
//! checks against the context window, the choices (`n` per prompt, each its own
//! sequence in the engine), and each sequence's output plan — seeded text, or JSON
//! for `response_format` and tool calls.
//!
//! Every check answers with vLLM's status and message; none may panic on client
//! input. Nothing here touches the engine.

use serde_json::Value;

use super::choice::{ChoiceSpec, Output};
use super::config::{MAX_LOGPROBS, MAX_SEQUENCES_PER_REQUEST};
use super::error::ApiError;
use super::replica::{Replica, Resolved};
use super::structured;
use crate::sim::engine::NewRequest;
use crate::sim::metrics::FinishReason;
use crate::sim::tokens::Tokenizer;

/// How the output is shaped.
#[derive(Clone, Debug)]
pub enum Shape {
    /// Seeded words, or the prompt echoed (`--mode`).
    Free,
    /// JSON text; shaped by the schema when there is one.
    Json(Option<Value>),
    /// A call of tool `name` with arguments shaped by `parameters`.
    Tool {
        name: String,
        parameters: Option<Value>,
        finish_as_tool_calls: bool,
        /// vLLM leaves an auto tool call's `content` null, a forced one's empty.
        content_null: bool,
    },
}

/// A tokenized request.
pub struct Job {
    /// One or more prompts (a completion's list); every one gets `n` choices.
    pub prompts: Vec<Vec<u32>>,
    pub n: Option<i64>,
    pub max_tokens: Option<i64>,
    /// The field `max_tokens` came from, for error messages.
    pub max_tokens_param: &'static str,
    /// The field the prompt came from, for error messages.
    pub prompt_param: &'static str,
    pub ignore_eos: bool,
    pub seed: Option<i64>,
    pub logprobs: Option<u32>,
    pub shape: Shape,
}

/// `n`, checked as vLLM checks it, with the cap on sequences per request.
fn choices_per_prompt(n: Option<i64>, prompts: usize) -> Result<usize, ApiError> {
    let n = n.unwrap_or(1);
    if n < 1 {
        return Err(
            ApiError::bad_request(format!("n must be at least 1, got {n}.")).with_param("n"),
        );
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n.saturating_mul(prompts) > MAX_SEQUENCES_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "A request may ask for at most {MAX_SEQUENCES_PER_REQUEST} sequences (prompts × n); \
             this one asks for {prompts} × {n}."
        ))
        .with_param("n"));
    }
    Ok(n)
}

/// vLLM's check of `logprobs` / `top_logprobs` against `max_logprobs`.
pub fn check_logprobs(requested: Option<u32>, param: &'static str) -> Result<(), ApiError> {
    match requested {
        Some(k) if k > MAX_LOGPROBS => Err(ApiError::bad_request(format!(
            "Requested sample logprobs of {k}, which is greater than max allowed: {MAX_LOGPROBS}"
        ))
        .with_param(param)),
        _ => Ok(()),
    }
}

/// Validates a job and plans every choice. Returns them in choice order (prompt by
/// prompt, `n` each) with the model name to echo.
pub fn prepare(
    replica: &Replica,
    job: Job,
    model: Resolved,
) -> Result<(Vec<(ChoiceSpec, NewRequest)>, String), ApiError> {
    let tokenizer = &replica.config.tokenizer;
    let max_len = replica.config.engine.max_model_len;
    let n = choices_per_prompt(job.n, job.prompts.len())?;
    if job.prompts.is_empty() {
        return Err(
            ApiError::bad_request("The prompt cannot be empty.").with_param(job.prompt_param)
        );
    }
    let vocab = tokenizer.vocab_size();
    let mut budgets = Vec::with_capacity(job.prompts.len());
    for prompt in &job.prompts {
        let prompt_len = prompt.len();
        if prompt_len == 0 {
            return Err(
                ApiError::bad_request("The prompt cannot be empty.").with_param(job.prompt_param)
            );
        }
        if let Some(&id) = prompt.iter().max()
            && id as usize >= vocab
        {
            return Err(
                ApiError::bad_request(format!("Token id {id} is out of vocabulary"))
                    .with_param(job.prompt_param),
            );
        }
        budgets.push(max_tokens_for(&job, prompt_len, max_len)?);
    }
    if let Some(e) = replica.roll_failure() {
        return Err(e);
    }
    let words: Vec<String> = match job.shape {
        Shape::Free => Vec::new(),
        _ => tokenizer
            .words()
            .iter()
            .map(|&id| tokenizer.token_text(id))
            .collect(),
    };
    let mut out = Vec::with_capacity(job.prompts.len() * n);
    for (p, (prompt, max_tokens)) in job.prompts.into_iter().zip(budgets).enumerate() {
        for j in 0..n {
            let id = replica.next_request_id();
            let seed = match job.seed {
                // The bits of the client's seed, whatever its sign; the first
                // sequence keeps it as it is, so n = 1 outputs do not change.
                Some(s) if p == 0 && j == 0 => s as u64,
                Some(s) => splitmix((s as u64) ^ splitmix((p * n + j) as u64)),
                // Distinct per request, reproducible per replica run.
                None => splitmix(replica.config.engine.seed ^ splitmix(id)),
            };
            let (tokens, finish_reason) = plan(
                tokenizer,
                replica,
                &job.shape,
                &words,
                seed,
                &prompt,
                max_tokens,
                job.ignore_eos,
            );
            let output = match &job.shape {
                Shape::Tool {
                    name,
                    finish_as_tool_calls,
                    content_null,
                    ..
                } => Output::ToolCall {
                    id: format!("chatcmpl-tool-{:032x}", rand::random::<u128>()),
                    name: name.clone(),
                    finish_as_tool_calls: *finish_as_tool_calls,
                    content_null: *content_null,
                },
                _ => Output::Text,
            };
            let spec = ChoiceSpec {
                index: u32::try_from(p * n + j).unwrap_or(u32::MAX),
                counts_prompt: j == 0,
                logprobs: job.logprobs,
                seed,
                output,
            };
            let request = NewRequest {
                id,
                prompt: prompt.clone(),
                output: tokens,
                finish_reason,
                lora: model.lora.clone(),
            };
            out.push((spec, request));
        }
    }
    Ok((out, model.name))
}

/// The output budget of one prompt: `max_tokens`, or what the window leaves.
fn max_tokens_for(job: &Job, prompt_len: usize, max_len: usize) -> Result<usize, ApiError> {
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
    Ok(max_tokens)
}

/// One sequence's output tokens and why it ends.
#[allow(clippy::too_many_arguments)] // the plan's inputs, each used once
fn plan(
    tokenizer: &Tokenizer,
    replica: &Replica,
    shape: &Shape,
    words: &[String],
    seed: u64,
    prompt: &[u32],
    max_tokens: usize,
    ignore_eos: bool,
) -> (Vec<u32>, FinishReason) {
    let schema = match shape {
        Shape::Free => {
            let plan =
                tokenizer.plan_output(replica.config.mode, seed, prompt, max_tokens, ignore_eos);
            return (plan.tokens, plan.finish_reason);
        }
        Shape::Json(schema) => schema.as_ref(),
        Shape::Tool { parameters, .. } => parameters.as_ref(),
    };
    // As generated, then at its smallest; past max_tokens still, it is cut there.
    let mut tokens = Vec::new();
    for small in [false, true] {
        tokens = tokenizer.encode(&structured::generate(schema, seed, words, small));
        if tokens.len() <= max_tokens {
            break;
        }
    }
    if tokens.is_empty() {
        // A tokenizer that cannot encode JSON punctuation: one word, not nothing.
        tokens.push(tokenizer.words()[0]);
    }
    if tokens.len() > max_tokens {
        tokens.truncate(max_tokens.max(1));
        return (tokens, FinishReason::Length);
    }
    (tokens, FinishReason::Stop)
}

/// SplitMix64's finaliser: spreads consecutive ids over the whole seed space.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

//! A plan's prompts counted again with the pool's own tokenizer (`pool.tokenizer`,
//! `igw bench --tokenizer`).
//!
//! Workloads are drawn and sized with the built-in `cl100k_base` (its single-token
//! words make synthetic lengths exact without encoding anything); when the pool
//! serves a model with a tokenizer of its own, every request's `prompt_tokens` is
//! then replaced by the ids that tokenizer gives, exactly as the simulator encodes
//! the same body: a completions prompt with the tokenizer's special tokens (a BOS),
//! chat messages through the chat template without them (vLLM's defaults). The
//! report's input lengths, the virtual engine's prefix cache and the live replicas
//! then all count the tokens a client holding that tokenizer counts.

use std::collections::HashMap;
use std::sync::Arc;

use super::plan::StagePlan;
use super::workload::{PromptText, WorkloadError, WorkloadRequest};
use crate::sim::tokens::{Tokenizer, map_in_threads};

/// Fewest distinct prompts per thread worth a thread of its own.
const MIN_PER_THREAD: usize = 64;

/// The ids `tokenizer` gives `request`'s prompt as the simulator encodes it; `None`
/// when the tokenizer cannot encode it.
pub fn prompt_ids(tokenizer: &Tokenizer, prompt: &PromptText) -> Option<Vec<u32>> {
    match prompt {
        PromptText::Text(text) => tokenizer.try_encode(text, true),
        PromptText::Chat(_) => tokenizer.try_encode(&prompt.flatten(), false),
    }
}

/// Replaces every request's `prompt_tokens` in `plans` with `tokenizer`'s ids; the
/// built-in tokenizer leaves the plan as it is. A request repeated across the plan
/// (one shared `Arc`) is encoded once. Fails, naming the prompt, when the tokenizer
/// cannot encode one (a word-level vocabulary without an unknown token).
pub fn retokenize(
    plans: &mut [StagePlan],
    tokenizer: &Tokenizer,
    threads: usize,
) -> Result<(), WorkloadError> {
    if tokenizer.is_builtin() {
        return Ok(());
    }
    let mut distinct: Vec<Arc<WorkloadRequest>> = Vec::new();
    let mut index: HashMap<*const WorkloadRequest, usize> = HashMap::new();
    for p in plans.iter().flat_map(|p| &p.requests) {
        index.entry(Arc::as_ptr(&p.request)).or_insert_with(|| {
            distinct.push(p.request.clone());
            distinct.len() - 1
        });
    }
    let encoded = encode_all(&distinct, tokenizer, threads);
    let mut fresh = Vec::with_capacity(distinct.len());
    for (request, ids) in distinct.iter().zip(encoded) {
        let Some(ids) = ids else {
            return Err(WorkloadError::Invalid(format!(
                "{} cannot encode the prompt {:?}",
                tokenizer.describe(),
                preview(&request.prompt.flatten())
            )));
        };
        let mut request = WorkloadRequest::clone(request);
        request.prompt_tokens = ids;
        fresh.push(Arc::new(request));
    }
    for p in plans.iter_mut().flat_map(|p| &mut p.requests) {
        p.request = fresh[index[&Arc::as_ptr(&p.request)]].clone();
    }
    Ok(())
}

/// [`prompt_ids`] of each request, in order, on up to `threads` threads (the
/// tokenizers library's encoder is shared; it is `Sync`).
fn encode_all(
    requests: &[Arc<WorkloadRequest>],
    tokenizer: &Tokenizer,
    threads: usize,
) -> Vec<Option<Vec<u32>>> {
    map_in_threads(
        requests,
        threads,
        MIN_PER_THREAD,
        |_| (),
        |(), r| prompt_ids(tokenizer, &r.prompt),
    )
}

/// The first 60 characters of `text`, for an error message.
fn preview(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

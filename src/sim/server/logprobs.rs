//! Seeded log probabilities for generated tokens, in vLLM's two shapes: the
//! completions API's `{tokens, token_logprobs, top_logprobs, text_offset}` and the
//! chat API's `{content: [{token, logprob, bytes, top_logprobs}]}`.
//!
//! The simulated model is greedy in what it reports: the sampled token is the most
//! likely one, so it heads every top list, and the list runs strictly downwards.
//! Every value is finite and at most 0 (natural log). Values depend only on the
//! choice's seed and the position, so a seed reproduces them, streamed or not.
//! Nothing here does I/O or panics.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};

use crate::sim::tokens::Tokenizer;

/// One position's log probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The sampled token and its log probability.
    pub token: u32,
    pub logprob: f64,
    /// The `top` most likely tokens, the sampled one first, distinct by text.
    pub top: Vec<(u32, f64)>,
}

/// The log probabilities of `token` at output `position` of the choice seeded by
/// `seed`, with `top` alternatives (the sampled token included).
pub fn sample(
    tokenizer: &Tokenizer,
    seed: u64,
    position: u32,
    token: u32,
    top: u32,
) -> TokenLogprob {
    let mut rng =
        StdRng::seed_from_u64(seed ^ (u64::from(position) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Mostly confident, sometimes not: -1.5 < logprob <= 0. Adding 0.0 turns -0.0
    // into 0.0, which JSON clients print more kindly.
    let u: f64 = rng.random();
    let logprob = -(u * u * 1.5) + 0.0;
    let mut list = Vec::with_capacity(top as usize);
    let mut texts: Vec<String> = Vec::with_capacity(top as usize);
    if top > 0 {
        list.push((token, logprob));
        texts.push(tokenizer.token_text(token));
    }
    let words = tokenizer.words();
    let mut last = logprob;
    // Alternatives from the output vocabulary, then any id, skipping repeated texts
    // (the completions shape keys them by text). Bounded: a few tries per slot.
    let mut tries = 0usize;
    let limit = (top as usize) * 8 + 64;
    while list.len() < top as usize && tries < limit {
        tries += 1;
        let id = if tries <= limit / 2 && !words.is_empty() {
            words[rng.random_range(0..words.len())]
        } else {
            rng.random_range(0..tokenizer.vocab_size().max(1) as u32)
        };
        let text = tokenizer.token_text(id);
        if text.is_empty() || texts.contains(&text) {
            continue;
        }
        last -= rng.random_range(0.05..1.5);
        list.push((id, last));
        texts.push(text);
    }
    TokenLogprob {
        token,
        logprob,
        top: list,
    }
}

/// The completions API's `logprobs` object for `entries`, whose first token starts
/// at character `offset` of the choice's text.
pub fn completion_object(
    tokenizer: &Tokenizer,
    entries: &[TokenLogprob],
    mut offset: usize,
) -> Value {
    let mut tokens = Vec::with_capacity(entries.len());
    let mut token_logprobs = Vec::with_capacity(entries.len());
    let mut top_logprobs = Vec::with_capacity(entries.len());
    let mut text_offset = Vec::with_capacity(entries.len());
    for e in entries {
        let text = tokenizer.token_text(e.token);
        text_offset.push(offset);
        offset += text.chars().count();
        let mut top = Map::new();
        for &(id, lp) in &e.top {
            top.insert(tokenizer.token_text(id), json!(lp));
        }
        tokens.push(text);
        token_logprobs.push(e.logprob);
        top_logprobs.push(Value::Object(top));
    }
    json!({
        "text_offset": text_offset,
        "token_logprobs": token_logprobs,
        "tokens": tokens,
        "top_logprobs": top_logprobs,
    })
}

/// The chat API's `logprobs` object for `entries`.
pub fn chat_object(tokenizer: &Tokenizer, entries: &[TokenLogprob]) -> Value {
    let item = |id: u32, lp: f64| {
        let text = tokenizer.token_text(id);
        let bytes: Vec<u8> = text.as_bytes().to_vec();
        (text, lp, bytes)
    };
    let content: Vec<Value> = entries
        .iter()
        .map(|e| {
            let (token, logprob, bytes) = item(e.token, e.logprob);
            let top: Vec<Value> = e
                .top
                .iter()
                .map(|&(id, lp)| {
                    let (token, logprob, bytes) = item(id, lp);
                    json!({"token": token, "logprob": logprob, "bytes": bytes})
                })
                .collect();
            json!({"token": token, "logprob": logprob, "bytes": bytes, "top_logprobs": top})
        })
        .collect();
    json!({ "content": content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_distinct_and_non_positive() {
        let t = Tokenizer::builtin();
        for top in [0, 1, 5, 20] {
            for pos in 0..50 {
                let e = sample(&t, 7, pos, t.words()[pos as usize % 10], top);
                assert_eq!(e.top.len(), top as usize);
                assert!(e.logprob <= 0.0 && e.logprob.is_finite());
                assert!(e.top.windows(2).all(|w| w[0].1 > w[1].1));
                if top > 0 {
                    assert_eq!(e.top[0], (e.token, e.logprob));
                }
                let texts: std::collections::HashSet<String> =
                    e.top.iter().map(|&(id, _)| t.token_text(id)).collect();
                assert_eq!(texts.len(), e.top.len());
            }
        }
        assert_eq!(sample(&t, 7, 3, 11, 5), sample(&t, 7, 3, 11, 5));
    }
}

//! The generator of the bundled ShareGPT sample, `testdata/sharegpt/sample.json`.
//!
//! The real file is 600+ MB and may not be redistributed here, so tests and demos use a
//! synthetic file in exactly its format whose lengths, after vLLM's filter, look like
//! the real ones: ≈230 prompt and ≈203 output tokens on average with Llama-3.1's
//! tokenizer (sim-facts §5). Lengths are drawn from log-normal distributions (long
//! right tails, like human prompts and model replies); a share of prompts is longer
//! than the filter's 1,024-token cap and some exchanges are shorter than 4 tokens, so
//! the filter has real work to do (it keeps 393 of the 450 committed conversations, with
//! means of 239.6 prompt and 199.6 output `cl100k_base` tokens). A quarter of the
//! conversations go on past the first exchange, for multi-turn sessions, and a few have
//! a single turn. At this size the means move by ±5% from seed to seed; the committed
//! seed is one whose means sit near the published ones.
//!
//! Text is lowercase English words and punctuation (see `workload::text`), so token
//! counts under `cl100k_base` are close to the drawn lengths. Output is one entry per
//! line and depends only on `(seed, n)`: `cargo xtask gen-sharegpt` rewrites the file
//! and a test checks that the committed file is byte-identical to a fresh run.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use super::super::text::{log_normal_length, range_inclusive, words_text};
use super::Turn;

/// Where the sample lives, relative to the workspace root.
pub const SAMPLE_PATH: &str = "testdata/sharegpt/sample.json";
/// The seed and size the committed sample was generated with.
pub const SAMPLE_SEED: u64 = 7;
pub const SAMPLE_CONVERSATIONS: usize = 450;

/// Log-normal length, tokens: `median` and σ of the logarithm. The first prompt's
/// tail reaches past the 1,024-token cap (≈7% of draws) as ShareGPT's does.
const FIRST_PROMPT: (f64, f64) = (170.0, 1.25);
/// First reply: the output mean after the filter lands near 203 tokens.
const FIRST_REPLY: (f64, f64) = (138.0, 0.85);
/// Follow-up questions are shorter than openers; replies stay as long.
const FOLLOW_UP: (f64, f64) = (40.0, 1.0);
const REPLY: (f64, f64) = (120.0, 0.8);

/// Conversations with one turn, and with more than one exchange, per thousand.
const SINGLE_TURN_PER_MILLE: u32 = 30;
const MULTI_TURN_PER_MILLE: u32 = 250;
/// Longest follow-up conversation, in exchanges (user + assistant pairs).
const MAX_EXCHANGES: usize = 4;

#[derive(Serialize)]
struct Entry<'a> {
    id: String,
    conversations: &'a [Turn],
}

/// 8,192 tokens at most: far beyond anything the filter keeps.
fn length(rng: &mut StdRng, shape: (f64, f64)) -> usize {
    log_normal_length(rng, shape, 1, 8192)
}

/// Words of `n` tokens, without the leading space and with a paragraph break now and
/// then, so values read like text.
fn value(rng: &mut StdRng, n: usize) -> String {
    let mut text = words_text(rng, n).trim_start().to_string();
    if n > 80 && rng.random_ratio(1, 2) {
        // One paragraph break, after a full stop if there is one past the first third.
        if let Some(i) = text[text.len() / 3..]
            .find(". ")
            .map(|i| i + text.len() / 3)
        {
            text.replace_range(i + 1..i + 2, "\n\n");
        }
    }
    text
}

fn turn(from: &str, value: String) -> Turn {
    Turn {
        from: from.to_string(),
        value,
    }
}

/// `n` conversations in ShareGPT's format: a JSON array, one entry per line.
pub fn generate_sample(seed: u64, n: usize) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::from("[\n");
    for i in 0..n {
        let p = length(&mut rng, FIRST_PROMPT);
        let mut turns = vec![turn("human", value(&mut rng, p))];
        let kind = rng.random_range(0..1000);
        if kind >= SINGLE_TURN_PER_MILLE {
            let r = length(&mut rng, FIRST_REPLY);
            turns.push(turn("gpt", value(&mut rng, r)));
        }
        if kind >= 1000 - MULTI_TURN_PER_MILLE {
            let exchanges = range_inclusive(&mut rng, 2, MAX_EXCHANGES);
            for _ in 1..exchanges {
                let q = length(&mut rng, FOLLOW_UP);
                turns.push(turn("human", value(&mut rng, q)));
                let r = length(&mut rng, REPLY);
                turns.push(turn("gpt", value(&mut rng, r)));
            }
        }
        let entry = Entry {
            id: format!("sample-{i:05}"),
            conversations: &turns,
        };
        // Serialising plain strings cannot fail.
        out.push_str(&serde_json::to_string(&entry).unwrap_or_default());
        out.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    out.push_str("]\n");
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{filter_stats, load, parse};
    use super::*;

    #[test]
    fn generation_is_deterministic_and_parses() {
        let a = generate_sample(3, 20);
        assert_eq!(a, generate_sample(3, 20));
        assert_ne!(a, generate_sample(4, 20));
        let data = parse(Path::new("generated"), a.as_bytes()).unwrap();
        assert_eq!(data.len(), 20);
        assert_eq!(data[7].id, "sample-00007");
        assert_eq!(
            parse(Path::new("g"), generate_sample(1, 0).as_bytes()).unwrap(),
            vec![]
        );
    }

    /// The committed file is what the generator writes, and after vLLM's filter its
    /// lengths are within 10% of the published ≈230 / ≈203 tokens (sim-facts §5).
    #[test]
    fn the_committed_sample_is_fresh_and_looks_like_sharegpt() {
        let committed = std::fs::read_to_string(SAMPLE_PATH).unwrap();
        assert!(
            committed == generate_sample(SAMPLE_SEED, SAMPLE_CONVERSATIONS),
            "{SAMPLE_PATH} is stale: run `cargo xtask gen-sharegpt`"
        );
        assert!(committed.len() < 2_000_000, "{} bytes", committed.len());
        let data = load(Path::new(SAMPLE_PATH)).unwrap();
        let s = filter_stats(&data);
        assert_eq!(s.entries, SAMPLE_CONVERSATIONS);
        let kept = s.kept as f64 / s.entries as f64;
        assert!((0.75..=0.92).contains(&kept), "{s:?}");
        assert!((207.0..=253.0).contains(&s.mean_prompt_len), "{s:?}");
        assert!((183.0..=223.0).contains(&s.mean_output_len), "{s:?}");
        let multi = data.iter().filter(|c| c.conversations.len() > 2).count();
        assert!(multi * 5 >= data.len(), "{multi} multi-turn conversations");
    }
}

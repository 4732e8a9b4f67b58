//! What a request generates, decided before it enters the engine: the output's
//! length (seeded, ShareGPT-like) and its token ids (common words, or the prompt
//! echoed). Nothing here reads a clock or does I/O.

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use xxhash_rust::xxh64::Xxh64;

use super::encode;
use crate::sim::metrics::FinishReason;

/// What the simulated model writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputMode {
    /// Seeded picks of common English words.
    #[default]
    Random,
    /// The prompt's own tokens, repeated.
    Echo,
}

/// The output decided for one request before it enters the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputPlan {
    /// Token ids to generate, in order; at least one.
    pub tokens: Vec<u32>,
    /// `Length` if the output was cut at `max_tokens`, else `Stop`.
    pub finish_reason: FinishReason,
}

/// Median of the natural output length, tokens. With [`OUTPUT_LEN_SIGMA`] the
/// unclamped mean is ≈247 tokens (median·e^(σ²/2)); ShareGPT completions average ≈200
/// tokens (sim-facts §5), and clamping at `max_tokens` pulls the served mean down.
pub const OUTPUT_LEN_MEDIAN: f64 = 150.0;

/// Log-normal shape of the natural output length (σ of its logarithm).
pub const OUTPUT_LEN_SIGMA: f64 = 1.0;

/// Decides what a request generates (through
/// [`Tokenizer::plan_output`](super::Tokenizer::plan_output), which gives `words`).
///
/// - `max_tokens` is at least 1 (a 0 is treated as 1) and bounded by the caller (the
///   context length); the plan has 1..=`max_tokens` tokens.
/// - `ignore_eos`: exactly `max_tokens` tokens, finish reason `Length`.
/// - Otherwise the natural length is drawn from a log-normal distribution (median
///   [`OUTPUT_LEN_MEDIAN`], σ [`OUTPUT_LEN_SIGMA`], rounded, at least 1), seeded by
///   xxh64 of `seed` and the prompt ids, so the same prompt under the same seed always
///   gets the same output, whatever order requests arrive in. A draw of at least
///   `max_tokens` gives `max_tokens` tokens and `Length`; a shorter one gives `Stop`.
/// - [`OutputMode::Random`]: each token is a seeded pick from `words`, a tokenizer's
///   single-token common English words (and a little punctuation; never empty), so
///   the text reads like words. [`OutputMode::Echo`]: the prompt's ids in order, cycled when the output
///   is longer than the prompt; an empty prompt falls back to `Random`.
pub(super) fn plan_output(
    words: &[u32],
    mode: OutputMode,
    seed: u64,
    prompt: &[u32],
    max_tokens: usize,
    ignore_eos: bool,
) -> OutputPlan {
    let max_tokens = max_tokens.max(1);
    let mut rng = StdRng::seed_from_u64(request_seed(seed, prompt));
    let natural = natural_output_len(&mut rng);
    let (len, finish_reason) = if ignore_eos || natural >= max_tokens {
        (max_tokens, FinishReason::Length)
    } else {
        (natural, FinishReason::Stop)
    };
    let tokens = match mode {
        OutputMode::Echo if !prompt.is_empty() => {
            prompt.iter().copied().cycle().take(len).collect()
        }
        OutputMode::Echo | OutputMode::Random if words.is_empty() => vec![0; len],
        OutputMode::Echo | OutputMode::Random => (0..len)
            .map(|_| words[rng.random_range(0..words.len())])
            .collect(),
    };
    OutputPlan {
        tokens,
        finish_reason,
    }
}

/// Per-request seed: xxh64 over the prompt ids (little-endian), keyed by `seed`.
fn request_seed(seed: u64, prompt: &[u32]) -> u64 {
    let mut h = Xxh64::new(seed);
    for chunk in prompt.chunks(64) {
        let mut buf = [0u8; 256];
        for (i, t) in chunk.iter().enumerate() {
            buf[i * 4..i * 4 + 4].copy_from_slice(&t.to_le_bytes());
        }
        h.update(&buf[..chunk.len() * 4]);
    }
    h.digest()
}

fn natural_output_len(rng: &mut StdRng) -> usize {
    let draw = match LogNormal::new(OUTPUT_LEN_MEDIAN.ln(), OUTPUT_LEN_SIGMA) {
        Ok(dist) => dist.sample(rng),
        // Unreachable with the constants above; fall back to the median.
        Err(_) => OUTPUT_LEN_MEDIAN,
    };
    // `as` saturates, so a huge draw becomes usize::MAX and is then cut at max_tokens.
    (draw.round() as usize).max(1)
}

/// Common English words; each, with a leading space, is one `cl100k_base` token (a unit
/// test checks this). The benchmark's filler text starts from the same list.
pub(crate) const WORDS: &str = "\
     the of and to a in is that for it as was with be by on not he this are or his \
     from at which but have an had they you were their one all we can her has there \
     been if more when will would who so no she other its may these what them than \
     some him time into only do out people could then first new also any my made \
     about two most such over our like me even many after your where those how did \
     between each must through years much because should well up before world while \
     work just way very being same make own good here under know still long year day \
     take great since last used number part life system might both place right state \
     found never small high model data water city think use back around three come \
     without another school every story house need given example general different \
     second power information important problem group order set point help home often \
     country question answer human language value result process simple light course \
     change always next local early together open form line field interest public \
     idea word case program free study family music";

/// Punctuation mixed into the random text, about one token in 35 (each listed thrice
/// among ~200 words).
const PUNCTUATION: &[&str] = &[",", ",", ",", ".", ".", "."];

/// The candidate texts: every word with its leading space, then the punctuation.
pub(super) fn word_texts() -> impl Iterator<Item = String> {
    WORDS
        .split_whitespace()
        .map(|w| format!(" {w}"))
        .chain(PUNCTUATION.iter().map(|p| p.to_string()))
}

/// The ids of [`word_texts`], built once. Entries that are not a single token are dropped
/// rather than trusted, so the list is never wrong even if the vocabulary changes.
pub(super) fn word_tokens() -> &'static [u32] {
    static IDS: OnceLock<Vec<u32>> = OnceLock::new();
    IDS.get_or_init(|| {
        let ids: Vec<u32> = word_texts()
            .filter_map(|w| match encode(&w).as_slice() {
                [id] => Some(*id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            // Keeps `random_range` non-empty whatever happens: " the" in cl100k_base.
            vec![279]
        } else {
            ids
        }
    })
}

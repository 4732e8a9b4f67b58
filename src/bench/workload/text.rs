//! Filler text made of real English words, with an exact token count.
//!
//! Synthetic, shared-prefix and session workloads, and the bundled ShareGPT sample, need
//! text whose `cl100k_base` token count is known in advance. Every word here, with its
//! leading space, is one token, and punctuation only ever follows a word, so BPE never
//! merges across pieces: `n` pieces encode to exactly `n` tokens. Pure: the caller owns
//! the seeded RNG.

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, RngExt};

use crate::sim::tokens;

/// Words beyond the simulator's list (`sim::tokens::WORDS`), for more varied text; each,
/// with a leading space, is one `cl100k_base` token (pieces that are not are dropped
/// when the list is built, and a test checks none are).
const MORE_WORDS: &str = "code write list file function error table server request user test design \
     market price business company book history science health game team product \
     service review plan project";

/// One in this many words is followed by punctuation (a comma or a full stop).
const PUNCTUATION_EVERY: u32 = 12;

/// The single-token words, with their leading space, built once.
fn words() -> &'static [String] {
    static WORDS_ONCE: OnceLock<Vec<String>> = OnceLock::new();
    WORDS_ONCE.get_or_init(|| {
        let mut list: Vec<String> = tokens::WORDS
            .split_whitespace()
            .chain(MORE_WORDS.split_whitespace())
            .map(|w| format!(" {w}"))
            .filter(|w| tokens::encode(w).len() == 1)
            .collect();
        list.dedup();
        if list.is_empty() {
            list.push(" the".to_string());
        }
        list
    })
}

/// Appends `n` pieces (`n` tokens) of seeded words and punctuation to `out`. The text
/// starts with a space, so it can follow any text that ends in a letter or punctuation
/// without merging into its last token.
pub(crate) fn push_words(rng: &mut StdRng, n: usize, out: &mut String) {
    push_pieces(rng, n, |piece, _| out.push_str(piece));
}

/// [`push_words`], also appending each piece's token id to `ids`: the ids of the text
/// without running the tokenizer over it (a piece is one token, and BPE never merges
/// across pieces). The same RNG state gives the same text as `push_words`.
pub(crate) fn push_words_with_ids(
    rng: &mut StdRng,
    n: usize,
    out: &mut String,
    ids: &mut Vec<u32>,
) {
    push_pieces(rng, n, |piece, id| {
        out.push_str(piece);
        ids.push(id);
    });
}

/// Draws `n` pieces, handing each (text, token id) to `emit`.
fn push_pieces(rng: &mut StdRng, n: usize, mut emit: impl FnMut(&str, u32)) {
    let words = words();
    let ids = word_ids();
    let mut after_word = false;
    for _ in 0..n {
        if after_word && rng.random_ratio(1, PUNCTUATION_EVERY) {
            let (piece, id) = if rng.random_bool(0.6) {
                (",", ids.comma)
            } else {
                (".", ids.full_stop)
            };
            emit(piece, id);
            after_word = false;
        } else {
            let k = rng.random_range(0..words.len());
            emit(&words[k], ids.words[k]);
            after_word = true;
        }
    }
}

/// The token id of every piece [`push_words`] may emit.
struct PieceIds {
    words: Vec<u32>,
    comma: u32,
    full_stop: u32,
}

fn word_ids() -> &'static PieceIds {
    static IDS_ONCE: OnceLock<PieceIds> = OnceLock::new();
    IDS_ONCE.get_or_init(|| {
        let one = |piece: &str| tokens::encode(piece).first().copied().unwrap_or(0);
        PieceIds {
            words: words().iter().map(|w| one(w)).collect(),
            comma: one(","),
            full_stop: one("."),
        }
    })
}

/// `n` tokens of seeded words (see [`push_words`]).
pub(crate) fn words_text(rng: &mut StdRng, n: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    push_words(rng, n, &mut out);
    out
}

/// A log-normal length in tokens, from its `median` and the σ of its logarithm,
/// rounded and clamped to `min..=max` (a σ that is not a valid σ gives the median).
pub(crate) fn log_normal_length(
    rng: &mut StdRng,
    (median, sigma): (f64, f64),
    min: usize,
    max: usize,
) -> usize {
    let draw = rand_distr::LogNormal::new(median.ln(), sigma)
        .map_or(median, |d| rand_distr::Distribution::sample(&d, rng));
    // `as` saturates.
    (draw.round() as usize).clamp(min, max)
}

/// A draw in `min..=max` that tolerates `min > max` by returning `min`.
pub(crate) fn range_inclusive(rng: &mut impl Rng, min: usize, max: usize) -> usize {
    if max <= min {
        min
    } else {
        rng.random_range(min..=max)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_word_is_one_token() {
        assert_eq!(
            words().len(),
            tokens::WORDS.split_whitespace().count() + MORE_WORDS.split_whitespace().count()
        );
        for w in words() {
            assert_eq!(tokens::encode(w).len(), 1, "{w:?}");
        }
    }

    #[test]
    fn the_ids_pushed_beside_the_text_are_its_tokens() {
        for seed in 0..20 {
            let (mut text, mut ids) = (String::new(), Vec::new());
            push_words_with_ids(&mut StdRng::seed_from_u64(seed), 500, &mut text, &mut ids);
            assert_eq!(ids, tokens::encode(&text), "seed {seed}");
            assert_eq!(text, words_text(&mut StdRng::seed_from_u64(seed), 500));
        }
    }

    #[test]
    fn n_pieces_encode_to_n_tokens() {
        for seed in 0..20 {
            for n in [0, 1, 5, 100, 1000] {
                let text = words_text(&mut StdRng::seed_from_u64(seed), n);
                assert_eq!(tokens::encode(&text).len(), n, "seed {seed}: {text:?}");
            }
        }
    }
}

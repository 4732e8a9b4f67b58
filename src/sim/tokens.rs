//! Text ↔ token ids for the simulator, and the plan of what a request will generate.
//!
//! Token ids are real BPE ids (OpenAI's `cl100k_base`, embedded in `tiktoken-rs`, no
//! download), so counts in `usage` look real and identical text prefixes give identical
//! token prefixes, which is what the engine's prefix cache hashes. The counts are GPT
//! tokenizer estimates, not any served model's exact counts.
//!
//! Nothing here does I/O or reads a clock, and nothing panics on any input: unknown ids
//! decode to nothing and invalid UTF-8 is replaced. The tokenizer is built once per
//! process (it takes a noticeable fraction of a second) and shared.

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use tiktoken_rs::CoreBPE;
use xxhash_rust::xxh64::Xxh64;

use super::metrics::FinishReason;

fn bpe() -> &'static CoreBPE {
    tiktoken_rs::cl100k_base_singleton()
}

/// Builds the shared vocabulary now (a few tens of ms in release builds), so the
/// first request does not pay for it. Servers call this before they accept traffic.
pub fn warm_up() {
    let _ = max_token_bytes();
}

/// The longest token of the vocabulary, bytes (128 for `cl100k_base`, a run of
/// spaces). Every token is at least one byte, so a text of `n` bytes encodes to
/// between `n.div_ceil(max_token_bytes())` and `n` tokens: a server can refuse a
/// text too long for its context window from its length alone, without encoding it.
pub fn max_token_bytes() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        let bpe = bpe();
        // Past every id of the vocabulary (100,256 ordinary, specials above them).
        (0..1u32 << 18)
            .filter_map(|id| bpe.decode_bytes(&[id]).ok())
            .map(|b| b.len())
            .max()
            .unwrap_or(1)
            .max(1)
    })
}

/// The fewest tokens [`encode`] can give for a text of `bytes` bytes.
pub fn min_tokens(bytes: usize) -> usize {
    bytes.div_ceil(max_token_bytes())
}

/// Ordinary encoding: special-token text such as `<|endoftext|>` is encoded as plain
/// text, so a client cannot inject control tokens.
pub fn encode(text: &str) -> Vec<u32> {
    bpe().encode_ordinary(text)
}

/// A tokenizer of one thread's own, for encoding many texts on several threads at
/// once: the shared one's regex caches are contended then (two threads on the shared
/// tokenizer were slower than one alone; each with its own, 1.6× faster on 2 cores).
/// Building one takes a few tens of ms. Encodes exactly as [`encode`].
pub struct OwnEncoder(Option<CoreBPE>);

impl OwnEncoder {
    pub fn new() -> OwnEncoder {
        // The vocabulary is embedded, so building cannot fail in practice; if it
        // did, the shared tokenizer still gives the same ids.
        OwnEncoder(tiktoken_rs::cl100k_base().ok())
    }

    /// One that encodes with the shared tokenizer: nothing to build, for one thread.
    pub fn shared() -> OwnEncoder {
        OwnEncoder(None)
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        match &self.0 {
            Some(bpe) => bpe.encode_ordinary(text),
            None => encode(text),
        }
    }
}

impl Default for OwnEncoder {
    fn default() -> OwnEncoder {
        OwnEncoder::new()
    }
}

/// `f` over `items`, in order, on up to `threads` threads (at least `min_per_thread`
/// items each), every thread with its own [`OwnEncoder`]: for tokenising many
/// independent texts. The result does not depend on the number of threads.
pub fn map_with_encoders<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    min_per_thread: usize,
    f: impl Fn(&OwnEncoder, &T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, (items.len() / min_per_thread.max(1)).max(1));
    if threads == 1 {
        let shared = OwnEncoder::shared();
        return items.iter().map(|item| f(&shared, item)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let own = OwnEncoder::new();
                    part.iter().map(|item| f(&own, item)).collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| match part.join() {
                Ok(done) => done,
                // Tokenising does not panic; if it ever did, the panic belongs to
                // the caller, not to a lost batch.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Text of a token sequence. Ids the vocabulary does not know are skipped; bytes that
/// are not valid UTF-8 become U+FFFD.
pub fn decode(tokens: &[u32]) -> String {
    let bpe = bpe();
    let mut bytes = Vec::with_capacity(tokens.len() * 4);
    for &t in tokens {
        // One id at a time so that an unknown id drops only itself.
        if let Ok(b) = bpe.decode_bytes(std::slice::from_ref(&t)) {
            bytes.extend_from_slice(&b);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The raw bytes of one token (possibly part of a multi-byte character); `None` for
/// an id the vocabulary does not know. Concatenating these for a sequence and replacing
/// invalid UTF-8 gives exactly [`decode`]'s text.
pub fn token_bytes(token: u32) -> Option<Vec<u8>> {
    bpe().decode_bytes(&[token]).ok()
}

/// Text of one token, for streaming one token per SSE chunk. An unknown id gives `""`;
/// a token that holds part of a multi-byte character gives U+FFFD.
pub fn token_text(token: u32) -> String {
    match bpe().decode_bytes(&[token]) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    }
}

/// One message of a chat conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatTurn<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

const OPEN: &str = "<|start|>";
const CLOSE: &str = "<|end|>\n";
const GENERATION_PROMPT: &str = "<|start|>assistant\n";

/// The text [`apply_chat_template`] puts before a turn's content: `<|start|>{role}\n`.
pub fn chat_turn_header(role: &str) -> String {
    format!("{OPEN}{role}\n")
}

/// Flattens a conversation into prompt text with one fixed template:
///
/// ```text
/// <|start|>{role}\n{content}<|end|>\n      (once per turn, in order)
/// <|start|>assistant\n                     (the generation prompt)
/// ```
///
/// Each turn's text depends only on that turn, so a conversation that resends its
/// history flattens to text that starts with the previous request's text, and (because
/// the previous text ends in a newline that BPE keeps as its own token) encodes to ids
/// that start with the previous request's ids. The one exception is an assistant reply
/// that itself starts with a newline: BPE then merges the two newlines.
pub fn apply_chat_template(turns: &[ChatTurn<'_>]) -> String {
    let len = turns
        .iter()
        .map(|t| OPEN.len() + t.role.len() + 1 + t.content.len() + CLOSE.len())
        .sum::<usize>()
        + GENERATION_PROMPT.len();
    let mut out = String::with_capacity(len);
    for t in turns {
        out.push_str(OPEN);
        out.push_str(t.role);
        out.push('\n');
        out.push_str(t.content);
        out.push_str(CLOSE);
    }
    out.push_str(GENERATION_PROMPT);
    out
}

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

/// Decides what a request generates.
///
/// - `max_tokens` is at least 1 (a 0 is treated as 1) and bounded by the caller (the
///   context length); the plan has 1..=`max_tokens` tokens.
/// - `ignore_eos`: exactly `max_tokens` tokens, finish reason `Length`.
/// - Otherwise the natural length is drawn from a log-normal distribution (median
///   [`OUTPUT_LEN_MEDIAN`], σ [`OUTPUT_LEN_SIGMA`], rounded, at least 1), seeded by
///   xxh64 of `seed` and the prompt ids, so the same prompt under the same seed always
///   gets the same output, whatever order requests arrive in. A draw of at least
///   `max_tokens` gives `max_tokens` tokens and `Length`; a shorter one gives `Stop`.
/// - [`OutputMode::Random`]: each token is a seeded pick from a fixed list of
///   single-token common English words (and a little punctuation), so the text reads
///   like words. [`OutputMode::Echo`]: the prompt's ids in order, cycled when the output
///   is longer than the prompt; an empty prompt falls back to `Random`.
pub fn plan_output(
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
        OutputMode::Echo | OutputMode::Random => {
            let words = word_tokens();
            (0..len)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect()
        }
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
fn word_texts() -> impl Iterator<Item = String> {
    WORDS
        .split_whitespace()
        .map(|w| format!(" {w}"))
        .chain(PUNCTUATION.iter().map(|p| p.to_string()))
}

/// The ids of [`word_texts`], built once. Entries that are not a single token are dropped
/// rather than trusted, so the list is never wrong even if the vocabulary changes.
fn word_tokens() -> &'static [u32] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        for text in [
            "Hello, world!",
            "The quick brown fox jumps over the lazy dog.\n\nÜnïcödé 日本語 🚀",
            "",
            "<|endoftext|> is plain text here",
        ] {
            assert_eq!(decode(&encode(text)), text);
        }
        assert!(encode("<|endoftext|>").len() > 1);
    }

    #[test]
    fn decode_never_panics_on_unknown_ids() {
        let hello = encode("hello");
        let mut ids = hello.clone();
        ids.push(u32::MAX);
        ids.push(4_000_000);
        assert_eq!(decode(&ids), "hello");
        assert_eq!(token_text(u32::MAX), "");
        assert_eq!(token_text(hello[0]), "hello");
    }

    #[test]
    fn token_text_concatenates_to_decode_for_ascii() {
        let ids = encode("Streaming one token at a time works.");
        let joined: String = ids.iter().map(|&t| token_text(t)).collect();
        assert_eq!(joined, "Streaming one token at a time works.");
    }

    #[test]
    fn shared_text_prefix_gives_shared_token_prefix() {
        let system = "You are a helpful assistant. Answer briefly and cite sources.\n";
        let a = encode(&format!("{system}What is the capital of France?"));
        let b = encode(&format!("{system}Explain continuous batching."));
        let head = encode(system);
        assert!(a.starts_with(&head));
        assert!(b.starts_with(&head));
    }

    #[test]
    fn chat_template_has_the_documented_shape() {
        let turns = [
            ChatTurn {
                role: "system",
                content: "Be brief.",
            },
            ChatTurn {
                role: "user",
                content: "Hi",
            },
        ];
        assert_eq!(
            apply_chat_template(&turns),
            "<|start|>system\nBe brief.<|end|>\n<|start|>user\nHi<|end|>\n<|start|>assistant\n"
        );
        assert_eq!(apply_chat_template(&[]), "<|start|>assistant\n");
    }

    #[test]
    fn resent_history_shares_a_token_prefix_with_the_previous_turn() {
        let reply = decode(&plan_output(OutputMode::Random, 7, &encode("Hi"), 30, true).tokens);
        let first = [
            ChatTurn {
                role: "system",
                content: "You are terse.",
            },
            ChatTurn {
                role: "user",
                content: "What is KV caching?",
            },
        ];
        let second = [
            first[0],
            first[1],
            ChatTurn {
                role: "assistant",
                content: &reply,
            },
            ChatTurn {
                role: "user",
                content: "And prefix caching?",
            },
        ];
        let (t1, t2) = (apply_chat_template(&first), apply_chat_template(&second));
        assert!(t2.starts_with(&t1));
        let (i1, i2) = (encode(&t1), encode(&t2));
        assert!(i2.starts_with(&i1), "{i1:?} is not a prefix of {i2:?}");
        // Adding the assistant's reply keeps the earlier flattening as a prefix.
        assert!(apply_chat_template(&second[..3]).starts_with(&apply_chat_template(&second[..2])));
    }

    #[test]
    fn no_text_has_fewer_tokens_than_its_bytes_allow() {
        assert_eq!(max_token_bytes(), 128);
        for text in [
            " ".repeat(128),
            " ".repeat(1000),
            "-".repeat(999),
            "a".repeat(5000),
            "word ".repeat(300),
        ] {
            let n = encode(&text).len();
            assert!(
                min_tokens(text.len()) <= n && n <= text.len(),
                "{n} for {text:?}"
            );
        }
    }

    #[test]
    fn every_word_is_one_token() {
        let texts: Vec<String> = word_texts().collect();
        for w in &texts {
            assert_eq!(encode(w).len(), 1, "{w:?} is not a single token");
        }
        assert!(texts.len() >= 200);
        assert_eq!(word_tokens().len(), texts.len());
        assert_eq!(encode(" the"), vec![279]);
    }

    fn prompt() -> Vec<u32> {
        encode("Summarise the history of the printing press in three paragraphs.")
    }

    #[test]
    fn plans_are_deterministic_per_seed_and_prompt() {
        let p = prompt();
        for mode in [OutputMode::Random, OutputMode::Echo] {
            let a = plan_output(mode, 42, &p, 4096, false);
            // Another request in between must not change anything.
            let _ = plan_output(mode, 42, &encode("something else"), 4096, false);
            assert_eq!(plan_output(mode, 42, &p, 4096, false), a);
        }
        let lens: Vec<usize> = (0..20)
            .map(|s| {
                plan_output(OutputMode::Random, s, &p, 100_000, false)
                    .tokens
                    .len()
            })
            .collect();
        assert!(
            lens.iter().any(|&l| l != lens[0]),
            "seed must matter: {lens:?}"
        );
    }

    #[test]
    fn lengths_stay_in_bounds_and_reasons_match() {
        let mut stops = 0;
        let mut lengths = 0;
        for seed in 0..500 {
            for max_tokens in [1, 2, 50, 150, 1000] {
                let plan = plan_output(OutputMode::Random, seed, &prompt(), max_tokens, false);
                let n = plan.tokens.len();
                assert!(
                    (1..=max_tokens).contains(&n),
                    "{n} tokens for max {max_tokens}"
                );
                match plan.finish_reason {
                    FinishReason::Length => {
                        assert_eq!(n, max_tokens);
                        lengths += 1;
                    }
                    FinishReason::Stop => {
                        assert!(n < max_tokens);
                        stops += 1;
                    }
                    FinishReason::Abort => panic!("a plan never aborts"),
                }
            }
        }
        assert!(stops > 0 && lengths > 0);
        let plan = plan_output(OutputMode::Random, 1, &prompt(), 0, false);
        assert_eq!(plan.tokens.len(), 1);
    }

    #[test]
    fn natural_lengths_look_like_sharegpt() {
        let mut lens: Vec<usize> = (0..2000)
            .map(|s| plan_output(OutputMode::Random, s, &prompt(), usize::MAX, false))
            .map(|p| p.tokens.len())
            .collect();
        lens.sort_unstable();
        let median = lens[lens.len() / 2];
        assert!((120..=180).contains(&median), "median {median}");
    }

    #[test]
    fn ignore_eos_gives_exactly_max_tokens() {
        for max_tokens in [1, 3, 700, 2000] {
            let plan = plan_output(OutputMode::Random, 9, &prompt(), max_tokens, true);
            assert_eq!(plan.tokens.len(), max_tokens);
            assert_eq!(plan.finish_reason, FinishReason::Length);
        }
    }

    #[test]
    fn echo_repeats_the_prompt_in_order() {
        let p = encode(" one two three");
        let plan = plan_output(OutputMode::Echo, 0, &p, 7, true);
        let expected: Vec<u32> = p.iter().copied().cycle().take(7).collect();
        assert_eq!(plan.tokens, expected);
        assert_eq!(decode(&plan.tokens), " one two three one two three one");
        let short = plan_output(OutputMode::Echo, 0, &p, 2, true);
        assert_eq!(short.tokens, p[..2]);
        let empty = plan_output(OutputMode::Echo, 0, &[], 5, true);
        assert_eq!(empty.tokens.len(), 5);
    }

    #[test]
    fn random_output_decodes_to_words() {
        let plan = plan_output(OutputMode::Random, 3, &prompt(), 40, true);
        let text = decode(&plan.tokens);
        assert!(text.split_whitespace().count() >= 20, "{text:?}");
        assert!(
            text.chars()
                .all(|c| c.is_ascii_lowercase() || " ,.".contains(c))
        );
    }
}

//! Text ↔ token ids for the simulator, and the plan of what a request will generate.
//!
//! By default token ids are real BPE ids (OpenAI's `cl100k_base`, embedded in
//! `tiktoken-rs`, no download), so counts in `usage` look real and identical text
//! prefixes give identical token prefixes, which is what the engine's prefix cache
//! hashes. The counts are GPT tokenizer estimates, not any served model's. A
//! [`Tokenizer`] loaded from a Hugging Face `tokenizer.json` (`--tokenizer`) gives a
//! served model's exact counts instead; the free functions below are the built-in one.
//!
//! Layout: [`Tokenizer`] (`tokenizer.rs`: either tokenizer behind one handle), `hf`
//! (loading a `tokenizer.json` and what can be known of it), `stream` (text per token
//! as a stream shows it), `chat` (the chat template), `plan` (what a request
//! generates).
//!
//! Nothing here does I/O (but reading a `tokenizer.json` at start) or reads a clock,
//! and nothing panics on any input: unknown ids decode to nothing and invalid UTF-8 is
//! replaced. The built-in vocabulary is built once per process (it takes a noticeable
//! fraction of a second) and shared.

mod chat;
mod hf;
mod plan;
mod stream;
#[cfg(test)]
mod tests;
mod tokenizer;

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

pub use chat::{ChatTurn, apply_chat_template, chat_turn_header};
pub use hf::TokenizerError;
pub(crate) use plan::WORDS;
pub use plan::{OUTPUT_LEN_MEDIAN, OUTPUT_LEN_SIGMA, OutputMode, OutputPlan};
pub use stream::StreamDecoder;
pub use tokenizer::Tokenizer;

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
    let encoder = |alone: bool| match alone {
        true => OwnEncoder::shared(),
        false => OwnEncoder::new(),
    };
    map_in_threads(items, threads, min_per_thread, encoder, f)
}

/// `f` over `items`, in order, on up to `threads` threads (at least `min_per_thread`
/// items each), each thread with a state of its own from `init` (`init(true)` when
/// one thread does it all, on the caller's). The result does not depend on the
/// number of threads.
pub fn map_in_threads<T: Sync, S, R: Send>(
    items: &[T],
    threads: usize,
    min_per_thread: usize,
    init: impl Fn(bool) -> S + Sync,
    f: impl Fn(&S, &T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, (items.len() / min_per_thread.max(1)).max(1));
    if threads == 1 {
        let state = init(true);
        return items.iter().map(|item| f(&state, item)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let (f, init) = (&f, &init);
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let state = init(false);
                    part.iter().map(|item| f(&state, item)).collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| match part.join() {
                Ok(done) => done,
                // The work does not panic; if it ever did, the panic belongs to the
                // caller, not to a lost batch.
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

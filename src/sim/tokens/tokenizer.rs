//! One handle for either tokenizer: the built-in `cl100k_base` or a loaded
//! `tokenizer.json`. It is what the server counts prompts, writes output text and
//! fills the prefix cache with, so a served model's tokenizer gives its exact counts.
//!
//! Cheap to clone (an `Arc`); every method is pure and panic-free.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::hf::{HfTokenizer, TokenizerError};
use super::plan::{self, OutputMode, OutputPlan, word_tokens};

/// Text ↔ token ids for one server (see the module documentation).
#[derive(Clone, Default)]
pub struct Tokenizer {
    /// `None` is the built-in tokenizer.
    hf: Option<Arc<HfTokenizer>>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartialEq for Tokenizer {
    /// The same tokenizer: both built-in, or the same loaded file.
    fn eq(&self, other: &Tokenizer) -> bool {
        match (&self.hf, &other.hf) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.path == b.path,
            _ => false,
        }
    }
}

impl Tokenizer {
    /// The built-in `cl100k_base`.
    pub fn builtin() -> Tokenizer {
        Tokenizer { hf: None }
    }

    /// A Hugging Face `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        let hf = HfTokenizer::from_file(path.as_ref())?;
        Ok(Tokenizer {
            hf: Some(Arc::new(hf)),
        })
    }

    /// A `tokenizer.json` held in memory; `name` says where it came from.
    pub fn from_json(json: &[u8], name: &str) -> Result<Tokenizer, TokenizerError> {
        let hf = HfTokenizer::from_bytes(json, name.to_string())?;
        Ok(Tokenizer {
            hf: Some(Arc::new(hf)),
        })
    }

    /// Whether this is the built-in tokenizer.
    pub fn is_builtin(&self) -> bool {
        self.hf.is_none()
    }

    /// What it is, for logs: `built-in cl100k_base` or the file it came from.
    pub fn describe(&self) -> String {
        match &self.hf {
            None => "built-in cl100k_base".to_string(),
            Some(hf) => format!("tokenizer.json from {}", hf.path),
        }
    }

    /// Does now whatever the first request would otherwise pay for.
    pub fn warm_up(&self) {
        if self.hf.is_none() {
            super::warm_up();
        }
    }

    /// Token ids of `text`. The built-in tokenizer encodes special-token text as
    /// plain text and has no special tokens to add; a `tokenizer.json` matches its
    /// added tokens in the text and adds its post-processor's (a BOS token, say)
    /// when `add_special_tokens`, as vLLM's tokenizer call does. `None` if the
    /// tokenizer cannot encode the text (a word-level vocabulary without an unknown
    /// token meeting a word it lacks).
    pub fn try_encode(&self, text: &str, add_special_tokens: bool) -> Option<Vec<u32>> {
        match &self.hf {
            None => Some(super::encode(text)),
            Some(hf) => hf.encode(text, add_special_tokens),
        }
    }

    /// [`try_encode`](Self::try_encode) without special tokens, empty when the text
    /// cannot be encoded: for workloads, which drop empty prompts.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.try_encode(text, false).unwrap_or_default()
    }

    /// Text of a token sequence, special tokens left out. Unknown ids are skipped;
    /// invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.hf {
            None => super::decode(ids),
            Some(hf) => hf.decode(ids),
        }
    }

    /// Text of one token alone (possibly U+FFFD for part of a character).
    pub fn token_text(&self, id: u32) -> String {
        match &self.hf {
            None => super::token_text(id),
            Some(hf) => hf.token_text(id),
        }
    }

    /// The vocabulary's own spelling of a token, as vLLM's `token_strs` shows it
    /// (`Ġthe` in byte-level BPE). The built-in vocabulary is bytes, so its tokens
    /// are spelled as their text.
    pub fn token_str(&self, id: u32) -> Option<String> {
        match &self.hf {
            None => super::token_bytes(id).map(|b| String::from_utf8_lossy(&b).into_owned()),
            Some(hf) => hf.token_str(id),
        }
    }

    /// The longest token in bytes, when it bounds a text's tokens from below (see
    /// [`min_tokens`](Self::min_tokens)).
    pub fn max_token_bytes(&self) -> Option<usize> {
        match &self.hf {
            None => Some(super::max_token_bytes()),
            Some(hf) => hf.max_token_bytes,
        }
    }

    /// The fewest tokens a text of `bytes` bytes can encode to: `bytes` over the
    /// longest token when every byte lands in some token, else 0 (nothing is known
    /// before encoding).
    pub fn min_tokens(&self, bytes: usize) -> usize {
        self.max_token_bytes()
            .map_or(0, |max| bytes.div_ceil(max.max(1)))
    }

    /// Tokens in the vocabulary (added tokens included).
    pub fn vocab_size(&self) -> usize {
        match &self.hf {
            // cl100k_base: 100,256 ordinary ids, special ones above.
            None => 100_277,
            Some(hf) => hf.vocab_size(),
        }
    }

    /// Single-token common words, the random output's vocabulary; never empty.
    pub fn words(&self) -> &[u32] {
        match &self.hf {
            None => word_tokens(),
            Some(hf) => &hf.words,
        }
    }

    /// What a request generates for `prompt`, the random words drawn from this
    /// tokenizer's [`words`](Self::words); the rules (seeded log-normal length,
    /// `ignore_eos`, echo) are documented at `plan_output` in `tokens/plan.rs`.
    pub fn plan_output(
        &self,
        mode: OutputMode,
        seed: u64,
        prompt: &[u32],
        max_tokens: usize,
        ignore_eos: bool,
    ) -> OutputPlan {
        plan::plan_output(self.words(), mode, seed, prompt, max_tokens, ignore_eos)
    }
}

//! A Hugging Face `tokenizer.json` (the `tokenizers` crate, pure-Rust regexes, no hub
//! download), and the facts the server needs of it that the file does not state:
//! the longest token in bytes, whether that bounds the tokens of a text from below,
//! and which of its tokens are common English words.
//!
//! Loading reads and checks the file once, at start; afterwards nothing here does I/O
//! or panics: an id the vocabulary does not know decodes to nothing.

use std::path::Path;

use serde_json::Value;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

use super::plan::word_texts;

/// Why a `tokenizer.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a tokenizer.json the tokenizers library loads: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path} has no tokens")]
    Empty { path: String },
}

/// Single-token words fewer than this, and the random text falls back to the
/// vocabulary's own short alphabetic tokens.
const MIN_WORDS: usize = 16;
/// The most tokens that fallback takes.
const MAX_FALLBACK_WORDS: usize = 256;

/// A loaded `tokenizer.json` and what was learnt of it at load.
pub struct HfTokenizer {
    tokenizer: tokenizers::Tokenizer,
    /// Where it was loaded from, for logs and errors.
    pub path: String,
    /// The longest token, bytes, when every byte of any text is covered by some
    /// token (byte-level BPE or byte fallback, no normalizer): then a text of `n`
    /// bytes has at least `n / max` tokens. `None` otherwise: an unknown word may be a
    /// single `[UNK]` token, or dropped.
    pub max_token_bytes: Option<usize>,
    /// Token ids for the random output: single-token common words.
    pub words: Vec<u32>,
}

impl HfTokenizer {
    pub fn from_file(path: &Path) -> Result<HfTokenizer, TokenizerError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Read {
            path: name.clone(),
            source,
        })?;
        HfTokenizer::from_bytes(&bytes, name)
    }

    /// Loads a `tokenizer.json` held in memory; `name` says where it came from.
    pub fn from_bytes(bytes: &[u8], name: String) -> Result<HfTokenizer, TokenizerError> {
        let parse = |reason: String| TokenizerError::Parse {
            path: name.clone(),
            reason,
        };
        let json: Value = serde_json::from_slice(bytes).map_err(|e| parse(e.to_string()))?;
        let tokenizer =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| parse(e.to_string()))?;
        if tokenizer.get_vocab_size(true) == 0 {
            return Err(TokenizerError::Empty { path: name });
        }
        let mut hf = HfTokenizer {
            tokenizer,
            path: name,
            max_token_bytes: None,
            words: Vec::new(),
        };
        if covers_every_byte(&json, &hf.tokenizer) {
            hf.max_token_bytes = Some(hf.longest_token_bytes());
        }
        hf.words = hf.find_words();
        Ok(hf)
    }

    /// Token ids of `text`; `None` if the tokenizer cannot encode it (a word-level
    /// vocabulary without an unknown token meeting an unknown word).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Option<Vec<u32>> {
        match self.tokenizer.encode(text, add_special_tokens) {
            Ok(encoding) => Some(encoding.get_ids().to_vec()),
            Err(_) => None,
        }
    }

    /// Text of `ids`, special tokens left out (as vLLM's default
    /// `skip_special_tokens`); unknown ids give nothing.
    pub fn decode(&self, ids: &[u32]) -> String {
        let known: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| self.tokenizer.id_to_token(id).is_some())
            .collect();
        self.tokenizer.decode(&known, true).unwrap_or_default()
    }

    /// Text of one token alone, special tokens included.
    pub fn token_text(&self, id: u32) -> String {
        if self.tokenizer.id_to_token(id).is_none() {
            return String::new();
        }
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }

    /// The vocabulary's own spelling of a token (`Ġhello` in byte-level BPE).
    pub fn token_str(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    fn longest_token_bytes(&self) -> usize {
        let vocab = self.tokenizer.get_vocab(true);
        let decoded = vocab.values().map(|&id| self.token_text(id).len());
        let spelled = vocab.keys().map(String::len);
        decoded.chain(spelled).max().unwrap_or(1).max(1)
    }

    /// The common words that are one token each, with their leading space (as the
    /// built-in list); too few of those, and the vocabulary's own short alphabetic
    /// tokens, lowest ids first.
    fn find_words(&self) -> Vec<u32> {
        let mut words: Vec<u32> = word_texts()
            .filter_map(|w| match self.encode(&w, false).as_deref() {
                Some(&[id]) => Some(id),
                _ => None,
            })
            .collect();
        if words.len() >= MIN_WORDS {
            return words;
        }
        let special: Vec<u32> = self
            .tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        let mut ids: Vec<u32> = self.tokenizer.get_vocab(false).into_values().collect();
        ids.sort_unstable();
        let fallback: Vec<u32> = ids
            .into_iter()
            .filter(|id| !special.contains(id) && !words.contains(id))
            .filter(|&id| {
                let text = self.token_text(id);
                text.len() <= 12 && text.chars().any(char::is_alphabetic)
            })
            .take(MAX_FALLBACK_WORDS)
            .collect();
        words.extend(fallback);
        if words.is_empty() {
            // Any token at all: the vocabulary is not empty (checked at load).
            let mut all: Vec<u32> = self.tokenizer.get_vocab(true).into_values().collect();
            all.sort_unstable();
            words.extend(all.into_iter().take(1));
        }
        words
    }
}

/// Whether every byte of any text lands in some token: a byte-level pre-tokenizer
/// with all 256 byte characters in the vocabulary, or BPE's byte fallback with all
/// 256 `<0xNN>` tokens; and no normalizer, which could shrink a text (NFKC turns
/// the 3-byte Kelvin sign into `K`).
fn covers_every_byte(json: &Value, tokenizer: &tokenizers::Tokenizer) -> bool {
    if !json.get("normalizer").is_none_or(Value::is_null) {
        return false;
    }
    let byte_level = json.get("pre_tokenizer").is_some_and(names_byte_level)
        && ByteLevel::alphabet()
            .iter()
            .all(|c| tokenizer.token_to_id(&c.to_string()).is_some());
    let model = json.get("model");
    let fallback = model.and_then(|m| m.get("byte_fallback")) == Some(&Value::Bool(true))
        && (0..=255u8).all(|b| tokenizer.token_to_id(&format!("<0x{b:02X}>")).is_some());
    byte_level || fallback
}

/// Whether a pre-tokenizer (or a sequence of them) includes `ByteLevel`.
fn names_byte_level(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            map.get("type").and_then(Value::as_str) == Some("ByteLevel")
                || map.values().any(names_byte_level)
        }
        Value::Array(items) => items.iter().any(names_byte_level),
        _ => false,
    }
}

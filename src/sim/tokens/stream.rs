//! Output text token by token, as vLLM's incremental detokenizer gives it to a stream.
//!
//! A token's text is what decoding the recent tokens with it adds to decoding them
//! without it, so decoders that depend on context (SentencePiece's leading space,
//! WordPiece's `##`) stream the same text they decode to whole. Text that ends in
//! part of a character (U+FFFD) is held back until the next token completes it. The
//! window of tokens kept is only those since the last text emitted, so memory stays
//! small however long the output.

use super::Tokenizer;

/// The incremental decoder of one output.
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    tokenizer: Tokenizer,
    /// Tokens from the window's start; `prefix` of them were decoded before the text
    /// last emitted, `read` of them are emitted.
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl StreamDecoder {
    pub fn new(tokenizer: Tokenizer) -> StreamDecoder {
        StreamDecoder {
            tokenizer,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Adds the next token; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.ids.push(id);
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read]);
        let after = self.tokenizer.decode(&self.ids[self.prefix..]);
        if after.len() <= before.len() || after.ends_with('\u{FFFD}') {
            return String::new();
        }
        let text = new_text(&before, &after);
        // The window restarts at the tokens just emitted: they are the context the
        // next token's text is measured against.
        self.ids.drain(..self.read);
        self.prefix = 0;
        self.read = self.ids.len();
        text
    }

    /// Whatever text is still held back (an incomplete character at the end), once
    /// the output is over.
    pub fn finish(&mut self) -> String {
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read]);
        let after = self.tokenizer.decode(&self.ids[self.prefix..]);
        self.ids.clear();
        self.prefix = 0;
        self.read = 0;
        if after.len() <= before.len() {
            return String::new();
        }
        new_text(&before, &after)
    }
}

/// What `after` adds to `before`: the tail past the shared prefix.
fn new_text(before: &str, after: &str) -> String {
    if let Some(rest) = after.strip_prefix(before) {
        return rest.to_string();
    }
    // A decoder that rewrote earlier text: emit past the common characters.
    let common = before
        .char_indices()
        .zip(after.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    after.get(common..).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_pieces_add_up_to_the_whole_text() {
        let t = Tokenizer::builtin();
        for text in [
            "Streaming one token at a time works.",
            "Ünïcödé 日本語 🚀 and emoji 👩‍🚀 split across tokens",
        ] {
            let ids = t.encode(text);
            let mut d = StreamDecoder::new(t.clone());
            let mut streamed: String = ids.iter().map(|&id| d.push(id)).collect();
            streamed.push_str(&d.finish());
            assert_eq!(streamed, text);
            assert_eq!(t.decode(&ids), text);
        }
    }

    #[test]
    fn a_split_character_is_held_until_complete() {
        let t = Tokenizer::builtin();
        let ids = t.encode("🚀");
        assert!(ids.len() > 1, "the rocket is several byte tokens");
        let mut d = StreamDecoder::new(t);
        let pieces: Vec<String> = ids.iter().map(|&id| d.push(id)).collect();
        assert!(pieces[..pieces.len() - 1].iter().all(String::is_empty));
        assert_eq!(pieces.last().unwrap(), "🚀");
    }
}

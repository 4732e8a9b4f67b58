//! The one chat template the simulator applies, whatever the tokenizer: a
//! `tokenizer.json` carries no template, and the template's only job here is to turn a
//! conversation into text whose prefixes follow the conversation's.

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

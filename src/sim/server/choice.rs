//! One choice of a response: which sequence of the engine it is, how its tokens are
//! presented (text or a tool call's arguments), whether it reports log
//! probabilities, and the usage a response sums over its choices.
//!
//! vLLM numbers a completion's choices `prompt_index * n + j` and counts each
//! prompt's tokens once however many choices share it; so do these.

use crate::api::openai::{FunctionCall, ToolCall, Usage};
use crate::sim::metrics::FinishReason;

/// How a choice's generated tokens are shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// As text (`text` or `message.content`).
    Text,
    /// As the arguments of a call of tool `name`.
    ToolCall {
        /// `chatcmpl-tool-…`.
        id: String,
        name: String,
        /// vLLM reports `tool_calls` for `auto` and `required`, and the engine's own
        /// reason for a named tool choice.
        finish_as_tool_calls: bool,
        /// vLLM leaves an auto tool call's `content` null, a forced one's empty.
        content_null: bool,
    },
}

/// What one choice is, decided before its sequence enters the engine.
#[derive(Clone, Debug)]
pub struct ChoiceSpec {
    pub index: u32,
    /// Whether this choice's prompt tokens count in `usage` (the first of its prompt).
    pub counts_prompt: bool,
    /// Top log probabilities per token to report; `None`: no `logprobs`.
    pub logprobs: Option<u32>,
    /// Seeds the log probabilities.
    pub seed: u64,
    pub output: Output,
}

impl ChoiceSpec {
    /// The `finish_reason` vLLM writes for this choice.
    pub fn finish_reason(&self, reason: FinishReason) -> String {
        match &self.output {
            Output::ToolCall {
                finish_as_tool_calls: true,
                ..
            } if reason == FinishReason::Stop => "tool_calls".into(),
            _ => reason.as_str().into(),
        }
    }

    /// The tool call of a whole output, for a tool-call choice.
    pub fn tool_call(&self, arguments: String) -> Option<ToolCall> {
        match &self.output {
            Output::Text => None,
            Output::ToolCall { id, name, .. } => Some(ToolCall {
                id: id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments,
                },
            }),
        }
    }
}

/// Sums choices' usage: prompt (and cached) tokens of the choices that count them,
/// completion tokens of all.
#[derive(Clone, Copy, Debug, Default)]
pub struct UsageSum {
    prompt: u32,
    cached: u32,
    completion: u32,
}

impl UsageSum {
    pub fn add(&mut self, spec: &ChoiceSpec, u: &Usage) {
        if spec.counts_prompt {
            self.prompt = self.prompt.saturating_add(u.prompt_tokens);
            let cached = u.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
            self.cached = self.cached.saturating_add(cached);
        }
        self.completion = self.completion.saturating_add(u.completion_tokens);
    }

    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt,
            completion_tokens: self.completion,
            total_tokens: self.prompt.saturating_add(self.completion),
            prompt_tokens_details: Some(crate::api::openai::PromptTokensDetails {
                cached_tokens: self.cached,
            }),
        }
    }
}

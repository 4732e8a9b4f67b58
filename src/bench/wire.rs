//! The HTTP body a planned request goes out as: vLLM's completions or chat request,
//! streaming with usage, asking for exactly its planned output with `ignore_eos`.
//!
//! The live client sends these bytes; the virtual runner needs only their length,
//! which the picker reads as the request's size (GIE estimates a request's tokens
//! from its body, `LlmRequest::estimated_tokens`), and the bytes the picker's prefix
//! affinity hashes (the prompt text, or a chat request's `messages` JSON), so both
//! modes feed the scheduler the same request.

use std::io;

use serde::Serialize;

use super::workload::{ChatMessage, PromptText, WorkloadRequest};

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [ChatMessage]>,
    max_tokens: usize,
    ignore_eos: bool,
    stream: bool,
    stream_options: StreamOptions,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// The body of `r`, naming its adapter (if any) or else `model`.
fn of<'a>(model: &'a str, r: &'a WorkloadRequest) -> Body<'a> {
    let (prompt, messages) = match &r.prompt {
        PromptText::Text(t) => (Some(t.as_str()), None),
        PromptText::Chat(m) => (None, Some(m.as_slice())),
    };
    Body {
        model: r.lora.as_deref().unwrap_or(model),
        prompt,
        messages,
        max_tokens: r.output_tokens,
        ignore_eos: true,
        stream: true,
        stream_options: StreamOptions {
            include_usage: true,
        },
    }
}

/// The JSON bytes the live client sends for `r`.
pub fn body(model: &str, r: &WorkloadRequest) -> Vec<u8> {
    // Plain strings and numbers always serialise; an empty body would get a 400.
    serde_json::to_vec(&of(model, r)).unwrap_or_default()
}

/// `body(model, r).len()`, counted without building the bytes.
pub fn body_len(model: &str, r: &WorkloadRequest) -> usize {
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, &of(model, r)) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// The bytes the picker's parser hashes for prefix affinity from `body(model, r)`: a
/// completions request's prompt text, a chat request's `messages` JSON as the body
/// carries it.
pub fn prefix_bytes(r: &WorkloadRequest) -> Vec<u8> {
    match &r.prompt {
        PromptText::Text(text) => text.as_bytes().to_vec(),
        // Plain strings always serialise.
        PromptText::Chat(messages) => serde_json::to_vec(messages).unwrap_or_default(),
    }
}

/// A writer that only counts.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::ChatMessage;

    fn request(prompt: PromptText, lora: Option<&str>) -> WorkloadRequest {
        let mut r = WorkloadRequest::new(prompt, 7);
        r.lora = lora.map(str::to_string);
        r
    }

    #[test]
    fn the_counted_length_is_the_sent_length() {
        let text = PromptText::Text("a \"quoted\"\nline\twith \\ and é and \u{1}".into());
        let chat = PromptText::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "hi \"there\"".into(),
        }]);
        for r in [
            request(text.clone(), None),
            request(text, Some("sql-lora")),
            request(chat, None),
        ] {
            assert_eq!(body_len("m", &r), body("m", &r).len());
        }
    }

    #[test]
    fn the_prefix_bytes_are_what_the_parser_hashes_from_the_body() {
        use crate::epp::parser::{RequestMeta, parse_openai};
        let chat = PromptText::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: "Be \"brief\".\n".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "naïve question".into(),
            },
        ]);
        let text = PromptText::Text("a \"quoted\"\nprompt, naïve".into());
        for (path, prompt) in [("/v1/chat/completions", chat), ("/v1/completions", text)] {
            let r = request(prompt, None);
            let meta = RequestMeta {
                path,
                request_id: "r".into(),
                model_rewrite: None,
            };
            let parsed = parse_openai(meta, &body("m", &r)).unwrap();
            assert_eq!(prefix_bytes(&r), parsed.prefix_bytes, "{path}");
        }
    }

    #[test]
    fn the_body_is_a_streaming_request_for_the_planned_tokens() {
        let r = request(PromptText::Text("Hello".into()), Some("sql-lora"));
        let v: serde_json::Value = serde_json::from_slice(&body("base", &r)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "model": "sql-lora",
                "prompt": "Hello",
                "max_tokens": 7,
                "ignore_eos": true,
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
    }
}

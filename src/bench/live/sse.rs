//! Reading an OpenAI-style Server-Sent Events stream: bytes to `data:` lines
//! ([`LineBuffer`]) and one line's payload to what the client needs ([`parse_data`]).
//!
//! Only what measurement needs is decoded: whether a chunk carries a non-empty token
//! (completions' `choices[].text`, chat's `choices[].delta.content`), the usage
//! record, an error frame, and `[DONE]`. Unknown fields are skipped, malformed
//! payloads are ignored rather than failing the request (a server's comment or
//! keep-alive line is not a token), and nothing here panics.

use std::borrow::Cow;

use serde::Deserialize;

/// Splits a byte stream into lines and hands each `data:` payload on.
#[derive(Debug, Default)]
pub struct LineBuffer {
    /// The unfinished last line of what has arrived so far.
    partial: Vec<u8>,
}

impl LineBuffer {
    /// Adds `bytes` and calls `on_data` with the payload of every complete `data:` line
    /// (the field name, one optional space and the line ending removed).
    pub fn push(&mut self, bytes: &[u8], mut on_data: impl FnMut(&[u8])) {
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.partial.is_empty() {
                emit(line, &mut on_data);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                emit(&whole, &mut on_data);
            }
        }
        self.partial.extend_from_slice(rest);
    }
}

fn emit(line: &[u8], on_data: &mut impl FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(data) = line.strip_prefix(b"data:") {
        on_data(data.strip_prefix(b" ").unwrap_or(data));
    }
}

/// The token counts a usage record reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// `prompt_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
}

/// What one chunk says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// At least one choice carries non-empty text.
    pub has_token: bool,
    pub usage: Option<Usage>,
}

/// One `data:` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `[DONE]`: the stream is complete.
    Done,
    Chunk(Chunk),
    /// An error frame (`{"error": …}`) sent mid-stream.
    Error,
    /// Anything else (not JSON, not a chunk).
    Other,
}

#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<WireChoice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    /// Completions.
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    /// Chat.
    #[serde(default, borrow)]
    delta: Option<WireDelta<'a>>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<WireDetails>,
}

#[derive(Deserialize)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// Decodes one `data:` payload.
pub fn parse_data(data: &[u8]) -> Event {
    let data = data.trim_ascii();
    if data == b"[DONE]" {
        return Event::Done;
    }
    let Ok(chunk) = serde_json::from_slice::<WireChunk<'_>>(data) else {
        return Event::Other;
    };
    if chunk.error.is_some() {
        return Event::Error;
    }
    let has_token = chunk.choices.iter().any(|c| {
        c.text.as_deref().is_some_and(|t| !t.is_empty())
            || c.delta
                .as_ref()
                .and_then(|d| d.content.as_deref())
                .is_some_and(|t| !t.is_empty())
    });
    Event::Chunk(Chunk {
        has_token,
        usage: chunk.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut buf = LineBuffer::default();
        let mut out = Vec::new();
        for p in parts {
            buf.push(p, |d| out.push(d.to_vec()));
        }
        out
    }

    #[test]
    fn data_lines_survive_any_split() {
        let stream: &[u8] = b"data: {\"a\":1}\n\n: keep-alive\r\ndata:[DONE]\r\n\r\n";
        let whole = lines(&[stream]);
        assert_eq!(whole, vec![b"{\"a\":1}".to_vec(), b"[DONE]".to_vec()]);
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(lines(&[a, b]), whole, "split at {cut}");
        }
    }

    #[test]
    fn tokens_usage_errors_and_done() {
        let text = br#"{"id":"x","choices":[{"index":0,"text":"hi","finish_reason":null}]}"#;
        assert!(matches!(
            parse_data(text),
            Event::Chunk(Chunk {
                has_token: true,
                ..
            })
        ));
        let role = br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert!(matches!(
            parse_data(role),
            Event::Chunk(Chunk {
                has_token: false,
                ..
            })
        ));
        let chat = br#"{"choices":[{"index":0,"delta":{"content":"\u00e9\n"}}]}"#;
        assert!(matches!(
            parse_data(chat),
            Event::Chunk(Chunk {
                has_token: true,
                ..
            })
        ));
        let usage = br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(
            parse_data(usage),
            Event::Chunk(Chunk {
                has_token: false,
                usage: Some(Usage {
                    prompt_tokens: Some(7),
                    completion_tokens: Some(3),
                    cached_tokens: Some(4),
                }),
            })
        );
        let error =
            br#"{"error":{"message":"engine stopped","type":"InternalServerError","code":500}}"#;
        assert_eq!(parse_data(error), Event::Error);
        assert_eq!(parse_data(b" [DONE] "), Event::Done);
        assert_eq!(parse_data(b"not json"), Event::Other);
    }
}

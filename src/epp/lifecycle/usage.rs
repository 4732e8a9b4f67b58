//! Reads token usage out of a model server's response as it streams past, without
//! holding it back (gie-facts §1.8).
//!
//! SSE: complete `data:` frames that mention `"usage"` are parsed; the first usage
//! object wins. JSON: the body is copied (up to a cap) and parsed at the end. Both
//! spellings of the cached-token field are read: OpenAI's `prompt_tokens_details`
//! and GIE's `prompt_token_details`. Never fails: unreadable bytes just mean no usage.

use serde_json::Value;

pub use crate::epp::request::TokenUsage;

/// Largest non-streaming body copied for usage parsing, bytes; bigger ones are
/// forwarded untouched and report no usage.
const MAX_JSON_COPY: usize = 4 << 20;
/// Largest partial SSE frame kept between chunks, bytes.
const MAX_PARTIAL_FRAME: usize = 1 << 20;

/// Watches response bytes for a `usage` object.
#[derive(Debug)]
pub struct UsageSniffer {
    streaming: bool,
    buf: Vec<u8>,
    /// SSE: how much of `buf` is known to hold no frame end, so each byte is searched
    /// once however the stream is chunked (one unterminated frame sent a byte at a
    /// time would otherwise be searched again on every byte).
    searched: usize,
    /// Bytes the frame-end search has looked at, for the cost test.
    #[cfg(test)]
    examined: usize,
    overflowed: bool,
    found: Option<TokenUsage>,
}

impl UsageSniffer {
    /// `streaming` when the response's content type is `text/event-stream`.
    pub fn new(streaming: bool) -> UsageSniffer {
        UsageSniffer {
            streaming,
            buf: Vec::new(),
            searched: 0,
            #[cfg(test)]
            examined: 0,
            overflowed: false,
            found: None,
        }
    }

    /// Whether the response is server-sent events.
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// Looks at the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.found.is_some() || self.overflowed {
            return;
        }
        if !self.streaming {
            if self.buf.len() + chunk.len() > MAX_JSON_COPY {
                self.overflowed = true;
                self.buf = Vec::new();
            } else {
                self.buf.extend_from_slice(chunk);
            }
            return;
        }
        self.buf.extend_from_slice(chunk);
        // Parse every complete frame; keep the tail. A frame end may straddle the
        // previous chunk's last byte, so the search restarts one byte back.
        let mut start = 0;
        let mut from = self.searched.saturating_sub(1);
        while let Some(end) = self.frame_end(from) {
            let frame_end = from + end;
            let frame = &self.buf[start..frame_end];
            if self.found.is_none() && find(frame, b"\"usage\"").is_some() {
                self.found = frame
                    .split(|&b| b == b'\n')
                    .filter_map(|line| line.strip_prefix(b"data:"))
                    .find_map(|data| parse_usage(data.trim_ascii()));
            }
            start = frame_end + 2;
            from = start;
        }
        self.buf.drain(..start);
        self.searched = self.buf.len();
        if self.buf.len() > MAX_PARTIAL_FRAME {
            self.overflowed = true;
            self.buf = Vec::new();
        }
    }

    /// Where the next frame end after `from` is, relative to `from`.
    fn frame_end(&mut self, from: usize) -> Option<usize> {
        #[cfg(test)]
        {
            self.examined += self.buf.len() - from;
        }
        find(&self.buf[from..], b"\n\n")
    }

    /// The usage found, once the body has ended.
    pub fn finish(&mut self) -> Option<TokenUsage> {
        if self.found.is_none() && !self.streaming && !self.overflowed {
            self.found = parse_usage(&self.buf);
        }
        self.buf = Vec::new();
        self.found
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_usage(json: &[u8]) -> Option<TokenUsage> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let u = v.get("usage")?.as_object()?;
    let num = |k: &str| u.get(k).and_then(Value::as_u64);
    let cached = ["prompt_tokens_details", "prompt_token_details"]
        .iter()
        .find_map(|k| u.get(*k)?.get("cached_tokens")?.as_u64())
        .unwrap_or(0);
    Some(TokenUsage {
        prompt_tokens: num("prompt_tokens").or(num("input_tokens"))?,
        completion_tokens: num("completion_tokens")
            .or(num("output_tokens"))
            .unwrap_or(0),
        cached_tokens: cached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_usage_in_an_sse_frame_split_across_chunks() {
        let stream = b"data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\ndata: [DONE]\n\n";
        for split in [1, 17, 60, 100, stream.len() - 1] {
            let mut s = UsageSniffer::new(true);
            s.feed(&stream[..split]);
            s.feed(&stream[split..]);
            assert_eq!(
                s.finish(),
                Some(TokenUsage {
                    prompt_tokens: 7,
                    completion_tokens: 2,
                    cached_tokens: 3
                }),
                "split at {split}"
            );
        }
    }

    #[test]
    fn reads_json_bodies_and_gies_spelling() {
        let body = br#"{"object":"text_completion","usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_token_details":{"cached_tokens":4}}}"#;
        let mut s = UsageSniffer::new(false);
        s.feed(&body[..10]);
        s.feed(&body[10..]);
        let u = s.finish().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (5, 1, 4)
        );
    }

    #[test]
    fn a_frame_end_split_across_chunks_is_found() {
        let mut s = UsageSniffer::new(true);
        for chunk in [
            &b"data: {\"usage\":{\"prompt_tokens\":3}}\n"[..],
            b"\n",
            b"data: [DONE]\n\n",
        ] {
            s.feed(chunk);
        }
        assert_eq!(s.finish().map(|u| u.prompt_tokens), Some(3));
    }

    /// One unterminated frame trickled a byte at a time: each byte is searched a
    /// bounded number of times, so the cost is linear in the bytes, not quadratic.
    #[test]
    fn a_trickled_unterminated_frame_is_searched_once() {
        let mut s = UsageSniffer::new(true);
        let n = 100_000;
        for _ in 0..n {
            s.feed(b"x");
        }
        assert!(
            s.examined <= 2 * n,
            "{} bytes searched for {n} sent",
            s.examined
        );
        assert_eq!(s.buf.len(), n);
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn garbage_means_no_usage() {
        for (streaming, bytes) in [
            (true, &b"data: {not json \"usage\"\n\n"[..]),
            (false, &b"\xff\xfe"[..]),
            (false, &b"{\"usage\":\"none\"}"[..]),
        ] {
            let mut s = UsageSniffer::new(streaming);
            s.feed(bytes);
            assert_eq!(s.finish(), None);
        }
    }
}

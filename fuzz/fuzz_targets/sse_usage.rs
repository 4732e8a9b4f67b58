//! `sse_usage`: the response usage sniffer over arbitrary bodies cut into arbitrary
//! chunks, as a model server's response arrives through the gateway.
//!
//! The input's first byte chooses the mode (bit 0: server-sent events, else a JSON
//! body) and how many chunk sizes follow (bits 1–4, up to 15 bytes, each a size of
//! 0–255 bytes, 0 an empty chunk); the rest is the body, cut by those sizes in turn.
//! Nothing may panic, and the usage found never depends on the cutting: it equals
//! what the body fed in one piece gives, and what it fed a byte at a time gives.

#![no_main]

use igw::epp::lifecycle::UsageSniffer;
use igw::epp::request::TokenUsage;
use libfuzzer_sys::fuzz_target;

fn sniff<'a>(streaming: bool, chunks: impl IntoIterator<Item = &'a [u8]>) -> Option<TokenUsage> {
    let mut sniffer = UsageSniffer::new(streaming);
    for chunk in chunks {
        sniffer.feed(chunk);
    }
    sniffer.finish()
}

/// `body` cut by `sizes` in turn, repeated until it is used up; in one piece if every
/// size is 0.
fn cut<'a>(body: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.iter().all(|&s| s == 0) {
        return vec![body];
    }
    let mut chunks = Vec::new();
    let mut rest = body;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(usize::from(size).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let streaming = mode & 1 == 1;
    let count = usize::from((mode >> 1) & 0x0f).min(rest.len());
    let (sizes, body) = rest.split_at(count);

    let whole = sniff(streaming, [body]);
    let chunked = sniff(streaming, cut(body, sizes));
    assert_eq!(chunked, whole, "cut by {sizes:?}");
    let bytes = sniff(streaming, body.chunks(1));
    assert_eq!(bytes, whole, "fed a byte at a time");
});

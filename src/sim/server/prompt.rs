//! Keeping large prompts away from the engine's cadence: a prompt that cannot fit the
//! context window is refused from its length before it is tokenized, and the
//! CPU-heavy work of a large request (parsing its JSON, tokenizing its text) runs on
//! tokio's blocking pool, a few at a time, never on the runtime threads that run the
//! drivers and deliver other streams.
//!
//! The length check is exact in what it claims: no token of the vocabulary is longer
//! than [`Tokenizer::max_token_bytes`] (128 bytes for the built-in one), so a text of
//! `n` bytes has at least `n / 128` tokens; a text whose lower bound plus its
//! completion is past `max_model_len` is refused with vLLM's 400 saying "at least".
//! Texts within the bound are tokenized and checked exactly. A `tokenizer.json` whose
//! tokens need not cover every byte gives no bound, and its texts are always encoded.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use super::error::ApiError;
use crate::sim::tokens::Tokenizer;

/// Work on inputs up to this many bytes runs inline on the handler's task: encoding
/// 16 KiB takes well under a millisecond in a release build, less than handing it to
/// another thread and back.
pub const INLINE_BYTES: usize = 16 * 1024;

/// Heavy jobs running at once, process-wide: one core fewer than the machine has (at
/// least one), so however many large requests arrive, the runtime keeps a core.
fn heavy_slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Arc::new(Semaphore::new(cores.saturating_sub(1).max(1)))
        })
        .clone()
}

/// Runs `f` on the blocking pool once a heavy slot is free. The slot moves into the
/// job, so a client that leaves does not free it while the job still runs.
pub async fn off_thread<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ApiError> {
    let slot = heavy_slots()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("The server is shutting down."))?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f()
    })
    .await
    .map_err(|e| ApiError::internal(format!("Tokenizing the prompt failed: {e}")))
}

/// Token ids of `text` (with the tokenizer's special tokens when `add_special`, as
/// vLLM's `add_special_tokens`); texts past [`INLINE_BYTES`] are encoded off the
/// runtime. A text the tokenizer cannot encode is a 400 naming `param`.
pub async fn encode(
    tokenizer: &Tokenizer,
    text: String,
    add_special: bool,
    param: &'static str,
) -> Result<Vec<u32>, ApiError> {
    let ids = if text.len() <= INLINE_BYTES {
        tokenizer.try_encode(&text, add_special)
    } else {
        let tokenizer = tokenizer.clone();
        off_thread(move || tokenizer.try_encode(&text, add_special)).await?
    };
    ids.ok_or_else(|| {
        ApiError::bad_request("The tokenizer cannot encode this text.").with_param(param)
    })
}

/// Refuses a prompt of `bytes` bytes of text that cannot fit `max_len` tokens with its
/// completion (`max_tokens`, or at least one token when absent or invalid), whatever it
/// tokenizes to. `param` is the request field the prompt came from.
pub fn check_length(
    tokenizer: &Tokenizer,
    max_len: usize,
    bytes: usize,
    max_tokens: Option<i64>,
    param: &str,
) -> Result<(), ApiError> {
    let Some(per_token) = tokenizer.max_token_bytes() else {
        return Ok(());
    };
    let at_least = tokenizer.min_tokens(bytes);
    let completion = match max_tokens {
        Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => None,
    };
    let total = at_least.saturating_add(completion.unwrap_or(1));
    if total <= max_len {
        return Ok(());
    }
    let message = match completion {
        Some(n) => format!(
            "This model's maximum context length is {max_len} tokens. However, you requested \
             at least {} tokens (at least {at_least} in the messages, {n} in the completion; \
             {bytes} bytes of text, no token longer than {per_token} bytes). Please reduce \
             the length of the messages or completion.",
            at_least.saturating_add(n)
        ),
        None => format!(
            "This model's maximum context length is {max_len} tokens. However, you requested \
             at least {at_least} tokens in the messages ({bytes} bytes of text, no token \
             longer than {per_token} bytes), Please reduce the length of the messages."
        ),
    };
    Err(ApiError::bad_request(message).with_param(param))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_what_cannot_fit() {
        // 8192 tokens of at most 128 bytes: 1 MiB of text may still fit.
        let builtin = Tokenizer::builtin();
        let check = |bytes, max_tokens| check_length(&builtin, 8192, bytes, max_tokens, "prompt");
        assert!(check(8191 * 128, None).is_ok());
        assert!(check(8191 * 128 + 1, None).is_err());
        assert!(check(8000 * 128, Some(192)).is_ok());
        assert!(check(8000 * 128, Some(193)).is_err());
        assert!(check(usize::MAX, Some(i64::MAX)).is_err());
        let e = check(16 << 20, None).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert_eq!(e.param.as_deref(), Some("prompt"));
        assert!(
            e.message.contains("at least 131072 tokens"),
            "{}",
            e.message
        );
        let e = check(16 << 20, Some(10)).unwrap_err();
        assert!(e.message.contains("10 in the completion"), "{}", e.message);
    }

    #[tokio::test]
    async fn long_texts_encode_as_short_ones_do() {
        let text = "The printing press changed Europe. ".repeat(2000);
        assert!(text.len() > INLINE_BYTES);
        let builtin = Tokenizer::builtin();
        let ids = encode(&builtin, text.clone(), true, "prompt")
            .await
            .unwrap();
        assert_eq!(ids, crate::sim::tokens::encode(&text));
        assert_eq!(off_thread(|| 7).await.unwrap(), 7);
    }
}

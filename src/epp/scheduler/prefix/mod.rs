//! GIE's approximate prefix-cache index (gie-facts §4): the prompt bytes are cut into
//! blocks of `blockSizeTokens × 4` bytes (64 by default), the blocks are hashed as a
//! chain seeded with the target model and `cache_salt`, and each endpoint remembers
//! (in an LRU) the hashes of the prompts recently sent to it. A request's match on an
//! endpoint is the number of its leading blocks the index attributes to it.
//!
//! The index guesses what each model server has cached from what was sent where; it
//! never talks to a server. Hashing is once per request: the hashes live in the
//! per-request [`PrefixScratch`] and are reused by the index update after the pick.

mod hash;
mod index;
pub mod lru;
mod matcher;

use serde::Deserialize;

pub use hash::block_hashes;
pub use index::{IndexReader, PrefixIndex};
pub use matcher::{PrefixMatcher, PrefixScratch};

use super::plugins::{ParamError, Params};
use crate::epp::endpoint::Candidate;

/// GIE's `averageCharactersPerToken`: bytes per token when cutting blocks (§4.1).
pub const CHARS_PER_TOKEN: usize = 4;
/// vLLM's default KV block size in tokens (§4.1).
pub const DEFAULT_BLOCK_SIZE_TOKENS: usize = 16;
/// At most this many blocks are hashed per request (§4.1).
pub const DEFAULT_MAX_PREFIX_BLOCKS: usize = 256;
/// Blocks remembered per endpoint: (80 GB − 16 GB) / 128 KB per token ≈ 500K tokens,
/// ÷ 16 tokens per block (§4.1).
pub const DEFAULT_LRU_CAPACITY_PER_SERVER: usize = 31_250;
/// A sanity bound on block sizes (configured or reported), in tokens.
const MAX_BLOCK_TOKENS: usize = 1 << 20;

/// The parameters of `prefix-cache-scorer` (and `approx-prefix-cache-producer`),
/// with GIE's names and defaults (gie-facts §4.1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PrefixParams {
    /// Take the block size from the first candidate's `block_size` metric and each
    /// endpoint's LRU capacity from its `num_gpu_blocks`, when reported.
    pub auto_tune: bool,
    pub block_size_tokens: usize,
    pub max_prefix_blocks_to_match: usize,
    /// When > 0, overrides `maxPrefixBlocksToMatch` as this ÷ `blockSizeTokens`.
    pub max_prefix_tokens_to_match: usize,
    pub lru_capacity_per_server: usize,
    /// Deprecated (characters); accepted and ignored, as GIE does.
    pub block_size: Option<u64>,
}

impl Default for PrefixParams {
    fn default() -> Self {
        PrefixParams {
            auto_tune: true,
            block_size_tokens: DEFAULT_BLOCK_SIZE_TOKENS,
            max_prefix_blocks_to_match: DEFAULT_MAX_PREFIX_BLOCKS,
            max_prefix_tokens_to_match: 0,
            lru_capacity_per_server: DEFAULT_LRU_CAPACITY_PER_SERVER,
            block_size: None,
        }
    }
}

impl Params for PrefixParams {
    fn validate(&self) -> Result<(), ParamError> {
        let positive = [
            ("blockSizeTokens", self.block_size_tokens),
            ("maxPrefixBlocksToMatch", self.max_prefix_blocks_to_match),
            ("lruCapacityPerServer", self.lru_capacity_per_server),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(ParamError::new(field, "must be greater than 0"));
            }
        }
        if self.block_size_tokens > MAX_BLOCK_TOKENS {
            return Err(ParamError::new(
                "blockSizeTokens",
                format!("must be at most {MAX_BLOCK_TOKENS}"),
            ));
        }
        Ok(())
    }
}

impl PrefixParams {
    /// Block size in tokens for a request over `candidates`.
    pub fn block_tokens(&self, candidates: &[Candidate]) -> usize {
        let reported = candidates
            .first()
            .and_then(|c| c.metrics.as_ref())
            .and_then(|m| m.cache_block_size)
            .filter(|&b| b > 0 && b as usize <= MAX_BLOCK_TOKENS);
        match reported {
            Some(b) if self.auto_tune => b as usize,
            _ => self.block_size_tokens,
        }
    }

    /// The most blocks hashed when blocks are `block_tokens` tokens long.
    pub fn max_blocks(&self, block_tokens: usize) -> usize {
        if self.max_prefix_tokens_to_match > 0 {
            self.max_prefix_tokens_to_match / block_tokens.max(1)
        } else {
            self.max_prefix_blocks_to_match
        }
    }

    /// LRU capacity for an endpoint first seen as `chosen`.
    pub fn lru_capacity(&self, chosen: &Candidate) -> usize {
        let reported = chosen.metrics.as_ref().and_then(|m| m.cache_num_blocks);
        match reported {
            Some(n) if self.auto_tune && n > 0 => n.min(u32::MAX as u64 - 1) as usize,
            _ => self.lru_capacity_per_server,
        }
    }
}

#[cfg(test)]
mod tests;

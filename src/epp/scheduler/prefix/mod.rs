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

use serde::Deserialize;

pub use hash::block_hashes;
pub use index::PrefixIndex;

use super::plugins::{ParamError, Params};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;

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

/// Which request and hashing a cached hash list was made from. The request is known
/// by its prompt buffer's address and length: a cycle handed to the wrong request's
/// `on_scheduled` then recomputes instead of recording someone else's blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HashKey {
    prompt: (usize, usize),
    block_bytes: usize,
    max_blocks: usize,
}

fn prompt_id(request: &LlmRequest) -> (usize, usize) {
    let p = &request.prefix_bytes;
    (p.as_ptr() as usize, p.len())
}

/// Per-request prefix data: the request's hashes (computed once) and counting scratch.
#[derive(Debug, Default)]
pub struct PrefixScratch {
    key: Option<HashKey>,
    hashes: Vec<u64>,
    buf: Vec<u8>,
    /// Matched blocks per index server id; all zero between uses.
    counts: Vec<u32>,
    touched: Vec<u32>,
}

impl PrefixScratch {
    /// Drops the cached hashes (a new request begins).
    pub fn invalidate(&mut self) {
        self.key = None;
    }

    /// The request's hashes for this block size, computed on first use.
    pub fn hashes(
        &mut self,
        request: &LlmRequest,
        block_bytes: usize,
        max_blocks: usize,
    ) -> &[u64] {
        let key = HashKey {
            prompt: prompt_id(request),
            block_bytes,
            max_blocks,
        };
        if self.key != Some(key) {
            block_hashes(
                request,
                block_bytes,
                max_blocks,
                &mut self.buf,
                &mut self.hashes,
            );
            self.key = Some(key);
        }
        &self.hashes
    }

    /// The hashes already computed for `request`, if `params` could have produced them
    /// (the block size may have come from metrics when `autoTune` is on).
    pub fn cached_for(&self, request: &LlmRequest, params: &PrefixParams) -> Option<&[u64]> {
        let k = self.key.filter(|k| k.prompt == prompt_id(request))?;
        let block_tokens = k.block_bytes / CHARS_PER_TOKEN;
        let size_ok = params.auto_tune || block_tokens == params.block_size_tokens;
        (size_ok && params.max_blocks(block_tokens) == k.max_blocks).then_some(&self.hashes[..])
    }

    /// Writes `matched / total` blocks into `ratios` for each candidate in `subset`
    /// (gie-facts §4.5); 0 everywhere when the prompt has no full block.
    pub fn match_ratios(
        &mut self,
        index: &PrefixIndex,
        candidates: &[Candidate],
        subset: &[usize],
        ratios: &mut [f64],
    ) {
        let total = self.hashes.len();
        if total == 0 {
            ratios.fill(0.0);
            return;
        }
        index.match_blocks(
            &self.hashes,
            candidates,
            subset,
            &mut self.counts,
            &mut self.touched,
            ratios,
        );
        for r in ratios.iter_mut() {
            *r /= total as f64;
        }
    }
}

/// An index with its parameters: what both prefix-aware scorers share.
#[derive(Debug, Default)]
pub struct PrefixMatcher {
    pub params: PrefixParams,
    pub index: PrefixIndex,
}

impl PrefixMatcher {
    pub fn new(params: PrefixParams) -> PrefixMatcher {
        PrefixMatcher {
            params,
            index: PrefixIndex::new(),
        }
    }

    /// Writes each subset candidate's matched fraction of the request's blocks into
    /// `ratios`, hashing the prompt into `scratch` if it is not hashed yet.
    pub fn ratios(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        scratch: &mut PrefixScratch,
        ratios: &mut [f64],
    ) {
        let block_tokens = self.params.block_tokens(candidates);
        let max_blocks = self.params.max_blocks(block_tokens);
        scratch.hashes(request, block_tokens * CHARS_PER_TOKEN, max_blocks);
        scratch.match_ratios(&self.index, candidates, subset, ratios);
    }

    /// Records that `request` went to `chosen`, reusing the decision's hashes when
    /// `scratch` holds ones this matcher could have made.
    pub fn record(&self, request: &LlmRequest, chosen: &Candidate, scratch: &PrefixScratch) {
        let capacity = self.params.lru_capacity(chosen);
        let name = chosen.endpoint.name.as_str();
        if let Some(hashes) = scratch.cached_for(request, &self.params) {
            self.index.insert(name, capacity, hashes);
            return;
        }
        let block_tokens = self.params.block_tokens(std::slice::from_ref(chosen));
        let mut hashes = Vec::new();
        block_hashes(
            request,
            block_tokens * CHARS_PER_TOKEN,
            self.params.max_blocks(block_tokens),
            &mut Vec::new(),
            &mut hashes,
        );
        self.index.insert(name, capacity, &hashes);
    }
}

#[cfg(test)]
mod tests;

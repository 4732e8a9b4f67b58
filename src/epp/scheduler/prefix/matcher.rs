//! One request against the index: its hashes (computed lazily, once) and the greedy
//! walk that turns them into per-candidate match ratios; and, after the pick, the
//! update that records them for the chosen endpoint.
//!
//! The walk stops at the first block nobody holds, so the prompt is hashed only as far
//! as the walk goes (in batches of [`BATCH`] blocks); the rest is hashed when the
//! index records the request, outside the decision. Either way each block is hashed
//! once per request, in the per-request [`PrefixScratch`].

use super::hash::{extend_chain, num_blocks, seed_hash};
use super::{CHARS_PER_TOKEN, PrefixIndex, PrefixParams};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;

/// Blocks hashed per step of the walk: 1 KB of prompt by default, so a miss costs
/// little hashing and a long match few lock-free batch boundaries.
pub const BATCH: usize = 16;

/// Which request and hashing the scratch holds. The request is known by its prompt
/// buffer's address and length, so a scratch handed to another request's update is
/// recomputed, not misattributed.
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

/// Per-request prefix data: the hashes computed so far and counting scratch.
#[derive(Debug, Default)]
pub struct PrefixScratch {
    key: Option<HashKey>,
    /// Blocks the request has in all (≤ `max_blocks`).
    total: usize,
    /// The last hash computed (the seed before any).
    prev: u64,
    hashes: Vec<u64>,
    buf: Vec<u8>,
    /// Matched blocks per index endpoint id; all zero between walks.
    counts: Vec<u32>,
    touched: Vec<u32>,
}

impl PrefixScratch {
    /// Drops the request's hashes (a new request begins); buffers are kept.
    pub fn invalidate(&mut self) {
        self.key = None;
    }

    /// Makes sure the first `upto` hashes of `request` (hashed with these sizes) are
    /// in `self.hashes`, starting over if the scratch held another request or sizes.
    fn ensure(&mut self, request: &LlmRequest, block_bytes: usize, max_blocks: usize, upto: usize) {
        let key = HashKey {
            prompt: prompt_id(request),
            block_bytes,
            max_blocks,
        };
        if self.key != Some(key) {
            self.key = Some(key);
            self.total = num_blocks(request, block_bytes, max_blocks);
            self.hashes.clear();
            self.prev = if self.total > 0 {
                seed_hash(request)
            } else {
                0
            };
        }
        let (from, to) = (self.hashes.len(), upto.min(self.total));
        if to > from {
            let bytes = &request.prefix_bytes[from * block_bytes..to * block_bytes];
            self.prev = extend_chain(
                bytes,
                block_bytes,
                self.prev,
                &mut self.buf,
                &mut self.hashes,
            );
        }
    }

    /// All of the request's hashes for these sizes.
    pub fn hashes(
        &mut self,
        request: &LlmRequest,
        block_bytes: usize,
        max_blocks: usize,
    ) -> &[u64] {
        self.ensure(request, block_bytes, max_blocks, usize::MAX);
        &self.hashes
    }

    /// Writes `matched / total` blocks into `ratios` for each candidate in `subset`
    /// (gie-facts §4.5); 0 everywhere when the prompt has no full block.
    #[allow(clippy::too_many_arguments)]
    pub fn match_ratios(
        &mut self,
        request: &LlmRequest,
        index: &PrefixIndex,
        block_bytes: usize,
        max_blocks: usize,
        candidates: &[Candidate],
        subset: &[usize],
        ratios: &mut [f64],
    ) {
        self.ensure(request, block_bytes, max_blocks, 0);
        let total = self.total;
        if total == 0 {
            ratios.fill(0.0);
            return;
        }
        let reader = index.reader();
        let mut done = 0;
        while done < total {
            let upto = (done + BATCH).min(total);
            self.ensure(request, block_bytes, max_blocks, upto);
            let more = reader.credit(
                &self.hashes[done..upto],
                &mut self.counts,
                &mut self.touched,
            );
            done = upto;
            if !more {
                break;
            }
        }
        reader.collect(
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

    /// The sizes this scratch's hashes for `request` were made with, if `params` could
    /// have made them (the block size may have come from metrics with `autoTune`).
    fn sizes_for(&self, request: &LlmRequest, params: &PrefixParams) -> Option<(usize, usize)> {
        let k = self.key.filter(|k| k.prompt == prompt_id(request))?;
        let block_tokens = k.block_bytes / CHARS_PER_TOKEN;
        let size_ok = params.auto_tune || block_tokens == params.block_size_tokens;
        (size_ok && params.max_blocks(block_tokens) == k.max_blocks)
            .then_some((k.block_bytes, k.max_blocks))
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
    /// `ratios`.
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
        let block_bytes = block_tokens * CHARS_PER_TOKEN;
        scratch.match_ratios(
            request,
            &self.index,
            block_bytes,
            max_blocks,
            candidates,
            subset,
            ratios,
        );
    }

    /// Records that `request` went to `chosen` (gie-facts §4.6), finishing the hashes
    /// the decision started, or hashing afresh (block size from `chosen`'s metrics)
    /// if `scratch` holds none this matcher could use.
    pub fn record(&self, request: &LlmRequest, chosen: &Candidate, scratch: &mut PrefixScratch) {
        let (block_bytes, max_blocks) =
            scratch.sizes_for(request, &self.params).unwrap_or_else(|| {
                let block_tokens = self.params.block_tokens(std::slice::from_ref(chosen));
                (
                    block_tokens * CHARS_PER_TOKEN,
                    self.params.max_blocks(block_tokens),
                )
            });
        let hashes = scratch.hashes(request, block_bytes, max_blocks);
        self.index.insert(
            &chosen.endpoint.name,
            self.params.lru_capacity(chosen),
            hashes,
        );
    }
}

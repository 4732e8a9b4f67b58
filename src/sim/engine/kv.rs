//! KV-cache blocks: a fixed pool of `num_blocks` blocks of `block_size` tokens, with
//! vLLM's automatic prefix caching.
//!
//! A block whose reference count drops to zero goes to the tail of a free queue but
//! keeps its content hash, so a later request with the same prefix can reuse it.
//! Allocation takes blocks from the head of the queue, evicting their hash: the least
//! recently freed cached block is evicted first (LRU). This mirrors vLLM V1's
//! `BlockPool` / `FreeKVCacheBlockQueue`.
//!
//! Hashes chain: a block's hash covers its parent's hash and its own token ids, so a
//! hit on block *i* implies the whole prefix up to *i* matches.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use xxhash_rust::xxh64::{Xxh64, xxh64};

use crate::hash::IdentityBuild;

/// Index of a block in the pool.
pub type BlockId = u32;

const NIL: u32 = u32::MAX;

/// The hash that stands before the first block of a sequence: distinct per LoRA
/// adapter, because an adapter's KV differs from the base model's for the same tokens.
pub fn root_hash(lora: Option<&str>) -> u64 {
    match lora {
        None => 0,
        Some(name) => xxhash_rust::xxh64::xxh64(name.as_bytes(), 0x6c6f7261),
    }
}

/// Tokens per block hashed in one shot from a stack buffer; longer blocks stream.
const ONE_SHOT_TOKENS: usize = 64;

/// The hash of one full block, chained on its parent's: xxh64 of the tokens'
/// little-endian bytes, seeded with the parent hash.
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    // The one-shot digest equals the streaming one and avoids feeding the hasher 4
    // bytes at a time. vLLM's 16-token blocks get a buffer of their own size, so each
    // hash does not first clear four times the bytes it reads.
    if tokens.len() <= DEFAULT_BLOCK_TOKENS {
        return one_shot::<{ DEFAULT_BLOCK_TOKENS * 4 }>(parent, tokens);
    }
    if tokens.len() <= ONE_SHOT_TOKENS {
        return one_shot::<{ ONE_SHOT_TOKENS * 4 }>(parent, tokens);
    }
    let mut h = Xxh64::new(parent);
    for t in tokens {
        h.update(&t.to_le_bytes());
    }
    h.digest()
}

/// vLLM's default block size, tokens.
const DEFAULT_BLOCK_TOKENS: usize = 16;

/// xxh64 of `tokens`' little-endian bytes through a stack buffer of `BYTES` (at least
/// four per token).
fn one_shot<const BYTES: usize>(parent: u64, tokens: &[u32]) -> u64 {
    let mut buf = [0u8; BYTES];
    for (chunk, t) in buf.chunks_exact_mut(4).zip(tokens) {
        chunk.copy_from_slice(&t.to_le_bytes());
    }
    xxh64(&buf[..tokens.len() * 4], parent)
}

/// One block's bookkeeping, kept together so touching a block costs one cache line.
#[derive(Clone, Copy, Debug)]
struct Block {
    ref_count: u32,
    /// Whether `hash` is registered in `cached` for this block.
    hashed: bool,
    // The free queue's links (`NIL` at its ends and for blocks in use).
    prev: u32,
    next: u32,
    /// The content hash, meaningful when `hashed`.
    hash: u64,
}

const FREE_BLOCK: Block = Block {
    ref_count: 0,
    hashed: false,
    prev: NIL,
    next: NIL,
    hash: 0,
};

/// The fixed pool of KV blocks.
#[derive(Debug)]
pub struct BlockPool {
    blocks: Vec<Block>,
    /// Content hash → the block holding it (only with prefix caching).
    cached: HashMap<u64, BlockId, IdentityBuild>,
    prefix_caching: bool,
    // The free queue: a doubly linked list over block ids, head evicted first.
    head: u32,
    tail: u32,
    num_free: usize,
}

impl BlockPool {
    pub fn new(num_blocks: usize, prefix_caching: bool) -> BlockPool {
        let n = num_blocks as u32;
        let mut pool = BlockPool {
            blocks: vec![FREE_BLOCK; num_blocks],
            // At most one cached hash per block: sized once, the map never rehashes
            // while a run fills the cache.
            cached: HashMap::with_capacity_and_hasher(
                if prefix_caching { num_blocks } else { 0 },
                IdentityBuild::default(),
            ),
            prefix_caching,
            head: NIL,
            tail: NIL,
            num_free: 0,
        };
        for b in 0..n {
            pool.push_free(b);
        }
        pool
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks that can be allocated now (free, cached or not).
    pub fn num_free(&self) -> usize {
        self.num_free
    }

    /// Fraction of blocks in use; cached-but-free blocks count as free, as in vLLM.
    pub fn usage(&self) -> f64 {
        if self.blocks.is_empty() {
            return 0.0;
        }
        1.0 - self.num_free as f64 / self.blocks.len() as f64
    }

    /// How many of `hashes`, from the first, are cached; their blocks go into `out`.
    pub fn lookup(&self, hashes: &[u64], out: &mut Vec<BlockId>) {
        if !self.prefix_caching {
            return;
        }
        for h in hashes {
            match self.cached.get(h) {
                Some(&b) => out.push(b),
                None => break,
            }
        }
    }

    /// Of `blocks`, those that sit in the free queue (reusing them uses up free space).
    pub fn count_free(&self, blocks: &[BlockId]) -> usize {
        blocks
            .iter()
            .filter(|&&b| self.blocks[b as usize].ref_count == 0)
            .count()
    }

    /// Takes a reference on a cached block found by [`BlockPool::lookup`].
    pub fn touch(&mut self, block: BlockId) {
        if self.blocks[block as usize].ref_count == 0 {
            self.unlink(block);
        }
        self.blocks[block as usize].ref_count += 1;
    }

    /// Allocates `n` fresh blocks into `out`, evicting cached ones from the queue head.
    /// Returns false, allocating nothing, when fewer than `n` are free.
    pub fn allocate(&mut self, n: usize, out: &mut Vec<BlockId>) -> bool {
        if n > self.num_free {
            return false;
        }
        for _ in 0..n {
            let b = self.head;
            self.unlink(b);
            let block = &mut self.blocks[b as usize];
            if std::mem::take(&mut block.hashed)
                && let Entry::Occupied(e) = self.cached.entry(block.hash)
                && *e.get() == b
            {
                e.remove();
            }
            block.ref_count = 1;
            out.push(b);
        }
        true
    }

    /// Drops a sequence's references. Blocks are queued last-first, so a sequence's
    /// tail blocks are evicted before its head (its prefix is the likelier reuse).
    pub fn free(&mut self, blocks: &[BlockId]) {
        for &b in blocks.iter().rev() {
            let rc = &mut self.blocks[b as usize].ref_count;
            debug_assert!(*rc > 0, "double free of block {b}");
            *rc = rc.saturating_sub(1);
            if *rc == 0 {
                self.push_free(b);
            }
        }
    }

    /// Registers a full block's content. A hash already held by another block is left
    /// alone (two requests computed the same prefix at once; vLLM keeps the first).
    pub fn register(&mut self, block: BlockId, hash: u64) {
        let b = &mut self.blocks[block as usize];
        if !self.prefix_caching || b.hashed {
            return;
        }
        if let Entry::Vacant(e) = self.cached.entry(hash) {
            e.insert(block);
            b.hashed = true;
            b.hash = hash;
        }
    }

    fn push_free(&mut self, b: BlockId) {
        let block = &mut self.blocks[b as usize];
        block.prev = self.tail;
        block.next = NIL;
        if self.tail == NIL {
            self.head = b;
        } else {
            self.blocks[self.tail as usize].next = b;
        }
        self.tail = b;
        self.num_free += 1;
    }

    fn unlink(&mut self, b: BlockId) {
        let block = &mut self.blocks[b as usize];
        let (p, n) = (block.prev, block.next);
        block.prev = NIL;
        block.next = NIL;
        if p == NIL {
            self.head = n;
        } else {
            self.blocks[p as usize].next = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.blocks[n as usize].prev = p;
        }
        self.num_free -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_blocks_stay_cached_until_evicted_lru() {
        let mut pool = BlockPool::new(4, true);
        let mut a = Vec::new();
        assert!(pool.allocate(2, &mut a));
        pool.register(a[0], 11);
        pool.register(a[1], 12);
        pool.free(&a);
        assert_eq!(pool.num_free(), 4);
        let mut hit = Vec::new();
        pool.lookup(&[11, 12, 13], &mut hit);
        assert_eq!(hit, a, "both blocks hit after being freed");

        // Allocating 3 evicts the two never-used blocks first, then a[1] (freed before
        // a[0] because sequences free tail-first).
        let mut b = Vec::new();
        assert!(pool.allocate(3, &mut b));
        assert!(b.contains(&a[1]) && !b.contains(&a[0]));
        hit.clear();
        pool.lookup(&[11, 12], &mut hit);
        assert_eq!(hit, vec![a[0]]);
    }

    #[test]
    fn allocation_fails_whole_when_short() {
        let mut pool = BlockPool::new(2, true);
        let mut out = Vec::new();
        assert!(!pool.allocate(3, &mut out));
        assert!(out.is_empty());
        assert_eq!(pool.num_free(), 2);
        assert_eq!(pool.usage(), 0.0);
        assert!(pool.allocate(1, &mut out));
        assert_eq!(pool.usage(), 0.5);
    }

    #[test]
    fn touch_takes_a_cached_block_out_of_the_free_queue() {
        let mut pool = BlockPool::new(2, true);
        let mut a = Vec::new();
        pool.allocate(1, &mut a);
        pool.register(a[0], 7);
        pool.free(&a);
        pool.touch(a[0]);
        assert_eq!(pool.num_free(), 1);
        let mut b = Vec::new();
        assert!(pool.allocate(1, &mut b));
        assert_ne!(b[0], a[0], "a touched block is never handed out");
    }

    #[test]
    fn hashes_chain_and_depend_on_the_adapter() {
        let x = block_hash(root_hash(None), &[1, 2]);
        assert_eq!(x, block_hash(root_hash(None), &[1, 2]));
        assert_ne!(x, block_hash(root_hash(Some("sql-lora")), &[1, 2]));
        assert_ne!(block_hash(x, &[3, 4]), block_hash(root_hash(None), &[3, 4]));
        // The one-shot and streaming paths agree with the crate's streaming digest.
        for n in [0, 1, 16, 17, ONE_SHOT_TOKENS, ONE_SHOT_TOKENS + 1, 200] {
            let tokens: Vec<u32> = (0..n as u32).map(|t| t * 7919 + 3).collect();
            let mut h = Xxh64::new(x);
            for t in &tokens {
                h.update(&t.to_le_bytes());
            }
            assert_eq!(block_hash(x, &tokens), h.digest(), "{n} tokens");
        }
    }

    #[test]
    fn without_prefix_caching_nothing_is_found() {
        let mut pool = BlockPool::new(2, false);
        let mut a = Vec::new();
        pool.allocate(1, &mut a);
        pool.register(a[0], 7);
        let mut hit = Vec::new();
        pool.lookup(&[7], &mut hit);
        assert!(hit.is_empty());
    }
}

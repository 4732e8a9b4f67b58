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

use xxhash_rust::xxh64::Xxh64;

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

/// The hash of one full block, chained on its parent's.
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = Xxh64::new(parent);
    for t in tokens {
        h.update(&t.to_le_bytes());
    }
    h.digest()
}

/// The fixed pool of KV blocks.
#[derive(Debug)]
pub struct BlockPool {
    ref_count: Vec<u32>,
    /// The content hash of a block registered in `cached`.
    hash: Vec<Option<u64>>,
    /// Content hash → the block holding it (only with prefix caching).
    cached: HashMap<u64, BlockId>,
    prefix_caching: bool,
    // The free queue: a doubly linked list over block ids, head evicted first.
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32,
    tail: u32,
    num_free: usize,
}

impl BlockPool {
    pub fn new(num_blocks: usize, prefix_caching: bool) -> BlockPool {
        let n = num_blocks as u32;
        let mut pool = BlockPool {
            ref_count: vec![0; num_blocks],
            hash: vec![None; num_blocks],
            cached: HashMap::new(),
            prefix_caching,
            prev: vec![NIL; num_blocks],
            next: vec![NIL; num_blocks],
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
        self.ref_count.len()
    }

    /// Blocks that can be allocated now (free, cached or not).
    pub fn num_free(&self) -> usize {
        self.num_free
    }

    /// Fraction of blocks in use; cached-but-free blocks count as free, as in vLLM.
    pub fn usage(&self) -> f64 {
        if self.ref_count.is_empty() {
            return 0.0;
        }
        1.0 - self.num_free as f64 / self.ref_count.len() as f64
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
            .filter(|&&b| self.ref_count[b as usize] == 0)
            .count()
    }

    /// Takes a reference on a cached block found by [`BlockPool::lookup`].
    pub fn touch(&mut self, block: BlockId) {
        if self.ref_count[block as usize] == 0 {
            self.unlink(block);
        }
        self.ref_count[block as usize] += 1;
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
            if let Some(h) = self.hash[b as usize].take()
                && self.cached.get(&h) == Some(&b)
            {
                self.cached.remove(&h);
            }
            self.ref_count[b as usize] = 1;
            out.push(b);
        }
        true
    }

    /// Drops a sequence's references. Blocks are queued last-first, so a sequence's
    /// tail blocks are evicted before its head (its prefix is the likelier reuse).
    pub fn free(&mut self, blocks: &[BlockId]) {
        for &b in blocks.iter().rev() {
            let rc = &mut self.ref_count[b as usize];
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
        if !self.prefix_caching || self.hash[block as usize].is_some() {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.cached.entry(hash) {
            e.insert(block);
            self.hash[block as usize] = Some(hash);
        }
    }

    fn push_free(&mut self, b: BlockId) {
        self.prev[b as usize] = self.tail;
        self.next[b as usize] = NIL;
        if self.tail == NIL {
            self.head = b;
        } else {
            self.next[self.tail as usize] = b;
        }
        self.tail = b;
        self.num_free += 1;
    }

    fn unlink(&mut self, b: BlockId) {
        let (p, n) = (self.prev[b as usize], self.next[b as usize]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[b as usize] = NIL;
        self.next[b as usize] = NIL;
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

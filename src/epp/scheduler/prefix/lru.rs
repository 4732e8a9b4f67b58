//! The recency order of one endpoint's block hashes in the prefix index (gie-facts
//! §4.4): a fixed-capacity slab of nodes linked most- to least-recently used, with
//! O(1) insert, refresh and eviction.
//!
//! It has no map of its own: the index's hash → holders map records, beside each
//! holder, the slot its hash occupies here, so one lookup per block finds both who
//! holds a hash and where to refresh it. What an evicted hash means to the index is
//! the caller's business. No locking here: the index serialises access.

use std::hash::{BuildHasherDefault, Hasher};

const NIL: u32 = u32::MAX;

/// A fast hasher for short, trusted keys (endpoint names, which come from discovery,
/// not from clients): one multiply per 8 bytes. The index looks up every candidate's
/// name on every request, so SipHash's cost would show.
#[derive(Clone, Copy, Debug, Default)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        // Spread the high bits down: hashbrown takes its bucket from the low bits.
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

/// Builds [`NameHasher`]s.
pub type NameBuild = BuildHasherDefault<NameHasher>;

#[derive(Clone, Copy, Debug)]
struct Node {
    key: u64,
    prev: u32,
    next: u32,
}

/// A slot in an [`Lru`]: where one key lives until it is evicted.
pub type Slot = u32;

/// At most `capacity` keys in recency order; the least recently used goes first.
/// Keys are not checked for uniqueness: the caller inserts a key only when it is not
/// already there, and refreshes it by its slot otherwise.
#[derive(Debug)]
pub struct Lru {
    capacity: usize,
    nodes: Vec<Node>,
    /// Most recently used.
    head: u32,
    /// Least recently used; evicted first.
    tail: u32,
}

impl Lru {
    /// `capacity` below 1 is raised to 1. Memory grows with use, not with capacity.
    pub fn new(capacity: usize) -> Lru {
        Lru {
            capacity: capacity.clamp(1, NIL as usize - 1),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// Keys held; slots are never freed, only reused, so this is the slab's size.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every key, most recently used first.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            let node = self.nodes.get(at as usize)?;
            at = node.next;
            Some(node.key)
        })
    }

    /// Makes the key in `slot` the most recently used.
    pub fn refresh(&mut self, slot: Slot) {
        if slot != self.head && (slot as usize) < self.nodes.len() {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    /// Inserts `key`, which must not be held, as the most recently used. Returns its
    /// slot and, when full, the least recently used key it displaced (whose slot it
    /// took).
    pub fn insert(&mut self, key: u64) -> (Slot, Option<u64>) {
        if self.nodes.len() < self.capacity {
            let slot = self.nodes.len() as u32;
            self.nodes.push(Node {
                key,
                prev: NIL,
                next: NIL,
            });
            self.push_front(slot);
            return (slot, None);
        }
        let slot = self.tail;
        let old = self.nodes[slot as usize].key;
        self.nodes[slot as usize].key = key;
        self.refresh(slot);
        (slot, Some(old))
    }

    fn unlink(&mut self, slot: u32) {
        let Node { prev, next, .. } = self.nodes[slot as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        let node = &mut self.nodes[slot as usize];
        node.prev = NIL;
        node.next = old_head;
        match old_head {
            NIL => self.tail = slot,
            h => self.nodes[h as usize].prev = slot,
        }
        self.head = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An LRU set built the way the index uses [`Lru`]: a map from key to slot beside
    /// it. `put` returns the evicted key of an insert, `None` for a refresh or an
    /// insert into free room.
    #[derive(Default)]
    struct Set {
        lru: Option<Lru>,
        slots: HashMap<u64, Slot>,
    }

    impl Set {
        fn put(&mut self, key: u64) -> Option<u64> {
            let lru = self.lru.as_mut().expect("built");
            if let Some(&slot) = self.slots.get(&key) {
                lru.refresh(slot);
                return None;
            }
            let (slot, evicted) = lru.insert(key);
            if let Some(old) = evicted {
                assert_eq!(self.slots.remove(&old), Some(slot), "evicted {old}");
            }
            self.slots.insert(key, slot);
            evicted
        }
    }

    /// Applies `puts` (key, the key it should evict) to an LRU of `capacity` and
    /// checks the final order (most recent first).
    fn check(capacity: usize, puts: &[(u64, Option<u64>)], order: &[u64]) {
        let mut set = Set {
            lru: Some(Lru::new(capacity)),
            ..Set::default()
        };
        for &(key, want) in puts {
            assert_eq!(set.put(key), want, "put({key})");
        }
        let lru = set.lru.as_ref().expect("built");
        assert_eq!(lru.keys().collect::<Vec<_>>(), order);
        assert_eq!(lru.len(), order.len());
    }

    #[test]
    fn evicts_least_recently_used() {
        check(3, &[(1, None), (2, None), (3, None)], &[3, 2, 1]);
        check(
            3,
            &[(1, None), (2, None), (3, None), (4, Some(1))],
            &[4, 3, 2],
        );
        // A refresh moves 1 to the front, so 2 is evicted instead.
        check(
            3,
            &[(1, None), (2, None), (3, None), (1, None), (4, Some(2))],
            &[4, 1, 3],
        );
        check(1, &[(1, None), (2, Some(1)), (2, None)], &[2]);
        check(0, &[(7, None), (8, Some(7))], &[8]);
        // Refreshing the tail and the head keeps the links consistent.
        check(
            3,
            &[
                (1, None),
                (2, None),
                (1, None),
                (1, None),
                (3, None),
                (4, Some(2)),
            ],
            &[4, 3, 1],
        );
    }
}

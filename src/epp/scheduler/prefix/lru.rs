//! A fixed-capacity LRU set of 64-bit block hashes with O(1) insert, refresh and
//! eviction: a slab of nodes linked most- to least-recently used, plus a map from
//! hash to slot. One per endpoint in the prefix index (gie-facts §4.4).
//!
//! It stores hashes only; what an evicted hash means to the index is the caller's
//! business. No locking here: the index serialises access.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const NIL: u32 = u32::MAX;

use crate::hash::IdentityBuild;

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

/// What [`Lru::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// The key was present and is now the most recently used.
    Refreshed,
    /// The key is new; `evicted` is the least recently used key it displaced.
    Inserted { evicted: Option<u64> },
}

/// A set of at most `capacity` keys that forgets the least recently used first.
#[derive(Debug)]
pub struct Lru {
    capacity: usize,
    slots: HashMap<u64, u32, IdentityBuild>,
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
            slots: HashMap::default(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn contains(&self, key: u64) -> bool {
        self.slots.contains_key(&key)
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

    /// Inserts `key` as the most recently used, evicting the least recently used key
    /// when full.
    pub fn put(&mut self, key: u64) -> Put {
        if let Some(&slot) = self.slots.get(&key) {
            self.unlink(slot);
            self.push_front(slot);
            return Put::Refreshed;
        }
        if self.slots.len() < self.capacity {
            let slot = self.nodes.len() as u32;
            self.nodes.push(Node {
                key,
                prev: NIL,
                next: NIL,
            });
            self.slots.insert(key, slot);
            self.push_front(slot);
            return Put::Inserted { evicted: None };
        }
        // Full: reuse the tail's slot for the new key.
        let slot = self.tail;
        let old = self.nodes[slot as usize].key;
        self.slots.remove(&old);
        self.unlink(slot);
        self.nodes[slot as usize].key = key;
        self.slots.insert(key, slot);
        self.push_front(slot);
        Put::Inserted { evicted: Some(old) }
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

    /// Applies `puts` to an LRU of `capacity` and checks each outcome and the final
    /// order (most recent first).
    fn check(capacity: usize, puts: &[(u64, Put)], order: &[u64]) {
        let mut lru = Lru::new(capacity);
        for &(key, want) in puts {
            assert_eq!(lru.put(key), want, "put({key})");
        }
        assert_eq!(lru.keys().collect::<Vec<_>>(), order);
        assert_eq!(lru.len(), order.len());
        assert!(order.iter().all(|&k| lru.contains(k)));
    }

    const NEW: Put = Put::Inserted { evicted: None };

    #[test]
    fn evicts_least_recently_used() {
        let ev = |k| Put::Inserted { evicted: Some(k) };
        check(3, &[(1, NEW), (2, NEW), (3, NEW)], &[3, 2, 1]);
        check(3, &[(1, NEW), (2, NEW), (3, NEW), (4, ev(1))], &[4, 3, 2]);
        // A refresh moves 1 to the front, so 2 is evicted instead.
        check(
            3,
            &[
                (1, NEW),
                (2, NEW),
                (3, NEW),
                (1, Put::Refreshed),
                (4, ev(2)),
            ],
            &[4, 1, 3],
        );
        check(1, &[(1, NEW), (2, ev(1)), (2, Put::Refreshed)], &[2]);
        check(0, &[(7, NEW), (8, ev(7))], &[8]);
        // Refreshing the tail and the head keeps the links consistent.
        check(
            3,
            &[
                (1, NEW),
                (2, NEW),
                (1, Put::Refreshed),
                (1, Put::Refreshed),
                (3, NEW),
                (4, ev(2)),
            ],
            &[4, 3, 1],
        );
    }
}

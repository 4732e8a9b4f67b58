//! The index itself (gie-facts §4.4): which endpoints hold each block hash, and per
//! endpoint an LRU of the hashes sent to it. When an LRU evicts a hash, the endpoint
//! leaves that hash's holder list, and an empty list is dropped. Each holder entry
//! also keeps the slot of the hash in that endpoint's LRU, so recording a block costs
//! one map lookup (two when it evicts another) rather than one per structure.
//!
//! Shared by every request: reads (matching) take a read lock, the update after each
//! pick and endpoint removal take the write lock, each for plain computation only.
//! Keys are xxh64 outputs and are used as their own map hash.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::lru::{Lru, NameBuild, Slot};
use crate::epp::endpoint::Candidate;
use crate::hash::IdentityBuild;

#[derive(Debug)]
struct Server {
    name: String,
    lru: Lru,
}

#[derive(Debug)]
struct Inner {
    /// Hash → the endpoints whose LRU holds it (usually one or two), each with the
    /// hash's slot in that LRU.
    holders: HashMap<u64, Holders, IdentityBuild>,
    ids: HashMap<String, u32, NameBuild>,
    /// By id; `None` for a removed endpoint whose id is free for reuse.
    servers: Vec<Option<Server>>,
    free: Vec<u32>,
    entries: usize,
}

/// Which endpoint was recently sent which prompt blocks.
#[derive(Debug)]
pub struct PrefixIndex {
    inner: RwLock<Inner>,
}

impl Default for PrefixIndex {
    fn default() -> Self {
        PrefixIndex::new()
    }
}

impl PrefixIndex {
    pub fn new() -> PrefixIndex {
        PrefixIndex {
            inner: RwLock::new(Inner {
                holders: HashMap::default(),
                ids: HashMap::default(),
                servers: Vec::new(),
                free: Vec::new(),
                entries: 0,
            }),
        }
    }

    // A panic while holding the lock leaves plain data that is still consistent
    // enough to route on (at worst a stale entry), so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Hashes held, summed over endpoints (GIE's `prefix_indexer_size`).
    pub fn len(&self) -> usize {
        self.read().entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Endpoints with an LRU.
    pub fn num_endpoints(&self) -> usize {
        self.read().ids.len()
    }

    /// A read view for matching; hold it only while walking one request's hashes.
    pub fn reader(&self) -> IndexReader<'_> {
        IndexReader { inner: self.read() }
    }

    /// Records that `hashes` were sent to endpoint `name` (GIE's PreRequest update).
    /// `capacity` sizes the endpoint's LRU if this is its first entry.
    pub fn insert(&self, name: &str, capacity: usize, hashes: &[u64]) {
        if hashes.is_empty() {
            return;
        }
        let mut guard = self.write();
        let inner = &mut *guard;
        let id = match inner.ids.get(name) {
            Some(&id) => id,
            None => {
                let server = Server {
                    name: name.to_string(),
                    lru: Lru::new(capacity),
                };
                let id = match inner.free.pop() {
                    Some(id) => {
                        inner.servers[id as usize] = Some(server);
                        id
                    }
                    None => {
                        inner.servers.push(Some(server));
                        (inner.servers.len() - 1) as u32
                    }
                };
                inner.ids.insert(name.to_string(), id);
                id
            }
        };
        let Some(server) = inner.servers[id as usize].as_mut() else {
            return;
        };
        for &h in hashes {
            // `None`: the endpoint already held `h` and it is now its most recent.
            // `Some(evicted)`: `h` is new to the endpoint, maybe displacing another.
            let inserted = match inner.holders.entry(h) {
                Entry::Occupied(mut e) => match e.get().slot_of(id) {
                    Some(slot) => {
                        server.lru.refresh(slot);
                        None
                    }
                    None => {
                        let (slot, evicted) = server.lru.insert(h);
                        e.get_mut().push(id, slot);
                        Some(evicted)
                    }
                },
                Entry::Vacant(e) => {
                    let (slot, evicted) = server.lru.insert(h);
                    e.insert(Holders::One(Holder { id, slot }));
                    Some(evicted)
                }
            };
            match inserted {
                None => {}
                // The new hash took the evicted one's slot: one in, one out.
                Some(Some(old)) => drop_holder(&mut inner.holders, old, id),
                Some(None) => inner.entries += 1,
            }
        }
    }

    /// Forgets endpoint `name` and every hash it held.
    pub fn remove(&self, name: &str) {
        let mut guard = self.write();
        let inner = &mut *guard;
        let Some(id) = inner.ids.remove(name) else {
            return;
        };
        if let Some(server) = inner.servers[id as usize].take() {
            debug_assert_eq!(server.name, name);
            inner.entries -= server.lru.len();
            for h in server.lru.keys() {
                drop_holder(&mut inner.holders, h, id);
            }
        }
        inner.free.push(id);
    }
}

/// The index under its read lock, for the greedy longest-prefix walk (gie-facts
/// §4.5): [`IndexReader::credit`] the request's hashes in order, in as many pieces as
/// convenient, until it reports the first hash nobody holds; then
/// [`IndexReader::collect`] the per-candidate counts.
pub struct IndexReader<'a> {
    inner: RwLockReadGuard<'a, Inner>,
}

impl IndexReader<'_> {
    /// Credits one block to every endpoint holding each hash, in order. Returns false
    /// at the first hash nobody holds: the walk ends there. `counts` (by endpoint id)
    /// and `touched` are scratch, zero and empty at the start of a walk.
    pub fn credit(&self, hashes: &[u64], counts: &mut Vec<u32>, touched: &mut Vec<u32>) -> bool {
        if counts.len() < self.inner.servers.len() {
            counts.resize(self.inner.servers.len(), 0);
        }
        for h in hashes {
            let Some(ids) = self.inner.holders.get(h) else {
                return false;
            };
            for &Holder { id, .. } in ids.as_slice() {
                let c = &mut counts[id as usize];
                if *c == 0 {
                    touched.push(id);
                }
                *c += 1;
            }
        }
        true
    }

    /// Writes each subset candidate's credited block count into `matched` (0 for
    /// endpoints the index does not know) and resets `counts` and `touched`.
    pub fn collect(
        &self,
        candidates: &[Candidate],
        subset: &[usize],
        counts: &mut [u32],
        touched: &mut Vec<u32>,
        matched: &mut [f64],
    ) {
        matched.fill(0.0);
        if touched.is_empty() {
            return;
        }
        for (m, &i) in matched.iter_mut().zip(subset) {
            if let Some(&id) = self.inner.ids.get(candidates[i].endpoint.name.as_str()) {
                *m = f64::from(counts[id as usize]);
            }
        }
        for &id in touched.iter() {
            counts[id as usize] = 0;
        }
        touched.clear();
    }
}

fn drop_holder(holders: &mut HashMap<u64, Holders, IdentityBuild>, hash: u64, id: u32) {
    if let Some(ids) = holders.get_mut(&hash)
        && !ids.remove(id)
    {
        holders.remove(&hash);
    }
}

/// One endpoint holding a hash: its id and the hash's slot in its LRU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Holder {
    id: u32,
    slot: Slot,
}

/// The endpoints holding one hash, in the order they were added, each at most once.
/// Almost every hash is held by exactly one endpoint, so that one lives inline and a
/// map entry stays at 24 bytes; the few shared ones (a hot system prompt's blocks)
/// spill to the heap.
#[derive(Debug)]
enum Holders {
    One(Holder),
    /// Two or more; rebuilt on each change, which is rare next to matching.
    Many(Box<[Holder]>),
}

// The point of the layout: a map entry (key and holders) in 24 bytes, half of what
// an inline array of four took.
const _: () = assert!(std::mem::size_of::<(u64, Holders)>() == 24);

impl Holders {
    fn as_slice(&self) -> &[Holder] {
        match self {
            Holders::One(h) => std::slice::from_ref(h),
            Holders::Many(v) => v,
        }
    }

    /// Where endpoint `id` keeps this hash, if it holds it.
    fn slot_of(&self, id: u32) -> Option<Slot> {
        self.as_slice().iter().find(|h| h.id == id).map(|h| h.slot)
    }

    fn push(&mut self, id: u32, slot: Slot) {
        let holder = Holder { id, slot };
        let more: Box<[Holder]> = match self {
            Holders::One(first) => Box::new([*first, holder]),
            Holders::Many(v) => v.iter().copied().chain([holder]).collect(),
        };
        *self = Holders::Many(more);
    }

    /// Removes endpoint `id`, keeping the others' order. Returns false when none is
    /// left, so the caller drops the entry.
    fn remove(&mut self, id: u32) -> bool {
        match self {
            Holders::One(h) => h.id != id,
            Holders::Many(v) => {
                let kept: Vec<Holder> = v.iter().copied().filter(|h| h.id != id).collect();
                *self = match kept.as_slice() {
                    [] => return false,
                    &[only] => Holders::One(only),
                    _ => Holders::Many(kept.into_boxed_slice()),
                };
                true
            }
        }
    }
}

//! Hashers for maps whose keys already are well-mixed 64-bit hashes (xxh64 outputs of
//! KV blocks and prompt blocks): the key is its own hash, which saves a SipHash per
//! lookup on hot paths (the engine's block pool, the picker's prefix index).
//!
//! Only for keys nobody outside can choose freely to collide: block hashes are
//! xxh64 of content, so crafting collisions means crafting xxh64 collisions.

use std::hash::{BuildHasherDefault, Hasher};

/// Uses a `u64` key as its own hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u64 keys, which these maps never use; still a hash
        // (FNV-1a's multiply).
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Builds [`IdentityHasher`]s.
pub type IdentityBuild = BuildHasherDefault<IdentityHasher>;

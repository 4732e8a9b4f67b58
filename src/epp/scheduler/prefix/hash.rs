//! The chained block hashes of a prompt (gie-facts §4.3), computed fast.
//!
//! Each block hash is `xxh64(block ‖ le64(previous hash))`. When a block is a whole
//! number of xxh64's 32-byte stripes (64 bytes by default), the stripe work depends
//! only on the block, and only the last 8 bytes (the previous hash) chain the blocks
//! together. So the stripes of all blocks are hashed first, independently (the CPU
//! overlaps them), and the short chained finish runs after: the same values as the
//! `xxhash-rust` crate (tests check it), without a copy per block and without
//! serialising the whole block's work on the chain. Other block sizes take the
//! crate's one-shot path.

use xxhash_rust::xxh64::{Xxh64, xxh64};

use crate::epp::request::LlmRequest;

// XXH64's primes, from the algorithm's specification.
const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const STRIPE: usize = 32;

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

fn lane(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// XXH64 (seed 0) of `block ‖ 8 more bytes`, up to the point where those 8 bytes
/// enter: the stripes over `block` (a non-empty multiple of 32 bytes), merged, plus
/// the total length.
fn stripes(block: &[u8]) -> u64 {
    let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
    for s in block.chunks_exact(STRIPE) {
        for (i, acc) in v.iter_mut().enumerate() {
            *acc = round(*acc, lane(s, i * 8));
        }
    }
    let mut h = v[0]
        .rotate_left(1)
        .wrapping_add(v[1].rotate_left(7))
        .wrapping_add(v[2].rotate_left(12))
        .wrapping_add(v[3].rotate_left(18));
    for x in v {
        h = merge(h, x);
    }
    h.wrapping_add(block.len() as u64 + 8)
}

/// Feeds the last 8 bytes (`tail`, little-endian) into a [`stripes`] state and
/// finishes the hash.
fn finish(mut h: u64, tail: u64) -> u64 {
    h ^= round(0, tail);
    h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// `h0 = xxh64(target model ‖ cache_salt)`, the chain's seed (not emitted).
pub fn seed_hash(request: &LlmRequest) -> u64 {
    let mut seed = Xxh64::new(0);
    seed.update(request.target_model.as_bytes());
    if let Some(salt) = request.cache_salt.as_deref() {
        seed.update(salt.as_bytes());
    }
    seed.digest()
}

/// Appends to `out` the chained hashes of the whole `block_bytes` blocks of `bytes`,
/// continuing the chain from `prev`: `h_i = xxh64(block_i ‖ le64(h_{i−1}))`, seed 0.
/// Returns the last hash (`prev` if there was no block). `buf` is scratch.
pub fn extend_chain(
    bytes: &[u8],
    block_bytes: usize,
    mut prev: u64,
    buf: &mut Vec<u8>,
    out: &mut Vec<u64>,
) -> u64 {
    let start = out.len();
    let blocks = bytes.chunks_exact(block_bytes.max(1));
    if block_bytes.is_multiple_of(STRIPE) {
        out.extend(blocks.map(stripes));
        for h in &mut out[start..] {
            prev = finish(*h, prev);
            *h = prev;
        }
        return prev;
    }
    out.reserve(blocks.len());
    for block in blocks {
        buf.clear();
        buf.extend_from_slice(block);
        buf.extend_from_slice(&prev.to_le_bytes());
        prev = xxh64(buf, 0);
        out.push(prev);
    }
    prev
}

/// The chained block hashes of one request (gie-facts §4.3): input past `max_blocks`
/// blocks and any trailing partial block are dropped. `buf` is scratch.
pub fn block_hashes(
    request: &LlmRequest,
    block_bytes: usize,
    max_blocks: usize,
    buf: &mut Vec<u8>,
    out: &mut Vec<u64>,
) {
    out.clear();
    let n = num_blocks(request, block_bytes, max_blocks);
    if n > 0 {
        let bytes = &request.prefix_bytes[..n * block_bytes];
        extend_chain(bytes, block_bytes, seed_hash(request), buf, out);
    }
}

/// How many blocks of `request` are hashed.
pub fn num_blocks(request: &LlmRequest, block_bytes: usize, max_blocks: usize) -> usize {
    (request.prefix_bytes.len() / block_bytes.max(1)).min(max_blocks)
}

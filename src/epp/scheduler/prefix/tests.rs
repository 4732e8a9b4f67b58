//! Prefix hashing (gie-facts §4.3), greedy matching (§4.5), LRU eviction and endpoint
//! removal in the index, and the parameters that size blocks and LRUs (§4.1).

use xxhash_rust::xxh64::Xxh64;

use super::*;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::testing::{pod, request};

fn hashes(req: &LlmRequest, block_bytes: usize, max_blocks: usize) -> Vec<u64> {
    let mut out = Vec::new();
    block_hashes(req, block_bytes, max_blocks, &mut Vec::new(), &mut out);
    out
}

/// The chain computed another way: streaming hashers instead of one-shot buffers.
fn reference(model: &str, salt: &str, prompt: &[u8], block: usize) -> Vec<u64> {
    let mut h = Xxh64::new(0);
    h.update(model.as_bytes());
    h.update(salt.as_bytes());
    let mut prev = h.digest();
    prompt
        .chunks_exact(block)
        .map(|b| {
            let mut h = Xxh64::new(0);
            h.update(b);
            h.update(&prev.to_le_bytes());
            prev = h.digest();
            prev
        })
        .collect()
}

#[test]
fn hashes_chain_blocks_seeded_by_model_and_salt() {
    let prompt: String = (0..200)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut req = request("llama", &prompt);
    // 200 bytes: three full 64-byte blocks; the 8-byte tail is dropped.
    let plain = hashes(&req, 64, 256);
    assert_eq!(plain, reference("llama", "", prompt.as_bytes(), 64));
    assert_eq!(plain.len(), 3);
    assert_eq!(hashes(&req, 64, 2), plain[..2]);
    assert_eq!(hashes(&req, 32, 256).len(), 6);
    // Whole-stripe sizes take the split path, others the crate's one-shot path; both
    // must equal plain XXH64 of `block ‖ le64(prev)`.
    for block in [32, 40, 64, 72, 128, 200] {
        let want = reference("llama", "", prompt.as_bytes(), block);
        assert_eq!(hashes(&req, block, 256), want, "block {block}");
    }
    req.cache_salt = Some("s1".into());
    let salted = hashes(&req, 64, 256);
    assert_eq!(salted, reference("llama", "s1", prompt.as_bytes(), 64));
    assert_ne!(salted[0], plain[0]);
    req.cache_salt = None;
    req.target_model = "other".into();
    assert_ne!(hashes(&req, 64, 256)[0], plain[0]);
    assert!(hashes(&request("m", &"x".repeat(63)), 64, 256).is_empty());
}

/// Scores every candidate against `index` for `prompt` (64-byte blocks), with a fresh
/// scratch and with one that already hashed the whole prompt.
fn check(index: &PrefixIndex, prompt: &str, cands: &[Candidate], want: &[f64]) {
    let req = request("m", prompt);
    let subset: Vec<usize> = (0..cands.len()).collect();
    let mut warm = PrefixScratch::default();
    warm.hashes(&req, 64, 256);
    for mut scratch in [PrefixScratch::default(), warm] {
        let mut got = vec![0.0; cands.len()];
        scratch.match_ratios(&req, index, 64, 256, cands, &subset, &mut got);
        assert_eq!(got, want, "prompt of {} bytes", prompt.len());
        // The walk leaves its counters clean for the next request.
        scratch.match_ratios(&req, index, 64, 256, cands, &subset, &mut got);
        assert_eq!(got, want, "again, prompt of {} bytes", prompt.len());
    }
}

fn insert(index: &PrefixIndex, name: &str, capacity: usize, prompt: &str) {
    index.insert(name, capacity, &hashes(&request("m", prompt), 64, 256));
}

#[test]
fn greedy_longest_prefix_match() {
    let a: String = "abcd".repeat(64); // 256 bytes, 4 blocks
    let index = PrefixIndex::new();
    insert(&index, "pod-0", 100, &a);
    insert(&index, "pod-1", 100, &a[..128]);
    let cands = [pod(0, 0, 0.), pod(1, 0, 0.), pod(2, 0, 0.)];
    check(&index, &a, &cands, &[1.0, 0.5, 0.0]);
    // Longer than one walk batch: 40 blocks, all on pod-2 (the walk resumes across
    // batches and stops in the middle of one).
    let long: String = "0123456789abcdef".repeat(160);
    insert(&index, "pod-2", 100, &long);
    check(&index, &long, &cands, &[0.0, 0.0, 1.0]);
    check(
        &index,
        &format!("{}!", &long[..1000]),
        &cands,
        &[0.0, 0.0, 1.0],
    );
    let mut tail = long[..1800].to_string();
    tail.push_str(&"?".repeat(760));
    check(&index, &tail, &cands, &[0.0, 0.0, 28.0 / 40.0]);
    index.remove("pod-2");
    // Extending the prompt keeps the matched blocks and adds unmatched ones.
    check(&index, &format!("{a}{a}"), &cands, &[0.5, 0.25, 0.0]);
    // A different first block matches nothing (the chain makes later blocks differ too).
    check(&index, &format!("z{}", &a[1..]), &cands, &[0.0, 0.0, 0.0]);
    assert_eq!(index.len(), 6);

    index.remove("pod-0");
    check(&index, &a, &cands, &[0.0, 0.5, 0.0]);
    assert_eq!((index.len(), index.num_endpoints()), (2, 1));
    // The freed id is reused cleanly.
    insert(&index, "pod-2", 100, &a);
    check(&index, &a, &cands, &[0.0, 0.5, 1.0]);
}

#[test]
fn lru_eviction_drops_holders_and_stops_the_walk() {
    let a: String = "wxyz".repeat(64);
    let index = PrefixIndex::new();
    // Capacity 2: blocks 1 and 2 are evicted by 3 and 4.
    insert(&index, "pod-0", 2, &a);
    assert_eq!(index.len(), 2);
    // GIE's walk stops at the first hash nobody holds, so nothing matches.
    check(&index, &a, &[pod(0, 0, 0.)], &[0.0]);
    // Re-sending the prompt refreshes the head of the chain.
    insert(&index, "pod-0", 2, &a[..128]);
    check(&index, &a, &[pod(0, 0, 0.)], &[0.5]);
}

#[test]
fn parameters_size_blocks_and_lrus() {
    let p = PrefixParams::default();
    let mut c = pod(0, 0, 0.);
    assert_eq!(p.block_tokens(std::slice::from_ref(&c)), 16);
    assert_eq!(p.lru_capacity(&c), 31_250);
    let m = c.metrics.as_mut().unwrap();
    m.cache_block_size = Some(8);
    m.cache_num_blocks = Some(1000);
    assert_eq!(p.block_tokens(std::slice::from_ref(&c)), 8);
    assert_eq!(p.lru_capacity(&c), 1000);
    let fixed = PrefixParams {
        auto_tune: false,
        ..PrefixParams::default()
    };
    assert_eq!(fixed.block_tokens(std::slice::from_ref(&c)), 16);
    assert_eq!(fixed.lru_capacity(&c), 31_250);
    let by_tokens = PrefixParams {
        max_prefix_tokens_to_match: 40,
        ..PrefixParams::default()
    };
    assert_eq!(by_tokens.max_blocks(16), 2);
    assert_eq!(p.max_blocks(16), 256);
}

#[test]
fn recorded_hashes_are_reused_or_recomputed_alike() {
    let prompt: String = (0..300)
        .map(|i| char::from(b'a' + (i % 23) as u8))
        .collect();
    let req = request("m", &prompt);
    let matcher = PrefixMatcher::new(PrefixParams::default());
    let cands = [pod(0, 0, 0.), pod(1, 0, 0.)];
    // Record with the decision's scratch (which hashed only the first batch before
    // the walk missed) on pod-0, and with a fresh scratch on pod-1.
    let mut scratch = PrefixScratch::default();
    let mut ratios = [0.0; 2];
    matcher.ratios(&req, &cands, &[0, 1], &mut scratch, &mut ratios);
    assert_eq!(ratios, [0.0, 0.0]);
    matcher.record(&req, &cands[0], &mut scratch);
    matcher.record(&req, &cands[1], &mut PrefixScratch::default());
    assert_eq!(matcher.index.len(), 2 * 4);
    let mut fresh = PrefixScratch::default();
    matcher.ratios(&req, &cands, &[0, 1], &mut fresh, &mut ratios);
    assert_eq!(ratios, [1.0, 1.0]);
    // A scratch made for another request is not reused for this one.
    let other = request("m", &"z".repeat(300));
    matcher.record(&other, &cands[0], &mut scratch);
    matcher.ratios(
        &other,
        &cands,
        &[0, 1],
        &mut PrefixScratch::default(),
        &mut ratios,
    );
    assert_eq!(ratios, [1.0, 0.0]);
}

/// The index against a plain model of it (per endpoint, a list of its hashes in
/// recency order, capped at its capacity), over seeded random inserts and removals
/// drawn from a small set of hashes so that refreshes, evictions and shared holders
/// all happen: after every step, each hash's holders and the entry count agree.
#[test]
fn the_index_matches_a_plain_model_of_it() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let index = PrefixIndex::new();
    let capacities = [3usize, 8, 1, 20];
    let cands: Vec<Candidate> = (0..capacities.len()).map(|i| pod(i, 0, 0.)).collect();
    let subset: Vec<usize> = (0..cands.len()).collect();
    // Most recent first.
    let mut model: Vec<Vec<u64>> = vec![Vec::new(); capacities.len()];
    for step in 0..3_000 {
        let e = rng.random_range(0..capacities.len());
        let name = format!("pod-{e}");
        if rng.random_range(0..40) == 0 {
            index.remove(&name);
            model[e].clear();
        } else {
            let n = rng.random_range(1..6);
            let hashes: Vec<u64> = (0..n).map(|_| rng.random_range(0..30)).collect();
            index.insert(&name, capacities[e], &hashes);
            for &h in &hashes {
                model[e].retain(|&x| x != h);
                model[e].insert(0, h);
                model[e].truncate(capacities[e]);
            }
        }
        let total: usize = model.iter().map(Vec::len).sum();
        assert_eq!(index.len(), total, "entries after step {step}");
        let reader = index.reader();
        let (mut counts, mut touched) = (Vec::new(), Vec::new());
        for h in 0..30u64 {
            let mut got = vec![0.0; cands.len()];
            reader.credit(&[h], &mut counts, &mut touched);
            reader.collect(&cands, &subset, &mut counts, &mut touched, &mut got);
            let want: Vec<f64> = model
                .iter()
                .map(|held| if held.contains(&h) { 1.0 } else { 0.0 })
                .collect();
            assert_eq!(got, want, "holders of {h} after step {step}");
        }
    }
}

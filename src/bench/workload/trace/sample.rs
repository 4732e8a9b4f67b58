//! The generator of the bundled trace sample, `testdata/traces/chat-service.jsonl`: a
//! made-up chat service in Mooncake's trace format, so the replay has something to
//! replay out of the box. It is synthetic (no production trace may be redistributed
//! here) and says nothing about any real service; bring your own trace for answers
//! about your traffic.
//!
//! Its shape is the one that makes a trace worth replaying rather than a rate:
//! - **Bursts.** Sessions start as a Poisson process whose rate switches between a
//!   calm and a busy level (four times the calm one) every few seconds.
//! - **Shared system prompts.** Every session belongs to one of a few apps, and every
//!   request of an app starts with the app's system prompt.
//! - **Growing histories.** A session's next turn comes after a think time and resends
//!   the conversation so far: its `hash_ids` start with the previous turn's full
//!   blocks, then the reply's and the new message's.
//!
//! Blocks are [`SAMPLE_BLOCK_TOKENS`] tokens (the scenario sets `block_tokens` to
//! match); a prompt's last, partial block gets an id of its own. Lengths are
//! log-normal. The output is one JSON object per line and depends only on
//! `(seed, sessions)`: `cargo xtask gen-trace` rewrites the file, and a test checks
//! that the committed one is what it writes.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp};

use super::super::text::log_normal_length;

/// Where the sample lives, relative to the workspace root.
pub const SAMPLE_PATH: &str = "testdata/traces/chat-service.jsonl";
pub const SAMPLE_SEED: u64 = 11;
pub const SAMPLE_SESSIONS: usize = 800;
/// Tokens per `hash_ids` entry in the sample.
pub const SAMPLE_BLOCK_TOKENS: usize = 64;

/// Apps, and the length of each one's system prompt in blocks.
const APP_SYSTEM_BLOCKS: [usize; 4] = [4, 12, 24, 40];
/// Sessions started per second when calm; busy spells start four times as many.
const CALM_SESSIONS_PER_S: f64 = 2.0;
const BUSY_FACTOR: f64 = 4.0;
/// Mean length of a calm or busy spell, seconds.
const SPELL_S: f64 = 8.0;
/// Turns per session: geometric with this mean, at most `MAX_TURNS`.
const MEAN_TURNS: f64 = 3.0;
const MAX_TURNS: usize = 10;
/// Mean think time between a reply and the next message, seconds.
const THINK_S: f64 = 15.0;
/// Log-normal lengths, tokens: median and σ of the logarithm.
const MESSAGE: (f64, f64) = (80.0, 1.0);
const REPLY: (f64, f64) = (180.0, 0.7);

fn length(rng: &mut StdRng, shape: (f64, f64)) -> usize {
    log_normal_length(rng, shape, 4, 4096)
}

/// One request before sorting: its time, lengths and blocks.
struct Row {
    at_ms: u64,
    input: usize,
    output: usize,
    blocks: Vec<u64>,
}

/// The sample: `sessions` chat sessions in Mooncake's JSON Lines, by arrival time.
pub fn generate_sample(seed: u64, sessions: usize) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next_id = 0u64;
    let mut fresh = |n: usize| -> Vec<u64> {
        let ids = (next_id..next_id + n as u64).collect();
        next_id += n as u64;
        ids
    };
    let systems: Vec<Vec<u64>> = APP_SYSTEM_BLOCKS.iter().map(|&n| fresh(n)).collect();
    let think = Exp::new(1.0 / THINK_S).expect("positive");
    let spell = Exp::new(1.0 / SPELL_S).expect("positive");
    let (mut t, mut busy, mut spell_ends) = (0.0f64, false, spell.sample(&mut rng));
    let mut rows = Vec::new();
    for _ in 0..sessions {
        // The next session start, in whichever spell it falls.
        loop {
            let rate = CALM_SESSIONS_PER_S * if busy { BUSY_FACTOR } else { 1.0 };
            let gap = Exp::new(rate).expect("positive").sample(&mut rng);
            if t + gap < spell_ends {
                t += gap;
                break;
            }
            t = spell_ends;
            busy = !busy;
            spell_ends += spell.sample(&mut rng);
        }
        let app = rng.random_range(0..systems.len());
        // The conversation so far: the system prompt's blocks, then history blocks.
        let mut full_blocks = systems[app].clone();
        let mut tokens = full_blocks.len() * SAMPLE_BLOCK_TOKENS;
        let mut at = t;
        let turns = (1..MAX_TURNS)
            .take_while(|_| rng.random_bool(1.0 - 1.0 / MEAN_TURNS))
            .count()
            + 1;
        for _ in 0..turns {
            tokens += length(&mut rng, MESSAGE);
            // New full blocks of history, then the partial tail's own id.
            let full = tokens / SAMPLE_BLOCK_TOKENS;
            let grown = full - full_blocks.len();
            full_blocks.extend(fresh(grown));
            let mut blocks = full_blocks.clone();
            if !tokens.is_multiple_of(SAMPLE_BLOCK_TOKENS) {
                blocks.extend(fresh(1));
            }
            let output = length(&mut rng, REPLY);
            rows.push(Row {
                at_ms: (at * 1000.0).round() as u64,
                input: tokens,
                output,
                blocks,
            });
            tokens += output;
            // The reply takes a few seconds to read; then the user thinks.
            at += output as f64 * 0.02 + think.sample(&mut rng);
        }
    }
    rows.sort_by_key(|r| r.at_ms);
    let first = rows.first().map_or(0, |r| r.at_ms);
    let mut out = String::new();
    for r in rows {
        let ids: Vec<String> = r.blocks.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": {}, \"hash_ids\": [{}]}}\n",
            r.at_ms - first,
            r.input,
            r.output,
            ids.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::TraceSpec;

    #[test]
    fn the_committed_sample_is_fresh_and_shaped_as_documented() {
        let committed = std::fs::read_to_string(SAMPLE_PATH).unwrap();
        assert!(
            committed == generate_sample(SAMPLE_SEED, SAMPLE_SESSIONS),
            "{SAMPLE_PATH} is stale: run `cargo xtask gen-trace`"
        );
        assert!(committed.len() < 1_000_000, "{} bytes", committed.len());
        let trace = TraceSpec {
            path: SAMPLE_PATH.into(),
            block_tokens: SAMPLE_BLOCK_TOKENS,
            chat: false,
            num_requests: None,
        }
        .read()
        .unwrap();
        let n = trace.entries.len();
        assert!(n > SAMPLE_SESSIONS, "{n} requests");
        // Every request starts with one of the apps' system prompts.
        let starts: std::collections::HashSet<u64> =
            trace.entries.iter().map(|e| e.blocks[0]).collect();
        assert!(starts.len() <= APP_SYSTEM_BLOCKS.len(), "{starts:?}");
        for e in &trace.entries {
            assert_eq!(e.blocks.len(), e.input_tokens.div_ceil(SAMPLE_BLOCK_TOKENS));
        }
        // Bursty: per-second arrival counts vary well beyond a Poisson process's
        // (whose variance equals its mean).
        let secs = trace.span().ceil() as usize + 1;
        let mut per_s = vec![0f64; secs];
        for e in &trace.entries {
            per_s[e.at as usize] += 1.0;
        }
        let mean = per_s.iter().sum::<f64>() / secs as f64;
        let var = per_s.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / secs as f64;
        assert!(var > 2.0 * mean, "variance {var} against mean {mean}");
    }

    #[test]
    fn the_generator_is_seeded() {
        assert_eq!(generate_sample(3, 20), generate_sample(3, 20));
        assert_ne!(generate_sample(3, 20), generate_sample(4, 20));
        assert_eq!(generate_sample(3, 0), "");
    }
}

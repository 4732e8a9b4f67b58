//! Production traffic from a trace file: each request's arrival time and token counts,
//! and, where the trace records it, which prompt blocks it shares with earlier ones.
//!
//! Formats, told apart by the file's first non-blank character:
//! - **JSON Lines**, Mooncake's trace format (also what NVIDIA's AIPerf and dynamo's
//!   tools replay): one object per line with `timestamp` (milliseconds from the first
//!   request), `input_length`, `output_length` and optionally `hash_ids`, the ids of the
//!   prompt's blocks of `block_tokens` tokens (512 in Mooncake's traces). Two requests
//!   whose `hash_ids` start alike share that prefix of their prompts.
//! - **CSV with a header row**, with columns found by name: the arrival time from
//!   `TIMESTAMP` (Azure's LLM inference traces: `2023-11-16 18:15:46.6805900`, or
//!   seconds), `Timestamp` (BurstGPT, seconds) or `arrived_at` (Vidur, seconds); the
//!   prompt from `ContextTokens`, `Request tokens` or `num_prefill_tokens`; the output
//!   from `GeneratedTokens`, `Response tokens` or `num_decode_tokens`. Other columns are
//!   ignored.
//!
//! A trace carries lengths, not text. Prompts are made of seeded filler words with the
//! exact token count (`text.rs`): a block of `hash_ids` is the same text wherever it
//! appears, so the prefix sharing the trace records reaches the simulator's prefix cache
//! and the picker's prefix index; the rest of a prompt is text of its own. An output of
//! 0 tokens (a failed request in BurstGPT) is asked for as 1, so the arrival pattern
//! stays whole. Bad rows are errors naming the file and line.

pub mod sample;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::text::push_words_with_ids;
use super::{ChatMessage, PromptText, WorkloadError, WorkloadRequest};

/// Mooncake's block size for `hash_ids`, tokens.
pub const MOONCAKE_BLOCK_TOKENS: usize = 512;

/// The `trace` workload as a scenario states it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSpec {
    /// A JSON Lines (Mooncake) or CSV (Azure, BurstGPT, Vidur) trace.
    pub path: PathBuf,
    /// Tokens per `hash_ids` entry.
    #[serde(default = "default_block_tokens")]
    pub block_tokens: usize,
    /// Send as one user chat message instead of completions text.
    #[serde(default)]
    pub chat: bool,
    /// Only the trace's first `num_requests` requests; absent means all of them.
    #[serde(default)]
    pub num_requests: Option<usize>,
}

fn default_block_tokens() -> usize {
    MOONCAKE_BLOCK_TOKENS
}

/// One request of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEntry {
    /// Seconds from the trace's first request.
    pub at: f64,
    pub input_tokens: usize,
    pub output_tokens: usize,
    /// Prompt block ids (`hash_ids`); empty when the trace does not say.
    pub blocks: Vec<u64>,
}

/// A trace read from its file, in arrival order, the first request at 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub path: PathBuf,
    pub entries: Vec<TraceEntry>,
}

impl Trace {
    /// Seconds from the first arrival to the last.
    pub fn span(&self) -> f64 {
        self.entries.last().map_or(0.0, |e| e.at)
    }

    /// The length of one pass when the trace is replayed over and over: its span plus
    /// one mean gap, so the wrap from the last request to the first is an ordinary gap.
    /// `None` when the trace has no pace (fewer than two requests, or all at once).
    pub fn period(&self) -> Option<f64> {
        let n = self.entries.len();
        let span = self.span();
        (n >= 2 && span > 0.0).then(|| span + span / (n - 1) as f64)
    }

    /// Requests per second at the trace's own pace.
    pub fn native_rate(&self) -> Option<f64> {
        Some(self.entries.len() as f64 / self.period()?)
    }

    /// The arrivals in the trace-time window `[start, start + len)` (seconds, the trace
    /// repeated end to end), each as (offset from `start`, entry index), in order.
    pub fn window(&self, start: f64, len: f64) -> Vec<(f64, usize)> {
        let Some(period) = self.period() else {
            return Vec::new();
        };
        let mut base = (start / period).floor() * period;
        let mut j = self.entries.partition_point(|e| base + e.at < start);
        let mut out = Vec::new();
        loop {
            if j == self.entries.len() {
                base += period;
                j = 0;
            }
            let t = base + self.entries[j].at;
            if t >= start + len {
                return out;
            }
            out.push((t - start, j));
            j += 1;
        }
    }
}

impl TraceSpec {
    /// Reads and checks the file, keeping its first `num_requests` requests in arrival
    /// order when that is set: the trace as the scenario replays it.
    pub fn read(&self) -> Result<Trace, WorkloadError> {
        let text = std::fs::read_to_string(&self.path).map_err(|error| WorkloadError::Io {
            path: self.path.clone(),
            error,
        })?;
        let mut entries = match text.trim_start().chars().next() {
            Some('{') => parse_jsonl(&self.path, &text)?,
            Some(_) => parse_csv(&self.path, &text)?,
            None => Vec::new(),
        };
        if entries.is_empty() {
            return Err(WorkloadError::Invalid(format!(
                "{}: the trace has no requests",
                self.path.display()
            )));
        }
        if self.block_tokens == 0 {
            return Err(WorkloadError::Invalid(
                "trace: block_tokens must be at least 1".into(),
            ));
        }
        if self.num_requests == Some(0) {
            return Err(WorkloadError::Invalid(
                "trace: num_requests must be at least 1".into(),
            ));
        }
        // Stable: requests logged at the same instant keep the file's order.
        entries.sort_by(|a, b| a.at.total_cmp(&b.at));
        entries.truncate(self.num_requests.unwrap_or(usize::MAX));
        let first = entries[0].at;
        for e in &mut entries {
            e.at -= first;
        }
        Ok(Trace {
            path: self.path.clone(),
            entries,
        })
    }

    /// The trace's requests in arrival order ([`TraceSpec::read`]'s): a plan sets
    /// `num_requests` to what its stages send, so a trace of millions of rows costs
    /// the text of those alone.
    pub(crate) fn requests(&self, seed: u64) -> Result<Vec<WorkloadRequest>, WorkloadError> {
        let trace = self.read()?;
        let indices: Vec<usize> = (0..trace.entries.len()).collect();
        Ok(self.requests_of(&trace, &indices, seed))
    }

    /// The requests of the entries at `indices` of an already read trace, in that
    /// order; each depends only on its entry, its index and the seed.
    pub(crate) fn requests_of(
        &self,
        trace: &Trace,
        indices: &[usize],
        seed: u64,
    ) -> Vec<WorkloadRequest> {
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        crate::sim::tokens::map_with_encoders(indices, threads, 64, |_, &i| {
            self.request(&trace.entries[i], i, seed)
        })
    }

    /// One entry's request: its shared blocks' text, then text of its own.
    fn request(&self, entry: &TraceEntry, index: usize, seed: u64) -> WorkloadRequest {
        let mut text = String::with_capacity(entry.input_tokens * 6);
        let mut ids = Vec::with_capacity(entry.input_tokens);
        let mut left = entry.input_tokens.max(1);
        for &block in &entry.blocks {
            if left == 0 {
                break;
            }
            let n = left.min(self.block_tokens);
            // The same block id gives the same words wherever it appears, and a
            // shorter take of it is a prefix of the whole block.
            let mut rng = StdRng::seed_from_u64(seed ^ block.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            push_words_with_ids(&mut rng, n, &mut text, &mut ids);
            left -= n;
        }
        if left > 0 {
            let own = (index as u64).wrapping_mul(0xd1b5_4a32_d192_ed03) ^ 0x0074_7261_6365;
            let mut rng = StdRng::seed_from_u64(seed ^ own);
            push_words_with_ids(&mut rng, left, &mut text, &mut ids);
        }
        let output = entry.output_tokens.max(1);
        if self.chat {
            let prompt = PromptText::Chat(vec![ChatMessage {
                role: "user".into(),
                content: text,
            }]);
            return WorkloadRequest::new(prompt, output);
        }
        debug_assert_eq!(ids, crate::sim::tokens::encode(&text));
        WorkloadRequest::with_tokens(PromptText::Text(text), ids, output)
    }
}

/// Mooncake's JSON Lines.
fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<TraceEntry>, WorkloadError> {
    #[derive(Deserialize)]
    struct Line {
        timestamp: f64,
        input_length: usize,
        output_length: usize,
        #[serde(default)]
        hash_ids: Vec<u64>,
    }
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line).map_err(|e| malformed(path, i, e.to_string()))?;
        if !(l.timestamp >= 0.0 && l.timestamp.is_finite()) {
            return Err(malformed(
                path,
                i,
                format!("timestamp {} is not a time", l.timestamp),
            ));
        }
        entries.push(TraceEntry {
            at: l.timestamp / 1000.0,
            input_tokens: l.input_length,
            output_tokens: l.output_length,
            blocks: l.hash_ids,
        });
    }
    Ok(entries)
}

/// Column names each field is found by, in the order tried.
const TIME_COLUMNS: [&str; 3] = ["TIMESTAMP", "Timestamp", "arrived_at"];
const INPUT_COLUMNS: [&str; 3] = ["ContextTokens", "Request tokens", "num_prefill_tokens"];
const OUTPUT_COLUMNS: [&str; 3] = ["GeneratedTokens", "Response tokens", "num_decode_tokens"];

/// CSV with a header row (Azure, BurstGPT, Vidur).
fn parse_csv(path: &Path, text: &str) -> Result<Vec<TraceEntry>, WorkloadError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((h, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = split_csv(header);
    let column = |wanted: &[&str; 3], what: &str| {
        wanted
            .iter()
            .find_map(|w| names.iter().position(|n| n == w))
            .ok_or_else(|| {
                malformed(
                    path,
                    h,
                    format!(
                        "no {what} column: the header needs one of {} (it has {})",
                        wanted.join(", "),
                        names.join(", ")
                    ),
                )
            })
    };
    let (t, i, o) = (
        column(&TIME_COLUMNS, "arrival time")?,
        column(&INPUT_COLUMNS, "prompt token")?,
        column(&OUTPUT_COLUMNS, "output token")?,
    );
    let mut entries = Vec::new();
    for (n, line) in lines {
        let fields = split_csv(line);
        let field = |k: usize, name: &str| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| malformed(path, n, format!("{} fields, no {name}", fields.len())))
        };
        let count = |k: usize| -> Result<usize, WorkloadError> {
            let v = field(k, names[k])?;
            v.parse::<f64>()
                .ok()
                .filter(|x| *x >= 0.0 && x.is_finite())
                .map(|x| x.round() as usize)
                .ok_or_else(|| {
                    malformed(path, n, format!("{}: {v:?} is not a token count", names[k]))
                })
        };
        let time = field(t, names[t])?;
        let at = parse_time(time)
            .ok_or_else(|| malformed(path, n, format!("{}: {time:?} is not a time", names[t])))?;
        entries.push(TraceEntry {
            at,
            input_tokens: count(i)?,
            output_tokens: count(o)?,
            blocks: Vec::new(),
        });
    }
    Ok(entries)
}

/// One CSV line's fields, surrounding quotes and spaces removed. Trace columns hold
/// numbers, times and model names, none with a comma inside.
fn split_csv(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect()
}

/// Seconds, from a number of seconds or a `YYYY-MM-DD HH:MM:SS[.fraction]` date and
/// time (UTC; only differences matter).
fn parse_time(s: &str) -> Option<f64> {
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some(secs);
    }
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.trim_end_matches('Z').splitn(3, ':');
    let (hh, mm) = (
        t.next()?.parse::<u32>().ok()?,
        t.next()?.parse::<u32>().ok()?,
    );
    let ss = t.next()?.parse::<f64>().ok()?;
    if hh > 23 || mm > 59 || !(0.0..61.0).contains(&ss) {
        return None;
    }
    let days = days_from_civil(y, m, day);
    Some(days as f64 * 86_400.0 + f64::from(hh * 3600 + mm * 60) + ss)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Count from March, so the leap day ends a year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// An error at 0-based `line` of the file.
fn malformed(path: &Path, line: usize, message: String) -> WorkloadError {
    WorkloadError::BadTrace {
        path: path.to_path_buf(),
        line: line + 1,
        message,
    }
}

#[cfg(test)]
mod tests;

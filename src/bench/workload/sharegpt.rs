//! ShareGPT: the real conversation file, vLLM's filter, and the bundled sample.
//!
//! The format is a JSON array of `{"id", "conversations": [{"from", "value"}, …]}`
//! (sim-facts §5). Loading tolerates unknown fields, any `from` value, a missing
//! `conversations` (such entries are dropped, as vLLM drops them) and a non-string
//! `id`; anything else malformed is an error naming the file and the entry (`[12]…`),
//! never a panic. The file is read through a buffered reader, never slurped whole.
//!
//! [`ShareGptSpec`] reproduces vLLM's `ShareGPTDataset` (sim-facts §5): keep entries
//! with ≥ 2 turns, shuffle with the seed, prompt = first turn, completion = second,
//! lengths from the tokenizer (`cl100k_base` here), drop by [`is_valid_sequence`],
//! stop at the requested count and, when too few survive, oversample with replacement.
//! The shuffle uses our seeded RNG, not Python's, so the picked entries differ from
//! vLLM's for the same seed; the rule is the same.
//!
//! The bundled `testdata/sharegpt/sample.json` comes from [`generate_sample`]; see
//! [`sample`] for how it is built and why its lengths look like ShareGPT's.

pub mod sample;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::de::{DeserializeOwned, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{ChatMessage, PromptText, WorkloadError, WorkloadRequest};
use crate::sim::tokens;

pub use sample::{SAMPLE_CONVERSATIONS, SAMPLE_PATH, SAMPLE_SEED, generate_sample};

/// vLLM `is_valid_sequence` bounds, tokens.
pub const MIN_LEN: usize = 4;
pub const MAX_PROMPT_LEN: usize = 1024;
pub const MAX_TOTAL_LEN: usize = 2048;

/// One conversation of the file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Conversation {
    /// The entry's `id`; a number is kept as its JSON text, a missing one is empty.
    #[serde(default, deserialize_with = "id_text")]
    pub id: String,
    #[serde(default)]
    pub conversations: Vec<Turn>,
}

/// One message: `from` is usually `human` or `gpt`, but any text is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Turn {
    #[serde(default)]
    pub from: String,
    pub value: String,
}

fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Reads a ShareGPT file, every turn of every conversation. The whole file is read
/// first: serde_json parses a slice several times faster than a reader (the real
/// 600+ MB file is read in seconds), and the bytes are freed once parsed.
pub fn load(path: &Path) -> Result<Vec<Conversation>, WorkloadError> {
    parse(path, &read(path)?)
}

/// Reads a ShareGPT file keeping only each conversation's first two turns, all that
/// single-exchange workloads (and vLLM's filter) look at: the real file's later
/// turns are most of its text, so they are skipped as they are parsed.
pub fn load_first_exchanges(path: &Path) -> Result<Vec<Conversation>, WorkloadError> {
    parse_first_exchanges(path, &read(path)?)
}

/// [`parse`], keeping each conversation's first two turns.
pub fn parse_first_exchanges(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<Conversation>, WorkloadError> {
    let heads: Vec<Head> = parse_as(path, bytes)?;
    Ok(heads.into_iter().map(Conversation::from).collect())
}

fn read(path: &Path) -> Result<Vec<u8>, WorkloadError> {
    std::fs::read(path).map_err(|error| WorkloadError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// Parses ShareGPT data; `path` only names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Conversation>, WorkloadError> {
    parse_as(path, bytes)
}

fn parse_as<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<Vec<T>, WorkloadError> {
    let malformed = |at: String, e: &serde_json::Error| WorkloadError::Malformed {
        path: path.to_path_buf(),
        at,
        message: e.to_string(),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let data: Vec<T> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| malformed(e.path().to_string(), e.inner()))?;
    de.end()
        .map_err(|e| malformed("the end of the array".into(), &e))?;
    Ok(data)
}

/// A conversation read with its first two turns only.
#[derive(Deserialize)]
struct Head {
    #[serde(default, deserialize_with = "id_text")]
    id: String,
    #[serde(default, deserialize_with = "first_two_turns")]
    conversations: Vec<Turn>,
}

impl From<Head> for Conversation {
    fn from(h: Head) -> Conversation {
        Conversation {
            id: h.id,
            conversations: h.conversations,
        }
    }
}

/// The first two turns of a `conversations` array; the rest are checked to be JSON
/// and dropped unread.
fn first_two_turns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Turn>, D::Error> {
    struct FirstTwo;
    impl<'de> Visitor<'de> for FirstTwo {
        type Value = Vec<Turn>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of turns")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Turn>, A::Error> {
            let mut turns = Vec::with_capacity(2);
            while turns.len() < 2 {
                match seq.next_element::<Turn>()? {
                    Some(t) => turns.push(t),
                    None => return Ok(turns),
                }
            }
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(turns)
        }
    }
    d.deserialize_seq(FirstTwo)
}

/// vLLM's `is_valid_sequence` with its defaults (min 4, prompt ≤ 1024, total ≤ 2048).
/// `check_output` is false when the output length is overridden, as in vLLM.
pub fn is_valid_sequence(prompt_len: usize, output_len: usize, check_output: bool) -> bool {
    !(prompt_len < MIN_LEN
        || (check_output && output_len < MIN_LEN)
        || prompt_len > MAX_PROMPT_LEN
        || prompt_len + output_len > MAX_TOTAL_LEN)
}

/// A conversation's first exchange, tokenised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub prompt: String,
    /// The prompt's token ids (as completions text; a chat request adds its template).
    pub prompt_ids: Vec<u32>,
    pub prompt_len: usize,
    pub output_len: usize,
}

/// The first exchange of `c` if it has ≥ 2 turns, whether or not it is valid.
pub fn first_exchange(c: &Conversation) -> Option<Exchange> {
    first_exchange_with(c, tokens::encode)
}

fn first_exchange_with(c: &Conversation, encode: impl Fn(&str) -> Vec<u32>) -> Option<Exchange> {
    match c.conversations.as_slice() {
        [prompt, completion, ..] => {
            let prompt_ids = encode(&prompt.value);
            Some(Exchange {
                prompt: prompt.value.clone(),
                prompt_len: prompt_ids.len(),
                prompt_ids,
                output_len: encode(&completion.value).len(),
            })
        }
        _ => None,
    }
}

/// Entries per thread below which a batch is tokenised on the calling thread.
const MIN_PER_THREAD: usize = 512;

/// [`first_exchange`] of every entry, in order, on up to `threads` threads, each
/// with its own tokenizer. Tokenising is nearly all the work of drawing from a large
/// file (a sweep over the real ~90,000-entry file tokenises every entry), and
/// entries are independent.
fn first_exchanges(entries: &[&Conversation], threads: usize) -> Vec<Option<Exchange>> {
    tokens::map_with_encoders(entries, threads, MIN_PER_THREAD, |own, c| {
        first_exchange_with(c, |text: &str| own.encode(text))
    })
}

/// What vLLM's filter makes of a whole file.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterStats {
    pub entries: usize,
    /// Entries with ≥ 2 turns.
    pub exchanges: usize,
    /// Exchanges that pass [`is_valid_sequence`].
    pub kept: usize,
    /// Means over the kept exchanges, tokens.
    pub mean_prompt_len: f64,
    pub mean_output_len: f64,
}

/// Tokenises every entry's first exchange and applies the filter.
pub fn filter_stats(conversations: &[Conversation]) -> FilterStats {
    let (mut exchanges, mut kept, mut prompt, mut output) = (0, 0, 0, 0);
    for e in conversations.iter().filter_map(first_exchange) {
        exchanges += 1;
        if is_valid_sequence(e.prompt_len, e.output_len, true) {
            kept += 1;
            prompt += e.prompt_len;
            output += e.output_len;
        }
    }
    let mean = |sum: usize| sum as f64 / kept.max(1) as f64;
    FilterStats {
        entries: conversations.len(),
        exchanges,
        kept,
        mean_prompt_len: mean(prompt),
        mean_output_len: mean(output),
    }
}

/// ShareGPT requests the way vLLM's benchmark draws them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareGptSpec {
    /// A ShareGPT-format file, e.g. `ShareGPT_V3_unfiltered_cleaned_split.json` or the
    /// bundled [`SAMPLE_PATH`].
    pub path: PathBuf,
    /// vLLM's `--num-prompts`.
    #[serde(default = "default_num_requests")]
    pub num_requests: usize,
    /// vLLM's `--sharegpt-output-len`: ask for this many tokens instead of the
    /// completion's length (and skip the minimum-output check).
    #[serde(default)]
    pub output_len: Option<usize>,
    /// Send the prompt as one user chat message instead of completions text.
    #[serde(default)]
    pub chat: bool,
    /// When more requests are drawn than the file has valid entries, start each
    /// repeat's prompt with a short marker line (`#<n>` and a newline) so it cannot
    /// reuse the prefix cache its first copy warmed. A real 90,000-entry file rarely
    /// repeats a prompt; a small sample repeated hundreds of times would otherwise
    /// flatter prefix-aware routing. `false` repeats prompts verbatim, as vLLM does.
    #[serde(default = "default_distinct_repeats")]
    pub distinct_repeats: bool,
}

fn default_distinct_repeats() -> bool {
    true
}

fn default_num_requests() -> usize {
    1000
}

impl ShareGptSpec {
    pub(crate) fn requests(&self, seed: u64) -> Result<Vec<WorkloadRequest>, WorkloadError> {
        let data = load_first_exchanges(&self.path)?;
        let sampled = sample_exchanges(&data, self.num_requests, self.output_len, seed);
        if sampled.picks.is_empty() && self.num_requests > 0 {
            return Err(WorkloadError::NoUsableEntries {
                path: self.path.clone(),
                what: "vLLM's ShareGPT length filter",
            });
        }
        let wrap = |text: String| {
            if self.chat {
                PromptText::Chat(vec![ChatMessage {
                    role: "user".into(),
                    content: text,
                }])
            } else {
                PromptText::Text(text)
            }
        };
        // Two entries may hold the same prompt text: a prompt is a repeat once its
        // text has been sent, whichever entry it came from. Each distinct text is
        // tokenised once, when first drawn.
        let mut first_with_text: HashMap<&str, usize> = HashMap::new();
        let canonical: Vec<usize> = (sampled.exchanges.iter().enumerate())
            .map(|(i, e)| *first_with_text.entry(e.prompt.as_str()).or_insert(i))
            .collect();
        let mut tokenised: Vec<Option<Vec<u32>>> = vec![None; sampled.exchanges.len()];
        let mut markers = MarkerTokens::default();
        let mut repeats = 0usize;
        Ok(sampled
            .picks
            .iter()
            .map(|&i| {
                let e = &sampled.exchanges[i];
                let output = self.output_len.unwrap_or(e.output_len);
                let slot = &mut tokenised[canonical[i]];
                let seen = slot.is_some();
                // Completions text is the prompt as the filter tokenised it.
                let base = slot.get_or_insert_with(|| match self.chat {
                    false => e.prompt_ids.clone(),
                    true => tokens::encode(&wrap(e.prompt.clone()).flatten()),
                });
                if !(seen && self.distinct_repeats) {
                    return WorkloadRequest::with_tokens(
                        wrap(e.prompt.clone()),
                        base.clone(),
                        output,
                    );
                }
                repeats += 1;
                let marker = repeat_marker(repeats);
                let marked = format!("{marker}{}", e.prompt);
                let ids = if !self.chat && e.prompt.starts_with(|c: char| !c.is_whitespace()) {
                    // cl100k splits text into pieces before merging, and a newline
                    // followed by a non-space character always ends a piece, so the
                    // marked prompt's ids are the marker's followed by the prompt's.
                    let mut ids = markers.encode(repeats);
                    ids.extend_from_slice(base);
                    ids
                } else {
                    tokens::encode(&wrap(marked.clone()).flatten())
                };
                WorkloadRequest::with_tokens(wrap(marked), ids, output)
            })
            .collect())
    }
}

/// The token ids of [`repeat_marker`]s, built from cached pieces. cl100k's
/// pre-tokenizer cuts `#<digits>\n` into `#`, the digits in groups of up to three
/// from the left, and the newline, then merges within each piece only; so the ids are
/// those of the pieces encoded alone, and a run needs at most 1,110 distinct
/// pieces however many repeats it marks. Tested against encoding the whole marker.
#[derive(Default)]
struct MarkerTokens {
    /// Ids of a digit group, at `1000 × (digits − 1) + value` (`7`, `07` and `007`
    /// are different pieces).
    groups: Vec<Option<Vec<u32>>>,
    hash_and_newline: Option<(Vec<u32>, Vec<u32>)>,
}

impl MarkerTokens {
    fn encode(&mut self, n: usize) -> Vec<u32> {
        let (hash, newline) = self
            .hash_and_newline
            .get_or_insert_with(|| (tokens::encode("#"), tokens::encode("\n")));
        let digits = n.to_string();
        let mut ids = Vec::with_capacity(2 + digits.len());
        ids.extend_from_slice(hash);
        for group in digits.as_bytes().chunks(3) {
            let text = std::str::from_utf8(group).expect("ASCII digits");
            let value: usize = text.parse().expect("digits");
            let at = 1000 * (group.len() - 1) + value;
            if self.groups.len() <= at {
                self.groups.resize(at + 1, None);
            }
            ids.extend_from_slice(self.groups[at].get_or_insert_with(|| tokens::encode(text)));
        }
        ids.extend_from_slice(newline);
        ids
    }
}

/// The line that starts the `n`th repeated prompt (see
/// [`ShareGptSpec::distinct_repeats`]). The filter judged the unmarked prompt; the
/// marker adds a few tokens.
pub(crate) fn repeat_marker(n: usize) -> String {
    format!("#{n}\n")
}

/// Exchanges drawn from a file: the distinct valid ones, and the draw as indices
/// into them (oversampled entries appear more than once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledExchanges {
    pub exchanges: Vec<Exchange>,
    pub picks: Vec<usize>,
}

impl SampledExchanges {
    /// The drawn exchanges in order.
    pub fn iter(&self) -> impl Iterator<Item = &Exchange> {
        self.picks.iter().map(|&i| &self.exchanges[i])
    }
}

/// vLLM's `ShareGPTDataset.sample`: shuffle the ≥ 2-turn entries, take valid first
/// exchanges in that order until `n`, then oversample with replacement if short.
/// Only as many entries as needed are tokenised, so a 90,000-entry file is cheap.
pub fn sample_exchanges(
    data: &[Conversation],
    n: usize,
    output_len: Option<usize>,
    seed: u64,
) -> SampledExchanges {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<&Conversation> =
        data.iter().filter(|c| c.conversations.len() >= 2).collect();
    order.shuffle(&mut rng);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    // Entries are tokenised in batches of what is still missing (most pass the
    // filter) and taken in shuffled order, so the draw is the same on any number of
    // threads.
    let mut exchanges = Vec::new();
    let mut next = 0;
    while exchanges.len() < n && next < order.len() {
        let batch = (n - exchanges.len()).min(order.len() - next);
        let tokenised = first_exchanges(&order[next..next + batch], threads);
        next += batch;
        for e in tokenised.into_iter().flatten() {
            if exchanges.len() >= n {
                break;
            }
            let out = output_len.unwrap_or(e.output_len);
            if is_valid_sequence(e.prompt_len, out, output_len.is_none()) {
                exchanges.push(e);
            }
        }
    }
    let valid = exchanges.len();
    let mut picks: Vec<usize> = (0..valid).collect();
    if valid > 0 {
        while picks.len() < n {
            picks.push(rng.random_range(0..valid));
        }
    }
    SampledExchanges { exchanges, picks }
}

#[cfg(test)]
mod tests;

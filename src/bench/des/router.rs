//! The routing strategies the pool simulation compares, and the per-run state each
//! needs to decide.
//!
//! [`Router::Epp`] runs the lifecycle's [`DecisionCore`], the code the director runs:
//! candidates are collected by the same function from the last *scraped* snapshot,
//! with the picker's own load counters copied in, admission and scheduling get the
//! virtual time and a seeded RNG, and the PreRequest hooks run after the pick. The baselines are what a pool has without a
//! picker: round-robin, uniform random (a Kubernetes Service) and least-request (fewest
//! in flight by the router's own count); and least-tokens, an oracle bound (fewest
//! exact prompt + output tokens in flight, output lengths known in advance). None of
//! them reads a clock or does I/O; every random choice comes from one RNG seeded by
//! the run.

use std::fmt::Write;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::DesRequest;
use crate::epp::config::LoadedConfig;
use crate::epp::datastore::EndpointState;
use crate::epp::endpoint::Candidate;
use crate::epp::error::EppError;
use crate::epp::lifecycle::{DecisionCore, collect_candidates};
use crate::epp::request::{ApiKind, LlmRequest};
use crate::epp::scheduler::{CycleState, SchedulingContext};

/// How the pool's requests are spread over its endpoints.
pub enum Router {
    /// The EPP's decision core (admission and scheduler), exactly as the live picker
    /// runs it. It carries plugin state (the prefix index, counters), so give each run
    /// a freshly built one.
    Epp(DecisionCore),
    /// Endpoints in turn.
    RoundRobin,
    /// Uniformly at random: what a Kubernetes Service's kube-proxy does.
    Random,
    /// Fewest requests in flight from this router; ties broken at random.
    LeastRequest,
    /// Fewest prompt + output tokens in flight from this router, each request's
    /// output length known when it is sent; ties broken at random. No gateway knows
    /// that in advance: this is the bound of load balancing on a workload.
    LeastTokens,
}

impl Router {
    /// The EPP as a loaded EndpointPickerConfig configures it.
    pub fn epp(config: LoadedConfig) -> Router {
        Router::Epp(DecisionCore::from_config(config))
    }

    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Router::Epp(_) => "epp",
            Router::RoundRobin => "round-robin",
            Router::Random => "random",
            Router::LeastRequest => "least-request",
            Router::LeastTokens => "least-tokens",
        }
    }
}

/// A router plus everything it reuses from one decision to the next, so a decision
/// allocates (almost) nothing.
pub(super) struct Routing {
    router: Router,
    rng: StdRng,
    /// Round-robin's next endpoint.
    next: usize,
    /// The EPP's candidate table and, per row, the endpoint index it stands for.
    candidates: Vec<Candidate>,
    rows: Vec<usize>,
    cycle: CycleState,
    request: LlmRequest,
    text: TokenText,
    /// Least-request's and least-tokens' tied endpoints.
    ties: Vec<usize>,
}

impl Routing {
    pub(super) fn new(router: Router, seed: u64) -> Routing {
        Routing {
            router,
            rng: StdRng::seed_from_u64(seed),
            next: 0,
            candidates: Vec::new(),
            rows: Vec::new(),
            cycle: CycleState::default(),
            request: LlmRequest {
                request_id: String::new(),
                incoming_model: String::new(),
                target_model: String::new(),
                api: ApiKind::Completions,
                prefix_bytes: Vec::new(),
                cache_salt: None,
                priority: 0,
                stream: true,
                body_len: 0,
            },
            text: TokenText::default(),
            ties: Vec::new(),
        }
    }

    /// The tokens the gateway books for the request just picked: the live picker's
    /// estimate for the EPP ([`LlmRequest::estimated_tokens`], from its body's
    /// length), the exact prompt + output for least-tokens, 0 for the baselines that
    /// read no token counts.
    pub(super) fn booked_tokens(&self, request: &DesRequest) -> u64 {
        match self.router {
            Router::Epp(_) => self.request.estimated_tokens(),
            Router::LeastTokens => (request.prompt.len() + request.output.len()) as u64,
            _ => 0,
        }
    }

    /// The endpoint with the least `load`, ties broken at random.
    fn fewest(&mut self, states: &[EndpointState], load: impl Fn(&EndpointState) -> u64) -> usize {
        let least = states.iter().map(&load).min().unwrap_or(0);
        self.ties.clear();
        self.ties
            .extend((0..states.len()).filter(|&i| load(&states[i]) == least));
        self.ties[self.rng.random_range(0..self.ties.len())]
    }

    /// The endpoint (index into `states`) that serves request `id`, or why none does
    /// (GIE's error text).
    pub(super) fn pick(
        &mut self,
        id: u64,
        request: &DesRequest,
        model: &str,
        states: &[EndpointState],
        now: Duration,
        staleness_threshold: Duration,
    ) -> Result<usize, EppError> {
        let n = states.len();
        match &self.router {
            Router::RoundRobin => {
                let e = self.next % n;
                self.next = (e + 1) % n;
                Ok(e)
            }
            Router::Random => Ok(self.rng.random_range(0..n)),
            Router::LeastRequest => Ok(self.fewest(states, |s| s.load.in_flight())),
            Router::LeastTokens => Ok(self.fewest(states, |s| s.load.in_flight_tokens())),
            Router::Epp(core) => {
                // The director's candidate table: routable endpoints (healthy, metrics
                // no older than the staleness threshold), load counters copied.
                collect_candidates(
                    states,
                    now,
                    staleness_threshold,
                    None,
                    &[],
                    &mut self.candidates,
                    &mut self.rows,
                )?;
                let r = &mut self.request;
                r.request_id.clear();
                let _ = write!(r.request_id, "des-{id}");
                r.incoming_model.clear();
                r.incoming_model
                    .push_str(request.lora.as_deref().unwrap_or(model));
                r.target_model.clear();
                r.target_model.push_str(&r.incoming_model);
                match &request.prefix_bytes {
                    Some(bytes) => {
                        r.prefix_bytes.clear();
                        r.prefix_bytes.extend_from_slice(bytes);
                    }
                    None => self.text.prompt_bytes(&request.prompt, &mut r.prefix_bytes),
                }
                r.body_len = request.body_len.unwrap_or(r.prefix_bytes.len());
                let mut ctx = SchedulingContext::new(now, &mut self.rng, &mut self.cycle);
                let result = core.decide(&self.request, &self.candidates, &mut ctx)?;
                Ok(self.rows[result.target()])
            }
        }
    }
}

/// Token ids → the prompt text's bytes, as a completions request carrying that text
/// would give the parser ([`crate::sim::tokens::decode`]'s output, byte for byte).
/// Each token's bytes are looked up in the vocabulary once and kept, because decoding
/// every prompt from scratch would dominate a run.
#[derive(Default)]
struct TokenText {
    /// Per token id, 16 bytes so a lookup touches one cache line: the last byte is
    /// [`UNSEEN`], [`IN_ARENA`] (the bytes are at `arena[start..start + len]`, both
    /// little-endian `u32`s in front) or 1 + the length of the bytes held inline in
    /// front.
    spans: Vec<[u8; SPAN]>,
    /// Bytes of tokens too long to hold inline.
    arena: Vec<u8>,
    /// Where a prompt that is not valid UTF-8 is rewritten; swapped with the output,
    /// so neither buffer is ever reallocated from scratch.
    fixed: Vec<u8>,
}

/// Ids at or above this are decoded each time instead of cached (no real vocabulary
/// is this large; the bound keeps `spans` small whatever ids a workload holds).
const MAX_CACHED_ID: u32 = 1 << 20;
/// Bytes per span entry; one less is the longest token held inline.
const SPAN: usize = 16;
/// A token not looked up yet.
const UNSEEN: u8 = 0;
/// A token whose bytes are in the arena.
const IN_ARENA: u8 = 0xff;

impl TokenText {
    /// The span of token `t` (below [`MAX_CACHED_ID`]), looked up if unseen.
    fn span(&mut self, t: u32) -> [u8; SPAN] {
        let i = t as usize;
        if i >= self.spans.len() {
            self.spans.resize(i + 1, [UNSEEN; SPAN]);
        }
        if self.spans[i][SPAN - 1] == UNSEEN {
            let b = crate::sim::tokens::token_bytes(t).unwrap_or_default();
            let mut span = [0u8; SPAN];
            if b.len() < SPAN {
                span[..b.len()].copy_from_slice(&b);
                span[SPAN - 1] = b.len() as u8 + 1;
            } else {
                span[..4].copy_from_slice(&(self.arena.len() as u32).to_le_bytes());
                span[4..8].copy_from_slice(&(b.len() as u32).to_le_bytes());
                span[SPAN - 1] = IN_ARENA;
                self.arena.extend_from_slice(&b);
            }
            self.spans[i] = span;
        }
        self.spans[i]
    }

    fn prompt_bytes(&mut self, ids: &[u32], out: &mut Vec<u8>) {
        out.clear();
        // Bytes are written at `len` into a zero-filled buffer kept a span ahead, so
        // an inline token is one fixed-size copy; the buffer is cut to `len` at the
        // end. BPE averages about 4 bytes per token.
        let mut len = 0;
        out.resize(ids.len() * 5 + SPAN, 0);
        for &t in ids {
            if t >= MAX_CACHED_ID {
                if let Some(b) = crate::sim::tokens::token_bytes(t) {
                    reserve(out, len + b.len());
                    out[len..len + b.len()].copy_from_slice(&b);
                    len += b.len();
                }
                continue;
            }
            let span = self.span(t);
            match span[SPAN - 1] {
                IN_ARENA => {
                    let word = |at: usize| {
                        let mut w = [0u8; 4];
                        w.copy_from_slice(&span[at..at + 4]);
                        u32::from_le_bytes(w) as usize
                    };
                    let (start, n) = (word(0), word(4));
                    reserve(out, len + n);
                    out[len..len + n].copy_from_slice(&self.arena[start..start + n]);
                    len += n;
                }
                tag => {
                    reserve(out, len + SPAN);
                    out[len..len + SPAN].copy_from_slice(&span);
                    len += usize::from(tag - 1);
                }
            }
        }
        out.truncate(len);
        // A prompt may end inside a multi-byte character; the text has U+FFFD there,
        // as `String::from_utf8_lossy` writes it (one per invalid sequence).
        if std::str::from_utf8(out).is_err() {
            self.fixed.clear();
            for chunk in out.utf8_chunks() {
                self.fixed.extend_from_slice(chunk.valid().as_bytes());
                if !chunk.invalid().is_empty() {
                    self.fixed.extend_from_slice(
                        char::REPLACEMENT_CHARACTER
                            .encode_utf8(&mut [0; 4])
                            .as_bytes(),
                    );
                }
            }
            std::mem::swap(out, &mut self.fixed);
        }
    }
}

/// Grows `out` (zero-filled) to at least `len` bytes.
fn reserve(out: &mut Vec<u8>, len: usize) {
    if out.len() < len {
        out.resize(len.max(out.len() * 2), 0);
    }
}

/// Used by the tests to check the cache against the tokenizer.
#[cfg(test)]
pub(super) fn prompt_bytes(ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    TokenText::default().prompt_bytes(ids, &mut out);
    out
}

/// Used by the tests: the bytes of each prompt in turn through one cache, so buffers
/// and cached tokens carry over from one prompt to the next as in a run.
#[cfg(test)]
pub(super) fn prompt_bytes_each(prompts: &[Vec<u32>]) -> Vec<Vec<u8>> {
    let (mut text, mut out) = (TokenText::default(), Vec::new());
    prompts
        .iter()
        .map(|ids| {
            text.prompt_bytes(ids, &mut out);
            out.clone()
        })
        .collect()
}

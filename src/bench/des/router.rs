//! The routing strategies the pool simulation compares, and the per-run state each
//! needs to decide.
//!
//! [`Router::Epp`] runs the real [`Scheduler`] the way the director does: candidates are
//! the routable endpoints of the last *scraped* state, with the picker's own load
//! counters copied in, the decision gets the virtual time and a seeded RNG, and
//! `on_scheduled` runs after the pick. The baselines are what a pool has without a
//! picker: round-robin, uniform random (a Kubernetes Service) and least-request (fewest
//! in flight by the router's own count). None of them reads a clock or does I/O; every
//! random choice comes from one RNG seeded by the run.

use std::fmt::Write;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::DesRequest;
use crate::epp::datastore::EndpointState;
use crate::epp::endpoint::Candidate;
use crate::epp::request::{ApiKind, LlmRequest};
use crate::epp::scheduler::{CycleState, Scheduler, SchedulingContext};

/// How the pool's requests are spread over its endpoints.
pub enum Router {
    /// The EPP's scheduler, exactly as the live picker runs it. It carries plugin state
    /// (the prefix index, counters), so give each run a freshly built one.
    Epp(Scheduler),
    /// Endpoints in turn.
    RoundRobin,
    /// Uniformly at random: what a Kubernetes Service's kube-proxy does.
    Random,
    /// Fewest requests in flight from this router; ties broken at random.
    LeastRequest,
}

impl Router {
    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Router::Epp(_) => "epp",
            Router::RoundRobin => "round-robin",
            Router::Random => "random",
            Router::LeastRequest => "least-request",
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
    /// Least-request's tied endpoints.
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
    ) -> Result<usize, String> {
        let n = states.len();
        match &self.router {
            Router::RoundRobin => {
                let e = self.next % n;
                self.next = (e + 1) % n;
                Ok(e)
            }
            Router::Random => Ok(self.rng.random_range(0..n)),
            Router::LeastRequest => {
                let fewest = states.iter().map(|s| s.load.in_flight()).min().unwrap_or(0);
                self.ties.clear();
                self.ties
                    .extend((0..n).filter(|&i| states[i].load.in_flight() == fewest));
                let k = self.rng.random_range(0..self.ties.len());
                Ok(self.ties[k])
            }
            Router::Epp(scheduler) => {
                // The director's candidate table: routable endpoints (healthy, metrics
                // no older than the staleness threshold), load counters copied.
                self.candidates.clear();
                self.rows.clear();
                for (i, s) in states.iter().enumerate() {
                    if s.is_routable(now, staleness_threshold) {
                        self.candidates.push(Candidate {
                            endpoint: s.endpoint.clone(),
                            metrics: s.metrics.clone(),
                            in_flight: s.load.in_flight(),
                            sent_since_scrape: s.load.sent_since_scrape(),
                        });
                        self.rows.push(i);
                    }
                }
                if self.candidates.is_empty() {
                    return Err(
                        "failed to find endpoint candidates for serving the request: \
                                no endpoint has fresh metrics"
                            .into(),
                    );
                }
                let r = &mut self.request;
                r.request_id.clear();
                let _ = write!(r.request_id, "des-{id}");
                r.incoming_model.clear();
                r.incoming_model
                    .push_str(request.lora.as_deref().unwrap_or(model));
                r.target_model.clear();
                r.target_model.push_str(&r.incoming_model);
                self.text.prompt_bytes(&request.prompt, &mut r.prefix_bytes);
                r.body_len = r.prefix_bytes.len();
                let mut ctx = SchedulingContext::new(now, &mut self.rng, &mut self.cycle);
                let result = scheduler
                    .schedule(&self.request, &self.candidates, &mut ctx)
                    .map_err(|e| e.to_string())?;
                let target = result.target();
                scheduler.on_scheduled(&self.request, &self.candidates[target], &mut self.cycle);
                Ok(self.rows[target])
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
    /// Per token id: its bytes' range in `arena`; `None` until first seen.
    spans: Vec<Option<(u32, u32)>>,
    arena: Vec<u8>,
}

/// Ids at or above this are decoded each time instead of cached (no real vocabulary
/// is this large; the bound keeps `spans` small whatever ids a workload holds).
const MAX_CACHED_ID: u32 = 1 << 20;

impl TokenText {
    fn prompt_bytes(&mut self, ids: &[u32], out: &mut Vec<u8>) {
        out.clear();
        // BPE averages about 4 bytes per token; one reservation covers most prompts.
        out.reserve(ids.len() * 5);
        for &t in ids {
            if t >= MAX_CACHED_ID {
                if let Some(b) = crate::sim::tokens::token_bytes(t) {
                    out.extend_from_slice(&b);
                }
                continue;
            }
            let i = t as usize;
            if i >= self.spans.len() {
                self.spans.resize(i + 1, None);
            }
            let (start, len) = *self.spans[i].get_or_insert_with(|| {
                let b = crate::sim::tokens::token_bytes(t).unwrap_or_default();
                let start = self.arena.len() as u32;
                self.arena.extend_from_slice(&b);
                (start, b.len() as u32)
            });
            out.extend_from_slice(&self.arena[start as usize..(start + len) as usize]);
        }
        // A prompt may end inside a multi-byte character; the text has U+FFFD there.
        if std::str::from_utf8(out).is_err() {
            let fixed = String::from_utf8_lossy(out).into_owned();
            *out = fixed.into_bytes();
        }
    }
}

/// Used by the tests to check the cache against the tokenizer.
#[cfg(test)]
pub(super) fn prompt_bytes(ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    TokenText::default().prompt_bytes(ids, &mut out);
    out
}

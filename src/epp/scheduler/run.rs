//! The scheduler proper: the profile-handler loop, the result, the error, and the
//! lifecycle hooks fanned out to every plugin instance once.
//!
//! It reads only its inputs: the request, the candidate table and the context. It
//! keeps no state between decisions; plugins may (behind atomics or short locks).

use std::fmt;
use std::sync::Arc;

use super::{CycleState, Plugin, ProfileHandler, SchedulingContext, SchedulingProfile};
use crate::epp::endpoint::{Candidate, Endpoint};
use crate::epp::request::{Completion, LlmRequest};

/// What one profile run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileResult {
    pub profile: Arc<str>,
    /// Candidate indices, best first; `None` when the profile failed (a filter left
    /// nothing).
    pub targets: Option<Vec<usize>>,
}

/// The decision.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulingResult {
    /// Indices into the candidate table, never empty: the first is the target, the
    /// rest are fallbacks in order (GIE's `ip:port,ip:port` destination list).
    pub primary: Vec<usize>,
    /// The profile whose targets are `primary`.
    pub primary_profile: Arc<str>,
    /// Every profile run, in run order.
    pub profiles: Vec<ProfileResult>,
}

impl SchedulingResult {
    /// The target endpoint's index.
    pub fn target(&self) -> usize {
        self.primary[0]
    }
}

/// Why no endpoint was chosen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchedulingError {
    /// The host passed an empty candidate table (nothing eligible before scheduling).
    /// GIE answers 503 when a subset hint matched nothing and 500 when the pool is
    /// empty; the host knows which.
    #[error("failed to find endpoint candidates for serving the request")]
    NoCandidates,
    /// The primary profile failed: its filters left no endpoint. GIE answers 429
    /// ResourceExhausted (gie-facts §1.5); a retry later may succeed.
    #[error("failed to find target endpoint: profile `{profile}` has no endpoint left")]
    NoEndpoint { profile: String },
    /// The profile handler misbehaved (an unknown profile index, or it never stopped
    /// choosing profiles). A bug in a plugin: 500.
    #[error("profile handler error: {0}")]
    Handler(String),
}

/// A profile handler and its profiles; built by the config loader or by hand.
pub struct Scheduler {
    handler: Arc<dyn ProfileHandler>,
    profiles: Vec<SchedulingProfile>,
    /// Every distinct plugin instance, each once, for the lifecycle hooks.
    hooks: Vec<Arc<dyn Plugin>>,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("profiles", &self.profiles)
            .field("plugins", &self.hooks.len())
            .finish()
    }
}

impl Scheduler {
    pub fn new(handler: Arc<dyn ProfileHandler>, profiles: Vec<SchedulingProfile>) -> Scheduler {
        let mut hooks: Vec<Arc<dyn Plugin>> = vec![handler.clone() as Arc<dyn Plugin>];
        for plugin in profiles.iter().flat_map(SchedulingProfile::plugins) {
            // One instance may serve several profiles; its hooks must run once.
            let seen = hooks
                .iter()
                .any(|h| std::ptr::addr_eq(Arc::as_ptr(h), Arc::as_ptr(&plugin)));
            if !seen {
                hooks.push(plugin);
            }
        }
        Scheduler {
            handler,
            profiles,
            hooks,
        }
    }

    pub fn profiles(&self) -> &[SchedulingProfile] {
        &self.profiles
    }

    /// Chooses the endpoint (and fallbacks) for `request` among `candidates`.
    pub fn schedule(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        ctx: &mut SchedulingContext<'_>,
    ) -> Result<SchedulingResult, SchedulingError> {
        if candidates.is_empty() {
            return Err(SchedulingError::NoCandidates);
        }
        ctx.cycle.begin();
        let mut next = std::mem::take(&mut ctx.cycle.next);
        let results = self.run_profiles(request, candidates, ctx, &mut next);
        ctx.cycle.next = next;
        let results = results?;
        let primary = self.handler.process_results(request, &results)?;
        let Some(chosen) = results.get(primary) else {
            return Err(SchedulingError::Handler(format!(
                "primary result {primary} out of {} results",
                results.len()
            )));
        };
        match &chosen.targets {
            Some(targets) if !targets.is_empty() => Ok(SchedulingResult {
                primary: targets.clone(),
                primary_profile: chosen.profile.clone(),
                profiles: results,
            }),
            _ => Err(SchedulingError::NoEndpoint {
                profile: chosen.profile.to_string(),
            }),
        }
    }

    fn run_profiles(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        ctx: &mut SchedulingContext<'_>,
        next: &mut Vec<usize>,
    ) -> Result<Vec<ProfileResult>, SchedulingError> {
        let mut results = Vec::with_capacity(self.profiles.len());
        // A handler picks each profile once, then nothing; allow a re-run of each
        // before calling it a loop.
        let max_rounds = 2 * self.profiles.len() + 2;
        for _ in 0..max_rounds {
            next.clear();
            self.handler.pick(request, &self.profiles, &results, next);
            if next.is_empty() {
                return Ok(results);
            }
            for &p in next.iter() {
                let profile = self.profiles.get(p).ok_or_else(|| {
                    SchedulingError::Handler(format!(
                        "profile index {p} out of {}",
                        self.profiles.len()
                    ))
                })?;
                let mut targets = Vec::new();
                let ok = profile.run(request, candidates, ctx, &mut targets);
                results.push(ProfileResult {
                    profile: profile.shared_name(),
                    targets: ok.then_some(targets),
                });
            }
        }
        Err(SchedulingError::Handler(format!(
            "still choosing profiles after {max_rounds} rounds"
        )))
    }

    /// PreRequest: the request was sent to `chosen`. Pass the `cycle` the decision
    /// used, before it serves another decision, so the prompt's hashes are reused;
    /// any other cycle (even a fresh one) works too, at the cost of hashing again.
    pub fn on_scheduled(&self, request: &LlmRequest, chosen: &Candidate, cycle: &mut CycleState) {
        for plugin in &self.hooks {
            plugin.on_scheduled(request, chosen, cycle);
        }
    }

    /// ResponseComplete: the response of `request`, served by `served`, ended.
    pub fn on_response_complete(&self, request: &LlmRequest, served: &Endpoint, done: &Completion) {
        for plugin in &self.hooks {
            plugin.on_response_complete(request, served, done);
        }
    }

    /// The endpoint named `name` left the pool.
    pub fn on_endpoint_removed(&self, name: &str) {
        for plugin in &self.hooks {
            plugin.on_endpoint_removed(name);
        }
    }
}

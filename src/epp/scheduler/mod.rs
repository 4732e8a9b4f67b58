//! The scheduler: given one parsed request and a table of candidate endpoints, choose
//! the endpoint that serves it (and ordered fallbacks), the way GIE's EPP does
//! (gie-facts §3.4): a profile handler picks profiles; each profile runs its filters in
//! order, sums `clamp(score, 0, 1) × weight` over its scorers (weights are not
//! normalised) and lets its picker choose.
//!
//! Plugins implement one small trait each ([`Filter`], [`Scorer`], [`Picker`],
//! [`ProfileHandler`]) and answer with indices into the host's candidate table. The
//! host owns eligibility (model, health, subset, draining) and builds the table; after
//! the pick it calls [`Scheduler::on_scheduled`] (GIE's PreRequest: the prefix index
//! learns the request here), when the response ends [`Scheduler::on_response_complete`],
//! and, when an endpoint leaves the pool, [`Scheduler::on_endpoint_removed`].
//!
//! Everything here is pure: no I/O, no clock reads (the time comes in
//! [`SchedulingContext::now`]), no tokio, no global state; randomness comes only from
//! the RNG in the context. Plugin state (a round-robin counter, the prefix index) is
//! behind atomics or short `std::sync` locks that are never held across anything but
//! plain computation.

mod cycle;
pub mod plugins;
pub mod prefix;
mod profile;
mod run;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod trace;

use std::time::Duration;

use rand::Rng;

pub use cycle::CycleState;
pub use profile::SchedulingProfile;
pub use run::{ProfileResult, Scheduler, SchedulingError, SchedulingResult};
pub use trace::{FilterTrace, ProfileTrace, ScorerTrace};

use super::endpoint::{Candidate, Endpoint};
use super::request::{Completion, LlmRequest};

/// What one scheduling decision may use besides the request and the candidates.
pub struct SchedulingContext<'a> {
    /// The decision's time, from the driver's clock (live or virtual); compared with
    /// [`crate::epp::endpoint::EndpointMetrics::updated_at`] to judge staleness.
    pub now: Duration,
    /// The only source of randomness (tie-breaks, random pickers); seeded by the host.
    pub rng: &'a mut dyn Rng,
    /// Per-request scratch shared by the plugins of this decision; keep one per worker
    /// and pass it again to [`Scheduler::on_scheduled`] so the prompt is hashed once.
    pub cycle: &'a mut CycleState,
    /// When set, every profile run appends what it did (an explained decision);
    /// `None` on the request path, where it costs one branch per plugin.
    pub trace: Option<&'a mut Vec<ProfileTrace>>,
}

impl<'a> SchedulingContext<'a> {
    pub fn new(now: Duration, rng: &'a mut dyn Rng, cycle: &'a mut CycleState) -> Self {
        SchedulingContext {
            now,
            rng,
            cycle,
            trace: None,
        }
    }

    /// The same context, recording each profile run into `trace`.
    pub fn traced(mut self, trace: &'a mut Vec<ProfileTrace>) -> Self {
        self.trace = Some(trace);
        self
    }
}

/// One candidate's total weighted score, as the picker sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// Index into the candidate table.
    pub index: usize,
    /// `Σ clamp(score, 0, 1) × weight` over the profile's scorers.
    pub score: f64,
}

/// Hooks every plugin may implement; the scheduler calls each plugin instance once
/// per event, however many profiles use it.
pub trait Plugin: Send + Sync {
    /// The request was sent to `chosen` (the primary profile's first target). GIE's
    /// PreRequest: optimistic, it does not wait to learn which endpoint served it.
    fn on_scheduled(&self, _request: &LlmRequest, _chosen: &Candidate, _cycle: &mut CycleState) {}

    /// The response of a request sent to `served` ended or was abandoned (GIE's
    /// ResponseComplete). `done.status` is 0 when no response arrived at all.
    fn on_response_complete(&self, _request: &LlmRequest, _served: &Endpoint, _done: &Completion) {}

    /// The endpoint named `name` left the pool: forget what is kept about it.
    fn on_endpoint_removed(&self, _name: &str) {}
}

/// Narrows the candidates a profile considers.
pub trait Filter: Plugin {
    /// Removes entries from `subset` (indices into `candidates`, in table order). A
    /// filter never adds entries; leaving `subset` empty fails the profile.
    fn filter(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        ctx: &mut SchedulingContext<'_>,
        subset: &mut Vec<usize>,
    );
}

/// Rates each candidate in 0..=1 (values outside are clamped; NaN counts as 0).
pub trait Scorer: Plugin {
    /// Writes one score per entry of `subset` into `scores` (same length and order),
    /// which arrives zeroed.
    fn score(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        subset: &[usize],
        ctx: &mut SchedulingContext<'_>,
        scores: &mut [f64],
    );
}

/// Chooses the target and fallbacks from the scored candidates.
pub trait Picker: Plugin {
    /// Appends the chosen candidate indices to `picked` (empty on entry), best first.
    /// `scored` is never empty and may be reordered.
    fn pick(
        &self,
        candidates: &[Candidate],
        scored: &mut [Scored],
        ctx: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    );
}

/// Decides which profiles run for a request and which result is the answer.
pub trait ProfileHandler: Plugin {
    /// Appends to `next` the indices (into `profiles`) of the profiles to run now,
    /// given the results so far; appending nothing ends the loop.
    fn pick(
        &self,
        request: &LlmRequest,
        profiles: &[SchedulingProfile],
        done: &[ProfileResult],
        next: &mut Vec<usize>,
    );

    /// Returns the index into `results` of the primary result, or why there is none.
    fn process_results(
        &self,
        request: &LlmRequest,
        results: &[ProfileResult],
    ) -> Result<usize, SchedulingError>;
}

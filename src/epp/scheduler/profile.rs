//! One scheduling profile: ordered filters, weighted scorers and one picker, run as
//! GIE runs a profile (gie-facts §3.4).
//!
//! Filters run in order and a filter that leaves nothing fails the profile. Every
//! surviving candidate starts at 0 and gains `clamp(score, 0, 1) × weight` from each
//! scorer; weights are used as given, not normalised, so a profile's total can exceed
//! 1. The picker then orders the survivors. The profile keeps no state of its own.

use std::fmt;
use std::sync::Arc;

use super::{Filter, Picker, Plugin, SchedulingContext, Scored, Scorer};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;

/// Filters, weighted scorers and a picker, under a name.
pub struct SchedulingProfile {
    name: Arc<str>,
    filters: Vec<Arc<dyn Filter>>,
    scorers: Vec<(Arc<dyn Scorer>, f64)>,
    picker: Arc<dyn Picker>,
}

impl fmt::Debug for SchedulingProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulingProfile")
            .field("name", &self.name)
            .field("filters", &self.filters.len())
            .field("weights", &self.weights())
            .finish_non_exhaustive()
    }
}

impl SchedulingProfile {
    /// A profile with no filters and no scorers: the picker sees every candidate at 0.
    pub fn new(name: impl Into<Arc<str>>, picker: Arc<dyn Picker>) -> Self {
        SchedulingProfile {
            name: name.into(),
            filters: Vec::new(),
            scorers: Vec::new(),
            picker,
        }
    }

    /// Appends a filter; filters run in the order they were added.
    pub fn with_filter(mut self, filter: Arc<dyn Filter>) -> Self {
        self.filters.push(filter);
        self
    }

    /// Appends a scorer with its weight (finite and ≥ 0; the config loader checks).
    pub fn with_scorer(mut self, scorer: Arc<dyn Scorer>, weight: f64) -> Self {
        self.scorers.push((scorer, weight));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The scorers' weights, in order.
    pub fn weights(&self) -> Vec<f64> {
        self.scorers.iter().map(|(_, w)| *w).collect()
    }

    /// Every plugin instance the profile uses, for lifecycle hooks.
    pub(super) fn plugins(&self) -> Vec<Arc<dyn Plugin>> {
        let mut out: Vec<Arc<dyn Plugin>> = Vec::new();
        out.extend(self.filters.iter().map(|f| f.clone() as Arc<dyn Plugin>));
        out.extend(
            self.scorers
                .iter()
                .map(|(s, _)| s.clone() as Arc<dyn Plugin>),
        );
        out.push(self.picker.clone() as Arc<dyn Plugin>);
        out
    }

    /// Runs the profile; `None` when a filter left no candidate or the picker chose
    /// none. The chosen indices are appended to `picked`, best first.
    pub(super) fn run(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        ctx: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    ) -> bool {
        // The buffers are taken out of the cycle so that plugins can borrow the
        // context mutably while the profile holds them; they go back at the end.
        let mut subset = std::mem::take(&mut ctx.cycle.subset);
        let mut totals = std::mem::take(&mut ctx.cycle.totals);
        let mut scores = std::mem::take(&mut ctx.cycle.scores);
        let mut scored = std::mem::take(&mut ctx.cycle.scored);
        subset.clear();
        subset.extend(0..candidates.len());
        let mut ok = true;
        for filter in &self.filters {
            filter.filter(request, candidates, ctx, &mut subset);
            subset.retain(|&i| i < candidates.len());
            if subset.is_empty() {
                ok = false;
                break;
            }
        }
        if ok {
            totals.clear();
            totals.resize(subset.len(), 0.0);
            for (scorer, weight) in &self.scorers {
                scores.clear();
                scores.resize(subset.len(), 0.0);
                scorer.score(request, candidates, &subset, ctx, &mut scores);
                for (total, &s) in totals.iter_mut().zip(&scores) {
                    *total += clamp_score(s) * weight;
                }
            }
            scored.clear();
            scored.extend(
                subset
                    .iter()
                    .zip(&totals)
                    .map(|(&index, &score)| Scored { index, score }),
            );
            let start = picked.len();
            self.picker.pick(candidates, &mut scored, ctx, picked);
            ok = picked.len() > start;
        }
        ctx.cycle.subset = subset;
        ctx.cycle.totals = totals;
        ctx.cycle.scores = scores;
        ctx.cycle.scored = scored;
        ok
    }
}

/// GIE clamps each scorer's output to 0..=1 before weighting; NaN counts as 0.
fn clamp_score(s: f64) -> f64 {
    if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) }
}

//! One scheduling profile: ordered filters, weighted scorers and one picker, run as
//! GIE runs a profile (gie-facts §3.4).
//!
//! Filters run in order and a filter that leaves nothing fails the profile. Every
//! surviving candidate starts at 0 and gains `clamp(score, 0, 1) × weight` from each
//! scorer; weights are used as given, not normalised, so a profile's total can exceed
//! 1. The picker then orders the survivors. The profile keeps no state of its own.

use std::fmt;
use std::sync::Arc;

use super::{
    Filter, FilterTrace, Picker, Plugin, ProfileTrace, SchedulingContext, Scored, Scorer,
    ScorerTrace,
};
use crate::epp::endpoint::Candidate;
use crate::epp::request::LlmRequest;

/// Filters, weighted scorers and a picker, under a name. Each plugin keeps the name
/// the config gave it, for explained decisions.
pub struct SchedulingProfile {
    name: Arc<str>,
    filters: Vec<(Arc<str>, Arc<dyn Filter>)>,
    scorers: Vec<(Arc<str>, Arc<dyn Scorer>, f64)>,
    picker: (Arc<str>, Arc<dyn Picker>),
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
            picker: ("picker".into(), picker),
        }
    }

    /// Names the picker (`picker` until named).
    pub fn with_picker_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.picker.0 = name.into();
        self
    }

    /// Appends a filter; filters run in the order they were added.
    pub fn with_filter(self, filter: Arc<dyn Filter>) -> Self {
        let name = format!("filter-{}", self.filters.len());
        self.with_named_filter(name, filter)
    }

    /// [`with_filter`](Self::with_filter) under the config's name for it.
    pub fn with_named_filter(mut self, name: impl Into<Arc<str>>, filter: Arc<dyn Filter>) -> Self {
        self.filters.push((name.into(), filter));
        self
    }

    /// Appends a scorer with its weight (finite and ≥ 0; the config loader checks).
    pub fn with_scorer(self, scorer: Arc<dyn Scorer>, weight: f64) -> Self {
        let name = format!("scorer-{}", self.scorers.len());
        self.with_named_scorer(name, scorer, weight)
    }

    /// [`with_scorer`](Self::with_scorer) under the config's name for it.
    pub fn with_named_scorer(
        mut self,
        name: impl Into<Arc<str>>,
        scorer: Arc<dyn Scorer>,
        weight: f64,
    ) -> Self {
        self.scorers.push((name.into(), scorer, weight));
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
        self.scorers.iter().map(|(_, _, w)| *w).collect()
    }

    /// Every plugin instance the profile uses, for lifecycle hooks.
    pub(super) fn plugins(&self) -> Vec<Arc<dyn Plugin>> {
        let mut out: Vec<Arc<dyn Plugin>> = Vec::new();
        out.extend(
            self.filters
                .iter()
                .map(|(_, f)| f.clone() as Arc<dyn Plugin>),
        );
        out.extend(
            self.scorers
                .iter()
                .map(|(_, s, _)| s.clone() as Arc<dyn Plugin>),
        );
        out.push(self.picker.1.clone() as Arc<dyn Plugin>);
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
        // Recorded only when the decision is explained.
        let mut trace = ctx.trace.is_some().then(|| ProfileTrace {
            profile: self.name.to_string(),
            picker: self.picker.0.to_string(),
            ..ProfileTrace::default()
        });
        let mut ok = true;
        for (name, filter) in &self.filters {
            filter.filter(request, candidates, ctx, &mut subset);
            subset.retain(|&i| i < candidates.len());
            if let Some(t) = &mut trace {
                t.filters.push(FilterTrace {
                    name: name.to_string(),
                    kept: subset.clone(),
                });
            }
            if subset.is_empty() {
                ok = false;
                break;
            }
        }
        if ok {
            totals.clear();
            totals.resize(subset.len(), 0.0);
            for (name, scorer, weight) in &self.scorers {
                scores.clear();
                scores.resize(subset.len(), 0.0);
                scorer.score(request, candidates, &subset, ctx, &mut scores);
                for (total, &s) in totals.iter_mut().zip(&scores) {
                    *total += clamp_score(s) * weight;
                }
                if let Some(t) = &mut trace {
                    t.scorers.push(ScorerTrace {
                        name: name.to_string(),
                        weight: *weight,
                        raw: subset.iter().copied().zip(scores.iter().copied()).collect(),
                    });
                }
            }
            scored.clear();
            scored.extend(
                subset
                    .iter()
                    .zip(&totals)
                    .map(|(&index, &score)| Scored { index, score }),
            );
            if let Some(t) = &mut trace {
                t.totals = scored.iter().map(|s| (s.index, s.score)).collect();
            }
            let start = picked.len();
            self.picker.1.pick(candidates, &mut scored, ctx, picked);
            ok = picked.len() > start;
            if let Some(t) = &mut trace {
                t.picked = picked[start..].to_vec();
            }
        }
        if let (Some(t), Some(out)) = (trace, ctx.trace.as_deref_mut()) {
            out.push(t);
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

//! A dry-run decision: which endpoint the picker would choose for a request, and
//! why. Every endpoint of the pool with whether it was a candidate (and if not, why
//! not), the saturation verdict, and for every profile run each filter's survivors,
//! each scorer's raw and weighted score per endpoint, the totals and the pick.
//!
//! Nothing is sent and nothing is booked: the PreRequest hooks do not run (the
//! prefix index does not learn the prompt, no in-flight count moves), and ties are
//! broken by an RNG of the explanation's own, seeded with 0, so explaining does not
//! shift the live picker's random choices. A stateful picker still advances its own
//! counter (round-robin's position), as one more request would.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::core::{DecisionCore, collect_candidates};
use super::subset::SubsetHint;
use crate::epp::datastore::{EndpointState, Health, PoolSnapshot};
use crate::epp::error::EppError;
use crate::epp::request::LlmRequest;
use crate::epp::saturation::should_shed;
use crate::epp::scheduler::{CycleState, ProfileTrace, SchedulingContext};

/// An explained decision (`POST /admin/explain`'s answer).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub pool: String,
    /// The model the request names, and the one the endpoint must serve.
    pub model: String,
    pub target_model: String,
    /// From the request's InferenceObjective; below 0 is sheddable.
    pub priority: i32,
    /// Every endpoint of the pool, in pool order.
    pub endpoints: Vec<EndpointVerdict>,
    /// The saturation detector's reading over the candidates (1 or more: saturated).
    pub saturation: f64,
    /// Whether the request would be shed (sheddable and the pool saturated).
    pub shed: bool,
    pub profiles: Vec<ProfileExplained>,
    /// The profile whose pick is the answer.
    pub primary_profile: Option<String>,
    /// The endpoint the request would go to, and the fallbacks after it.
    pub target: Option<String>,
    pub fallbacks: Vec<String>,
    /// Why it would be refused, with the code the gateway would answer.
    pub error: Option<ExplainedError>,
}

/// One endpoint before scheduling.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointVerdict {
    pub name: String,
    pub address: String,
    pub candidate: bool,
    /// Why it is not a candidate: `not in the subset hint`, `unhealthy`, `pending`,
    /// `metrics 3.2 s old`, `ejected after failing requests`.
    pub excluded: Option<String>,
}

/// One profile run, endpoints named.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileExplained {
    pub name: String,
    pub filters: Vec<FilterExplained>,
    pub scorers: Vec<ScorerExplained>,
    /// Σ weighted scores per endpoint, as the picker received them.
    pub totals: Vec<EndpointScore>,
    pub picker: String,
    pub picked: Vec<String>,
    /// The profile failed: a filter left no endpoint.
    pub failed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilterExplained {
    pub name: String,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScorerExplained {
    pub name: String,
    pub weight: f64,
    pub scores: Vec<ScorerScore>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScorerScore {
    pub endpoint: String,
    /// What the scorer returned.
    pub raw: f64,
    /// `clamp(raw, 0, 1) × weight`, its share of the total.
    pub weighted: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointScore {
    pub endpoint: String,
    pub score: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExplainedError {
    /// The HTTP status the gateway would answer.
    pub status: u16,
    pub message: String,
}

impl ExplainedError {
    fn of(e: &EppError) -> ExplainedError {
        ExplainedError {
            status: e.status(),
            message: e.to_string(),
        }
    }
}

/// Why `state` is not routable at `now`, or `None` if it is.
fn exclusion(state: &EndpointState, now: Duration, threshold: Duration) -> Option<String> {
    match state.health {
        Health::Pending => return Some("pending: no scrape has answered yet".into()),
        Health::Unhealthy => {
            return Some(match &state.last_error {
                Some(e) => format!("unhealthy: {e}"),
                None => "unhealthy".into(),
            });
        }
        Health::Healthy => {}
    }
    match &state.metrics {
        None => return Some("no metrics yet".into()),
        Some(m) => {
            let age = now.saturating_sub(m.updated_at);
            if age > threshold {
                return Some(format!(
                    "metrics {:.1} s old (the limit is {:.1} s)",
                    age.as_secs_f64(),
                    threshold.as_secs_f64()
                ));
            }
        }
    }
    if state.outlier.ejected(now) {
        return Some("ejected after failing requests".into());
    }
    None
}

/// Explains what `core` would decide for `request` over `snap` at `now`.
pub fn explain(
    snap: &PoolSnapshot,
    now: Duration,
    core: &DecisionCore,
    subset: Option<&SubsetHint>,
    request: &LlmRequest,
) -> Explanation {
    let endpoints: Vec<EndpointVerdict> = snap
        .endpoints
        .iter()
        .map(|s| {
            let excluded = match subset.is_some_and(|h| !h.allows(s.endpoint.address)) {
                true => Some("not in the subset hint".to_string()),
                false => exclusion(s, now, snap.staleness_threshold),
            };
            EndpointVerdict {
                name: s.endpoint.name.clone(),
                address: s.endpoint.address.to_string(),
                candidate: excluded.is_none(),
                excluded,
            }
        })
        .collect();
    let mut out = Explanation {
        pool: snap.pool.clone(),
        model: request.incoming_model.clone(),
        target_model: request.target_model.clone(),
        priority: request.priority,
        endpoints,
        saturation: 0.0,
        shed: false,
        profiles: Vec::new(),
        primary_profile: None,
        target: None,
        fallbacks: Vec::new(),
        error: None,
    };
    let (mut candidates, mut rows) = (Vec::new(), Vec::new());
    let collected = collect_candidates(
        &snap.endpoints,
        now,
        snap.staleness_threshold,
        subset,
        &[],
        &mut candidates,
        &mut rows,
    );
    if let Err(e) = collected {
        out.error = Some(ExplainedError::of(&e));
        return out;
    }
    out.saturation = core.detector.saturation(&candidates, now);
    out.shed = should_shed(request.priority, out.saturation);
    let name = |i: usize| snap.endpoints[rows[i]].endpoint.name.clone();
    let mut rng = StdRng::seed_from_u64(0);
    let mut cycle = CycleState::default();
    let mut traces: Vec<ProfileTrace> = Vec::new();
    let decided = {
        let mut ctx = SchedulingContext::new(now, &mut rng, &mut cycle).traced(&mut traces);
        core.scheduler.schedule(request, &candidates, &mut ctx)
    };
    out.profiles = traces
        .iter()
        .map(|t| explain_profile(t, candidates.len(), &name))
        .collect();
    match decided {
        Ok(result) => {
            out.primary_profile = Some(result.primary_profile.to_string());
            out.target = Some(name(result.target()));
            out.fallbacks = result.primary[1..].iter().map(|&i| name(i)).collect();
        }
        Err(e) => out.error = Some(ExplainedError::of(&EppError::from(e))),
    }
    if out.shed {
        out.error = Some(ExplainedError::of(&EppError::ResourceExhausted(
            "system saturated, sheddable request dropped".into(),
        )));
    }
    out
}

fn explain_profile(
    t: &ProfileTrace,
    candidates: usize,
    name: &impl Fn(usize) -> String,
) -> ProfileExplained {
    let mut before: Vec<usize> = (0..candidates).collect();
    let filters = t
        .filters
        .iter()
        .map(|f| {
            let removed = before
                .iter()
                .filter(|i| !f.kept.contains(i))
                .map(|&i| name(i))
                .collect();
            before = f.kept.clone();
            FilterExplained {
                name: f.name.clone(),
                kept: f.kept.iter().map(|&i| name(i)).collect(),
                removed,
            }
        })
        .collect();
    let scorers = t
        .scorers
        .iter()
        .map(|s| ScorerExplained {
            name: s.name.clone(),
            weight: s.weight,
            scores: s
                .raw
                .iter()
                .map(|&(i, raw)| ScorerScore {
                    endpoint: name(i),
                    raw,
                    weighted: if raw.is_nan() {
                        0.0
                    } else {
                        raw.clamp(0.0, 1.0)
                    } * s.weight,
                })
                .collect(),
        })
        .collect();
    ProfileExplained {
        name: t.profile.clone(),
        filters,
        scorers,
        totals: t
            .totals
            .iter()
            .map(|&(i, score)| EndpointScore {
                endpoint: name(i),
                score,
            })
            .collect(),
        picker: t.picker.clone(),
        picked: t.picked.iter().map(|&i| name(i)).collect(),
        failed: t.filters.last().is_some_and(|f| f.kept.is_empty()),
    }
}

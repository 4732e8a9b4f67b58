//! The plugins, one file each. GIE's keep GIE's type names, parameters and formulas
//! (gie-facts §3.4, §4, §5.1); the rest are igw extensions, marked as such in their
//! own comments: classic policies (round robin, least request, weighted round robin)
//! and igw's lag-aware scorers (`inflight-load-scorer`, `load-aware-prefix-scorer`).
//!
//! Shared here: parameter plumbing (every plugin's parameters are a typed,
//! `deny_unknown_fields` struct with `validate()`), Go-style durations, and the
//! min-max normalisation queue-like scorers use. Nothing here does I/O.

pub mod concurrency;
pub mod inflight_load;
pub mod kv_cache;
pub mod least_request;
pub mod load_aware_prefix;
pub mod lora_affinity;
pub mod max_score;
pub mod prefix_cache;
pub mod queue;
pub mod random;
pub mod round_robin;
pub mod running_requests;
pub mod single_profile;
#[cfg(test)]
mod tests;
pub mod token_load;
pub mod utilization;
pub mod weighted_random;
pub mod weighted_round_robin;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::epp::endpoint::Candidate;

/// A parameter that failed validation: which one and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter's name as written in the config (camelCase).
    pub field: String,
    pub message: String,
}

impl ParamError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ParamError {
        ParamError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

/// Parameters of a plugin, checked once at load.
pub trait Params {
    fn validate(&self) -> Result<(), ParamError> {
        Ok(())
    }
}

/// Checks that parameter `field` is a finite number ≥ 0 (weights, headroom).
pub(crate) fn finite_non_negative(field: &str, value: f64) -> Result<(), ParamError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ParamError::new(
            field,
            format!("must be a finite number ≥ 0, got {value}"),
        ))
    }
}

/// For plugins that take no parameters: any field is an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl Params for NoParams {}

/// The parameter every picker takes (gie-facts §3.4): how many endpoints to return,
/// the first as target and the rest as fallbacks.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PickerParams {
    pub max_num_of_endpoints: usize,
}

impl Default for PickerParams {
    fn default() -> Self {
        PickerParams {
            max_num_of_endpoints: 1,
        }
    }
}

impl Params for PickerParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.max_num_of_endpoints == 0 {
            return Err(ParamError::new("maxNumOfEndpoints", "must be at least 1"));
        }
        Ok(())
    }
}

/// A duration written as Go writes them (`200ms`, `1.5s`, `2m30s`; units ns, us, µs,
/// ms, s, m, h), as GIE's Kubernetes-style config does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_go_duration(&text)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

pub use crate::epp::duration::parse_go_duration;

/// Scores each candidate of `subset` on its own: `scores[k] = score(candidates[subset[k]])`,
/// the shape of every scorer that needs no comparison across candidates.
pub(crate) fn score_each(
    scores: &mut [f64],
    candidates: &[Candidate],
    subset: &[usize],
    score: impl Fn(&Candidate) -> f64,
) {
    for (s, &i) in scores.iter_mut().zip(subset) {
        *s = score(&candidates[i]);
    }
}

/// Turns per-candidate loads (written into `scores`, `None` = no metrics) into GIE's
/// queue-scorer shape: `(max − load) / (max − min)` over the candidates that have a
/// load, 1.0 for all when they are equal, and 0 for candidates without one.
pub(crate) fn min_max_inverse(scores: &mut [f64], loads: impl Fn(usize) -> Option<f64>) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (i, s) in scores.iter_mut().enumerate() {
        match loads(i) {
            Some(l) => {
                *s = l;
                lo = lo.min(l);
                hi = hi.max(l);
            }
            None => *s = f64::NAN,
        }
    }
    let range = hi - lo;
    for s in scores.iter_mut() {
        *s = if s.is_nan() {
            0.0
        } else if range > 0.0 {
            (hi - *s) / range
        } else {
            1.0
        };
    }
}

/// igw's estimate of an endpoint's queue now: what it last reported waiting plus what
/// this picker has sent it since (DESIGN invariant 6), `None` without metrics.
pub fn estimated_queue(c: &Candidate) -> Option<f64> {
    c.metrics
        .as_ref()
        .map(|m| m.waiting_queue_size as f64 + c.sent_since_scrape as f64)
}

/// Fisher–Yates shuffle with the decision's RNG.
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut dyn rand::Rng) {
    use rand::RngExt;
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

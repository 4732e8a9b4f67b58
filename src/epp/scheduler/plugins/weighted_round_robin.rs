//! `weighted-round-robin-picker`, an igw extension: smooth weighted round robin (as
//! nginx does it) over the candidates, ignoring scores. Each decision adds every
//! candidate's weight to its running credit, picks the highest credit (ties: table
//! order) and takes the total weight back from it, so an endpoint with weight 3 next
//! to one with weight 1 gets 3 of every 4 requests, interleaved rather than in runs.
//!
//! Parameters: `weights` (endpoint name → weight ≥ 1), `defaultWeight` (1) for the
//! rest, and `maxNumOfEndpoints`. Credits live behind a short mutex, keyed by name,
//! and are forgotten when an endpoint leaves the pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Deserialize;

use super::{ParamError, Params, PickerParams};
use crate::epp::endpoint::Candidate;
use crate::epp::scheduler::{Picker, Plugin, SchedulingContext, Scored};

pub const TYPE: &str = "weighted-round-robin-picker";

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct WrrParams {
    pub weights: BTreeMap<String, u32>,
    pub default_weight: u32,
    pub max_num_of_endpoints: usize,
}

impl Default for WrrParams {
    fn default() -> Self {
        WrrParams {
            weights: BTreeMap::new(),
            default_weight: 1,
            max_num_of_endpoints: PickerParams::default().max_num_of_endpoints,
        }
    }
}

impl Params for WrrParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.default_weight == 0 {
            return Err(ParamError::new("defaultWeight", "must be at least 1"));
        }
        if let Some((name, _)) = self.weights.iter().find(|(_, w)| **w == 0) {
            return Err(ParamError::new(
                format!("weights.{name}"),
                "must be at least 1",
            ));
        }
        PickerParams {
            max_num_of_endpoints: self.max_num_of_endpoints,
        }
        .validate()
    }
}

#[derive(Debug, Default)]
pub struct WeightedRoundRobinPicker {
    params: WrrParams,
    credits: Mutex<HashMap<String, i64>>,
}

impl WeightedRoundRobinPicker {
    pub fn new(params: WrrParams) -> WeightedRoundRobinPicker {
        WeightedRoundRobinPicker {
            params,
            credits: Mutex::new(HashMap::new()),
        }
    }

    fn weight(&self, name: &str) -> i64 {
        i64::from(
            *self
                .params
                .weights
                .get(name)
                .unwrap_or(&self.params.default_weight),
        )
    }
}

impl Plugin for WeightedRoundRobinPicker {
    fn on_endpoint_removed(&self, name: &str) {
        self.credits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

impl Picker for WeightedRoundRobinPicker {
    fn pick(
        &self,
        candidates: &[Candidate],
        scored: &mut [Scored],
        _ctx: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    ) {
        let mut credits = self.credits.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        // The picker's `score` slot carries each candidate's credit after this round.
        for (k, s) in scored.iter_mut().enumerate() {
            let name = candidates[s.index].endpoint.name.as_str();
            let w = self.weight(name);
            total += w;
            let credit = match credits.get_mut(name) {
                Some(c) => {
                    *c += w;
                    *c
                }
                None => {
                    credits.insert(name.to_string(), w);
                    w
                }
            };
            s.score = credit as f64;
            if best.is_none_or(|(_, b)| credit > b) {
                best = Some((k, credit));
            }
        }
        let Some((k, _)) = best else {
            return;
        };
        let winner = candidates[scored[k].index].endpoint.name.as_str();
        if let Some(c) = credits.get_mut(winner) {
            *c -= total;
        }
        // Fallbacks: the winner first, then by remaining credit (stable: table order).
        scored[k].score = f64::INFINITY;
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        let max = self.params.max_num_of_endpoints.max(1);
        picked.extend(scored.iter().take(max).map(|s| s.index));
    }
}

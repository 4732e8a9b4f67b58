//! LoRA traffic split: which adapter each request names, drawn from a weighted list.
//!
//! The list has inference-perf's `lora_traffic_split` shape, `[{name, split}]`
//! (sim-facts §6.2). Weights need not sum to one; they are normalised. Draws are seeded;
//! every turn of a session names the adapter its first turn drew, because a
//! conversation stays with one fine-tune. No I/O.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{SessionTurn, WorkloadError};

/// One adapter and its share of the traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraWeight {
    pub name: String,
    /// Relative weight, ≥ 0.
    pub split: f64,
}

/// Seeded draws from a validated split.
pub struct LoraAssigner {
    names: Vec<String>,
    /// Cumulative normalised weights; the last is 1.
    cumulative: Vec<f64>,
    rng: StdRng,
    by_session: HashMap<u64, usize>,
}

impl LoraAssigner {
    /// Fails on an empty list, a negative or non-finite weight, an empty name, or
    /// weights that sum to zero.
    pub fn new(split: &[LoraWeight], seed: u64) -> Result<LoraAssigner, WorkloadError> {
        let invalid = |m: String| Err(WorkloadError::Invalid(format!("lora_traffic_split: {m}")));
        if split.is_empty() {
            return invalid("the list is empty".into());
        }
        for w in split {
            if w.name.is_empty() {
                return invalid("an adapter has an empty name".into());
            }
            if !w.split.is_finite() || w.split < 0.0 {
                return invalid(format!("{}: split {} is not ≥ 0", w.name, w.split));
            }
        }
        let total: f64 = split.iter().map(|w| w.split).sum();
        if total <= 0.0 {
            return invalid("the splits sum to zero".into());
        }
        let mut acc = 0.0;
        let mut cumulative: Vec<f64> = split
            .iter()
            .map(|w| {
                acc += w.split / total;
                acc
            })
            .collect();
        if let Some(last) = cumulative.last_mut() {
            *last = 1.0;
        }
        Ok(LoraAssigner {
            names: split.iter().map(|w| w.name.clone()).collect(),
            cumulative,
            rng: StdRng::seed_from_u64(seed),
            by_session: HashMap::new(),
        })
    }

    /// The adapter for the next request; a later turn of a session gets the same one
    /// as that session's earlier turns.
    pub fn assign(&mut self, session: Option<SessionTurn>) -> &str {
        let index = match session {
            Some(s) => match self.by_session.get(&s.session) {
                Some(&i) => i,
                None => {
                    let i = self.draw();
                    self.by_session.insert(s.session, i);
                    i
                }
            },
            None => self.draw(),
        };
        &self.names[index]
    }

    fn draw(&mut self) -> usize {
        let u: f64 = self.rng.random();
        // A zero weight has the same cumulative value as its predecessor and is never
        // the first index above `u`.
        self.cumulative
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.names.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[(&str, f64)]) -> Vec<LoraWeight> {
        weights
            .iter()
            .map(|&(name, split)| LoraWeight {
                name: name.into(),
                split,
            })
            .collect()
    }

    /// Draws `n` adapters and checks each share is within `tolerance` of its weight.
    fn check(weights: &[(&str, f64)], n: usize, tolerance: f64) {
        let mut a = LoraAssigner::new(&split(weights), 11).unwrap();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..n {
            *counts.entry(a.assign(None).to_string()).or_default() += 1;
        }
        let total: f64 = weights.iter().map(|w| w.1).sum();
        for &(name, w) in weights {
            let share = *counts.get(name).unwrap_or(&0) as f64 / n as f64;
            let want = w / total;
            assert!(
                (share - want).abs() <= tolerance,
                "{name}: {share:.4} vs {want:.4} in {weights:?}"
            );
        }
    }

    #[test]
    fn proportions_follow_the_split() {
        for (weights, tolerance) in [
            (&[("a", 1.0)][..], 0.0),
            (&[("a", 0.5), ("b", 0.5)][..], 0.01),
            (&[("a", 0.7), ("b", 0.2), ("c", 0.1)][..], 0.01),
            (&[("a", 3.0), ("b", 1.0)][..], 0.01),
            (&[("a", 0.0), ("b", 1.0)][..], 0.0),
        ] {
            check(weights, 40_000, tolerance);
        }
    }

    #[test]
    fn a_session_keeps_its_adapter() {
        let mut a = LoraAssigner::new(&split(&[("a", 0.5), ("b", 0.5)]), 1).unwrap();
        for session in 0..50 {
            let first = a.assign(Some(SessionTurn { session, turn: 0 })).to_string();
            for turn in 1..5 {
                let _ = a.assign(None);
                assert_eq!(a.assign(Some(SessionTurn { session, turn })), first);
            }
        }
    }

    #[test]
    fn bad_splits_are_rejected() {
        for weights in [
            &[][..],
            &[("a", -1.0)][..],
            &[("a", f64::NAN)][..],
            &[("a", 0.0), ("b", 0.0)][..],
            &[("", 1.0)][..],
        ] {
            assert!(
                LoraAssigner::new(&split(weights), 0).is_err(),
                "{weights:?}"
            );
        }
    }
}

//! GIE's `weighted-random-picker` (gie-facts §3.4): weighted sampling without
//! replacement by A-Res — each candidate draws `key = U^(1/score)`, U uniform in
//! (0, 1), and the largest keys win; a score ≤ 0 gets key 0. When every score is 0 it
//! behaves as `random-picker`. No state; the randomness is the decision's RNG.

use rand::RngExt;

use super::{PickerParams, shuffle};
use crate::epp::endpoint::Candidate;
use crate::epp::scheduler::{Picker, Plugin, SchedulingContext, Scored};

pub const TYPE: &str = "weighted-random-picker";

#[derive(Debug)]
pub struct WeightedRandomPicker {
    max: usize,
}

impl Default for WeightedRandomPicker {
    fn default() -> Self {
        WeightedRandomPicker::new(PickerParams::default())
    }
}

impl WeightedRandomPicker {
    pub fn new(params: PickerParams) -> WeightedRandomPicker {
        WeightedRandomPicker {
            max: params.max_num_of_endpoints.max(1),
        }
    }
}

impl Plugin for WeightedRandomPicker {}

impl Picker for WeightedRandomPicker {
    fn pick(
        &self,
        _candidates: &[Candidate],
        scored: &mut [Scored],
        ctx: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    ) {
        // Shuffle first: equal keys (all-zero scores among them) then fall in random order.
        shuffle(scored, ctx.rng);
        if scored.iter().all(|s| s.score <= 0.0) {
            picked.extend(scored.iter().take(self.max).map(|s| s.index));
            return;
        }
        for s in scored.iter_mut() {
            s.score = if s.score > 0.0 {
                // 1 − [0, 1) is (0, 1]: never 0, so every positive score can win.
                let u: f64 = 1.0 - ctx.rng.random::<f64>();
                u.powf(1.0 / s.score)
            } else {
                0.0
            };
        }
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        picked.extend(scored.iter().take(self.max).map(|s| s.index));
    }
}

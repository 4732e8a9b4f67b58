//! GIE's `max-score-picker` (gie-facts §3.4): shuffle the candidates (random
//! tie-break, with the decision's RNG), stable-sort by total score descending, and
//! return the top `maxNumOfEndpoints` (default 1), best first. No state.
//!
//! With one endpoint to return (the default) the same distribution comes from one
//! pass: the best score wins, and among equal best scores each is kept with
//! probability 1/(ties so far), which picks uniformly among them without sorting.

use rand::RngExt;

use super::{PickerParams, shuffle};
use crate::epp::endpoint::Candidate;
use crate::epp::scheduler::{Picker, Plugin, SchedulingContext, Scored};

pub const TYPE: &str = "max-score-picker";

#[derive(Debug)]
pub struct MaxScorePicker {
    max: usize,
}

impl Default for MaxScorePicker {
    fn default() -> Self {
        MaxScorePicker::new(PickerParams::default())
    }
}

impl MaxScorePicker {
    pub fn new(params: PickerParams) -> MaxScorePicker {
        MaxScorePicker {
            max: params.max_num_of_endpoints.max(1),
        }
    }
}

impl Plugin for MaxScorePicker {}

impl Picker for MaxScorePicker {
    fn pick(
        &self,
        _candidates: &[Candidate],
        scored: &mut [Scored],
        ctx: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    ) {
        if self.max == 1 {
            let mut best = scored[0];
            let mut ties = 1u32;
            for &s in &scored[1..] {
                match s.score.total_cmp(&best.score) {
                    std::cmp::Ordering::Greater => (best, ties) = (s, 1),
                    std::cmp::Ordering::Equal => {
                        ties += 1;
                        if ctx.rng.random_range(0..ties) == 0 {
                            best = s;
                        }
                    }
                    std::cmp::Ordering::Less => {}
                }
            }
            picked.push(best.index);
            return;
        }
        shuffle(scored, ctx.rng);
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        picked.extend(scored.iter().take(self.max).map(|s| s.index));
    }
}

//! GIE's `random-picker` (gie-facts §3.4): a uniform choice, ignoring scores; with
//! `maxNumOfEndpoints` > 1, a uniformly random ordering of that many. No state; the
//! randomness is the decision's RNG.

use super::{PickerParams, shuffle};
use crate::epp::endpoint::Candidate;
use crate::epp::scheduler::{Picker, Plugin, SchedulingContext, Scored};

pub const TYPE: &str = "random-picker";

#[derive(Debug)]
pub struct RandomPicker {
    max: usize,
}

impl Default for RandomPicker {
    fn default() -> Self {
        RandomPicker::new(PickerParams::default())
    }
}

impl RandomPicker {
    pub fn new(params: PickerParams) -> RandomPicker {
        RandomPicker {
            max: params.max_num_of_endpoints.max(1),
        }
    }
}

impl Plugin for RandomPicker {}

impl Picker for RandomPicker {
    fn pick(
        &self,
        _candidates: &[Candidate],
        scored: &mut [Scored],
        ctx: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    ) {
        shuffle(scored, ctx.rng);
        picked.extend(scored.iter().take(self.max).map(|s| s.index));
    }
}

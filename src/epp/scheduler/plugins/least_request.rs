//! `least-request-picker`, an igw extension (the classic policy): ignores scores and
//! picks the candidate with the fewest requests this picker has in flight to it,
//! ties broken at random with the decision's RNG. `maxNumOfEndpoints` > 1 returns
//! the next least loaded as fallbacks. No state: the in-flight counts come with the
//! candidate table.

use super::{PickerParams, shuffle};
use crate::epp::endpoint::Candidate;
use crate::epp::scheduler::{Picker, Plugin, SchedulingContext, Scored};

pub const TYPE: &str = "least-request-picker";

#[derive(Debug)]
pub struct LeastRequestPicker {
    max: usize,
}

impl Default for LeastRequestPicker {
    fn default() -> Self {
        LeastRequestPicker::new(PickerParams::default())
    }
}

impl LeastRequestPicker {
    pub fn new(params: PickerParams) -> LeastRequestPicker {
        LeastRequestPicker {
            max: params.max_num_of_endpoints.max(1),
        }
    }
}

impl Plugin for LeastRequestPicker {}

impl Picker for LeastRequestPicker {
    fn pick(
        &self,
        candidates: &[Candidate],
        scored: &mut [Scored],
        ctx: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    ) {
        shuffle(scored, ctx.rng);
        scored.sort_by_key(|s| candidates[s.index].in_flight);
        picked.extend(scored.iter().take(self.max).map(|s| s.index));
    }
}

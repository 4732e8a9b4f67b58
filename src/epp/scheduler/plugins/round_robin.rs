//! `round-robin-picker`, an igw extension (the classic policy; GIE's conformance
//! EPP, lwepp, round-robins too): ignores scores and walks the candidates in table
//! order, one step per decision, with a shared atomic counter. The host should keep
//! its candidate table in a stable order (e.g. by name) for the rotation to be fair.
//! `maxNumOfEndpoints` > 1 returns the next ones as fallbacks.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::PickerParams;
use crate::epp::endpoint::Candidate;
use crate::epp::scheduler::{Picker, Plugin, SchedulingContext, Scored};

pub const TYPE: &str = "round-robin-picker";

#[derive(Debug)]
pub struct RoundRobinPicker {
    max: usize,
    next: AtomicUsize,
}

impl Default for RoundRobinPicker {
    fn default() -> Self {
        RoundRobinPicker::new(PickerParams::default())
    }
}

impl RoundRobinPicker {
    pub fn new(params: PickerParams) -> RoundRobinPicker {
        RoundRobinPicker {
            max: params.max_num_of_endpoints.max(1),
            next: AtomicUsize::new(0),
        }
    }
}

impl Plugin for RoundRobinPicker {}

impl Picker for RoundRobinPicker {
    fn pick(
        &self,
        _candidates: &[Candidate],
        scored: &mut [Scored],
        _ctx: &mut SchedulingContext<'_>,
        picked: &mut Vec<usize>,
    ) {
        let n = scored.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        picked.extend((0..self.max.min(n)).map(|k| scored[(start + k) % n].index));
    }
}

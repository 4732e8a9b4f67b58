//! Per-request scratch for one scheduling decision: reusable buffers (so a decision
//! allocates little) and the prompt's prefix hashes, so each block is hashed once per
//! request: as far as the prefix walk needs during the decision, the rest when the
//! index records the request after the pick.
//!
//! It holds no endpoint state and nothing that outlives the request's meaning: the
//! scheduler clears what matters at the start of every decision.

use super::Scored;
use super::prefix::PrefixScratch;

/// Scratch owned by the host (one per worker or per request) and lent to a decision
/// through [`super::SchedulingContext`].
#[derive(Debug, Default)]
pub struct CycleState {
    pub(super) subset: Vec<usize>,
    pub(super) totals: Vec<f64>,
    pub(super) scores: Vec<f64>,
    pub(super) scored: Vec<Scored>,
    pub(super) next: Vec<usize>,
    pub(crate) prefix: PrefixScratch,
}

impl CycleState {
    /// Forgets the previous request's derived data; buffers keep their capacity.
    pub(super) fn begin(&mut self) {
        self.prefix.invalidate();
    }
}

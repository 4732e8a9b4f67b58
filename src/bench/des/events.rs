//! The simulation's event queue: what can happen next, earliest first, and among
//! events at the same virtual time in the order they were scheduled (a sequence
//! number), so a run replays identically.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Event {
    /// Request `i`, which waited for another to end, is sent.
    Release(u32),
    /// The next request in arrival order arrives.
    Arrival,
    /// Engine `i`'s step in flight ends.
    StepEnd(u32),
    /// Engine `i` may have a request out of the frontend.
    Wake(u32),
    /// The scraper reads every engine's metrics.
    Scrape,
}

/// Earliest first; equal times in scheduling order.
#[derive(Default)]
pub(super) struct EventQueue {
    heap: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    seq: u64,
}

impl EventQueue {
    pub(super) fn push(&mut self, at: Duration, event: Event) {
        self.heap.push(Reverse((at, self.seq, event)));
        self.seq += 1;
    }

    pub(super) fn pop(&mut self) -> Option<(Duration, Event)> {
        self.heap.pop().map(|Reverse((at, _, e))| (at, e))
    }
}

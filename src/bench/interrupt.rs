//! Stopping a live or target run early without losing what it measured.
//!
//! The first Ctrl-C stops the client from sending: the stage in progress sends none of
//! its remaining requests, the requests already sent are answered and recorded, no
//! later job starts, and the report covers what ran, saying where it stopped
//! ([`Interrupted`]). A second Ctrl-C quits at once (exit status 130) and writes
//! nothing. A virtual run is not interruptible: it is CPU-bound and takes seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

/// The exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Shared between the signal handler and the client. Holds the index, within the
/// stage being sent, of the first request not to send; `usize::MAX` until stopped.
#[derive(Clone, Debug)]
pub struct Interrupt(Arc<AtomicUsize>);

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt(Arc::new(AtomicUsize::new(usize::MAX)))
    }
}

impl Interrupt {
    /// One that never fires unless [`Interrupt::set`] is called.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Stops the run: nothing more is sent.
    pub fn set(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// Stops the run as if Ctrl-C came just before the stage being sent reached its
    /// request `n` (0-based): a deterministic stand-in for the signal, for tests.
    pub fn before_request(&self, n: usize) {
        self.0.store(n, Ordering::SeqCst);
    }

    /// Whether the run has been told to stop.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst) != usize::MAX
    }

    /// Whether request `i` of the stage being sent must stay unsent.
    pub fn stops(&self, i: usize) -> bool {
        i >= self.0.load(Ordering::SeqCst)
    }

    /// Watches for Ctrl-C on the current tokio runtime: the first sets this interrupt,
    /// the second exits the process. Drop or abort the handle when the run is over.
    pub fn on_ctrl_c(&self) -> tokio::task::JoinHandle<()> {
        let interrupt = self.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return; // no signal handling here: the default (quit) applies
            }
            interrupt.set();
            eprintln!(
                "interrupted: sending no more requests, waiting for those in flight, then \
                 writing the report (Ctrl-C again to quit now)"
            );
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("quitting; no report written");
                std::process::exit(EXIT_INTERRUPTED);
            }
        })
    }
}

/// Where an interrupted run stopped, as `summary.json` records it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Interrupted {
    /// The strategy whose job was sending.
    pub strategy: String,
    /// 0-based index of the stage it was sending.
    pub stage: usize,
    /// Requests of that stage sent (all answered and in the report) and planned.
    pub sent: usize,
    pub planned: usize,
    /// (strategy, stage) jobs that never started.
    pub jobs_not_run: usize,
}

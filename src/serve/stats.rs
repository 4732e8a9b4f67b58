//! What the server's limits did: connections accepted, open and closed by a timeout,
//! bodies refused, bytes buffered; and those numbers as Prometheus text.
//!
//! Plain atomics, written on the connection path without locks and read whenever an
//! app renders its `/metrics`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::body::{BodyError, Budget};

/// Counters of one server (one listener).
#[derive(Debug)]
pub struct ServeStats {
    accepted: AtomicU64,
    open: AtomicU64,
    peak: AtomicU64,
    accept_paused: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    unread_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
    over_budget: AtomicU64,
    too_large: AtomicU64,
    budget: Arc<Budget>,
}

/// A copy of [`ServeStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeStatsSnapshot {
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Most connections open at once since start.
    pub connections_peak: u64,
    /// Times the server stopped accepting because `max_connections` were open.
    pub accept_paused: u64,
    /// Connections closed because a request head took longer than its timeout.
    pub header_timeouts: u64,
    /// Kept-alive connections closed after waiting the idle timeout for a request.
    pub idle_timeouts: u64,
    /// Connections closed because a response waited the idle timeout for the client
    /// to read it.
    pub unread_timeouts: u64,
    /// Request bodies that did not arrive within the body timeout.
    pub body_timeouts: u64,
    /// Request bodies refused because the buffered-bytes budget was in use.
    pub bodies_over_budget: u64,
    /// Request bodies refused because they could never fit the budget.
    pub bodies_too_large: u64,
    /// Request body bytes reserved now, bytes.
    pub inflight_body_bytes: u64,
    /// The budget, bytes.
    pub max_inflight_body_bytes: u64,
}

/// Why the server closed a connection on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Closed {
    HeaderTimeout,
    IdleTimeout,
    /// A response write blocked for the idle timeout.
    Unread,
}

impl ServeStats {
    pub(super) fn new(budget: Arc<Budget>) -> ServeStats {
        ServeStats {
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            accept_paused: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            unread_timeouts: AtomicU64::new(0),
            body_timeouts: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            budget,
        }
    }

    pub(super) fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(open, Ordering::Relaxed);
    }

    pub(super) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn accept_paused(&self) {
        self.accept_paused.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn closed_by(&self, why: Closed) {
        let counter = match why {
            Closed::HeaderTimeout => &self.header_timeouts,
            Closed::IdleTimeout => &self.idle_timeouts,
            Closed::Unread => &self.unread_timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn body_refused(&self, e: &BodyError) {
        let counter = match e {
            BodyError::TimedOut(_) => &self.body_timeouts,
            BodyError::OverBudget { .. } => &self.over_budget,
            BodyError::TooLarge { .. } => &self.too_large,
            BodyError::Transport(_) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ServeStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServeStatsSnapshot {
            connections_accepted: get(&self.accepted),
            connections_open: get(&self.open),
            connections_peak: get(&self.peak),
            accept_paused: get(&self.accept_paused),
            header_timeouts: get(&self.header_timeouts),
            idle_timeouts: get(&self.idle_timeouts),
            unread_timeouts: get(&self.unread_timeouts),
            body_timeouts: get(&self.body_timeouts),
            bodies_over_budget: get(&self.over_budget),
            bodies_too_large: get(&self.too_large),
            inflight_body_bytes: self.budget.in_use() as u64,
            max_inflight_body_bytes: self.budget.total() as u64,
        }
    }
}

impl ServeStatsSnapshot {
    /// Appends the `igw_http_*` families, each sample labelled with `labels` (the
    /// inside of a label set, `engine="0",model_name="m"`, or empty) and, where a
    /// family has one, a `reason` label sorted after them.
    pub fn render(&self, out: &mut String, labels: &str) {
        let plain = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let with_reason = |reason: &str| {
            if labels.is_empty() {
                format!("{{reason=\"{reason}\"}}")
            } else {
                format!("{{{labels},reason=\"{reason}\"}}")
            }
        };
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "igw_http_connections_open",
            "gauge",
            "HTTP connections open.",
            &[(plain.clone(), self.connections_open)],
        );
        family(
            "igw_http_connections_peak",
            "gauge",
            "Most HTTP connections open at once since start.",
            &[(plain.clone(), self.connections_peak)],
        );
        family(
            "igw_http_connections_accepted_total",
            "counter",
            "HTTP connections accepted.",
            &[(plain.clone(), self.connections_accepted)],
        );
        family(
            "igw_http_accept_paused_total",
            "counter",
            "Times accepting paused because the connection limit was reached.",
            &[(plain.clone(), self.accept_paused)],
        );
        family(
            "igw_http_connections_timed_out_total",
            "counter",
            "HTTP connections closed by the server: a request head too slow, idle too long, or a response left unread too long.",
            &[
                (with_reason("header"), self.header_timeouts),
                (with_reason("idle"), self.idle_timeouts),
                (with_reason("unread"), self.unread_timeouts),
            ],
        );
        family(
            "igw_http_request_bodies_refused_total",
            "counter",
            "Request bodies refused: too slow, over the buffered-bytes budget, or larger than it.",
            &[
                (with_reason("over_budget"), self.bodies_over_budget),
                (with_reason("timeout"), self.body_timeouts),
                (with_reason("too_large"), self.bodies_too_large),
            ],
        );
        family(
            "igw_http_inflight_body_bytes",
            "gauge",
            "Request body bytes buffered or reserved now.",
            &[(plain.clone(), self.inflight_body_bytes)],
        );
        family(
            "igw_http_max_inflight_body_bytes",
            "gauge",
            "The budget of request body bytes buffered at once.",
            &[(plain, self.max_inflight_body_bytes)],
        );
    }
}

//! The pool's live state: every endpoint with its last scraped metrics, health and the
//! picker's own load on it, published as immutable [`PoolSnapshot`]s.
//!
//! DESIGN invariant 3: the request path never waits. It loads the current snapshot
//! (an `ArcSwap` load, no lock) and copies [`Candidate`]s out of it; the scrape task
//! builds the next snapshot off to the side and swaps it in once per round. The load
//! counters are the exception to immutability: each endpoint's [`EndpointLoad`] is an
//! `Arc` of atomics shared by every snapshot, so a request counted on an old snapshot
//! is seen by the next one.
//!
//! Health: an endpoint is `Pending` until its first scrape, `Healthy` while scrapes
//! succeed, and `Unhealthy` after a failed scrape or when its metrics grow older than
//! the staleness threshold (`--metrics-staleness-threshold`, 2 s, gie-facts §2.2); it is
//! healthy again as soon as metrics return. Only healthy endpoints with fresh metrics
//! are candidates, and only they count in the `inference_pool_*` averages (gie-facts
//! §8.2). This module does no I/O and reads no clock: callers pass `now`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::endpoint::{Candidate, Endpoint, EndpointLoad, EndpointMetrics};
use super::lifecycle::outlier::OutlierState;

/// GIE's `--metrics-staleness-threshold` default.
pub const DEFAULT_STALENESS_THRESHOLD: Duration = Duration::from_secs(2);

/// Whether the picker may route to an endpoint, as far as scraping can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not scraped yet.
    Pending,
    Healthy,
    /// The last scrape failed, or the metrics went stale.
    Unhealthy,
}

/// One endpoint in one snapshot.
#[derive(Clone, Debug)]
pub struct EndpointState {
    pub endpoint: Arc<Endpoint>,
    /// Shared by all snapshots; updated by the request path.
    pub load: Arc<EndpointLoad>,
    /// The request path's failure streak and ejection; shared like `load`.
    pub outlier: Arc<OutlierState>,
    /// The last metrics scraped successfully, kept through failures for display.
    pub metrics: Option<EndpointMetrics>,
    pub health: Health,
    /// Why the endpoint is unhealthy; `None` when healthy or pending.
    pub last_error: Option<String>,
}

impl EndpointState {
    fn new(endpoint: Endpoint) -> EndpointState {
        EndpointState {
            endpoint: Arc::new(endpoint),
            load: Arc::default(),
            outlier: Arc::default(),
            metrics: None,
            health: Health::Pending,
            last_error: None,
        }
    }

    /// This endpoint as one row of the scheduler's candidate table: its metrics and its
    /// load counters as they are now.
    pub fn candidate(&self) -> Candidate {
        Candidate {
            endpoint: self.endpoint.clone(),
            metrics: self.metrics.clone(),
            in_flight: self.load.in_flight(),
            in_flight_tokens: self.load.in_flight_tokens(),
            sent_since_scrape: self.load.sent_since_scrape(),
        }
    }

    /// Healthy with metrics no older than `threshold` at `now`, and not ejected for
    /// failing requests: the endpoint may take requests and counts in pool averages.
    pub fn is_routable(&self, now: Duration, threshold: Duration) -> bool {
        self.health == Health::Healthy
            && self.fresh_metrics(now, threshold).is_some()
            && !self.outlier.ejected(now)
    }

    fn fresh_metrics(&self, now: Duration, threshold: Duration) -> Option<&EndpointMetrics> {
        self.metrics
            .as_ref()
            .filter(|m| now.saturating_sub(m.updated_at) <= threshold)
    }
}

/// The pool at one moment. Immutable once published.
#[derive(Clone, Debug)]
pub struct PoolSnapshot {
    pub pool: String,
    pub endpoints: Vec<EndpointState>,
    /// Metrics older than this make an endpoint unhealthy.
    pub staleness_threshold: Duration,
    /// Bumped by every publish; lets readers tell snapshots apart.
    pub version: u64,
}

impl PoolSnapshot {
    /// The scheduler's candidate table at `now`: routable endpoints, with their load
    /// counters copied, in pool order.
    pub fn candidates(&self, now: Duration) -> Vec<Candidate> {
        self.routable(now).map(EndpointState::candidate).collect()
    }

    /// The endpoint named `name`, whatever its health.
    pub fn get(&self, name: &str) -> Option<&EndpointState> {
        self.endpoints.iter().find(|e| e.endpoint.name == name)
    }

    /// Routable endpoints at `now` (`inference_pool_ready_pods`).
    pub fn ready_endpoints(&self, now: Duration) -> usize {
        self.routable(now).count()
    }

    /// Mean KV-cache use, 0..=1, over routable endpoints; 0 when there are none
    /// (`inference_pool_average_kv_cache_utilization`).
    pub fn average_kv_cache_utilization(&self, now: Duration) -> f64 {
        self.average(now, |m| m.kv_cache_usage)
    }

    /// Mean waiting-queue length, requests (`inference_pool_average_queue_size`).
    pub fn average_queue_size(&self, now: Duration) -> f64 {
        self.average(now, |m| m.waiting_queue_size as f64)
    }

    /// Mean running batch, requests (`inference_pool_average_running_requests`).
    pub fn average_running_requests(&self, now: Duration) -> f64 {
        self.average(now, |m| m.running_requests as f64)
    }

    fn routable(&self, now: Duration) -> impl Iterator<Item = &EndpointState> {
        let threshold = self.staleness_threshold;
        self.endpoints
            .iter()
            .filter(move |e| e.is_routable(now, threshold))
    }

    fn average(&self, now: Duration, value: impl Fn(&EndpointMetrics) -> f64) -> f64 {
        let (sum, n) = self
            .routable(now)
            .filter_map(|e| e.metrics.as_ref())
            .fold((0.0, 0usize), |(sum, n), m| (sum + value(m), n + 1));
        if n == 0 { 0.0 } else { sum / n as f64 }
    }
}

/// What one scrape of one endpoint produced.
#[derive(Clone, Debug)]
pub struct ScrapeOutcome {
    pub endpoint: Arc<Endpoint>,
    /// The extracted metrics, or why there are none.
    pub result: Result<EndpointMetrics, String>,
    /// The scrape ran out of time. A busy server answers its metrics late; it is not
    /// a dead one, so a timeout alone does not take an endpoint out of rotation: it
    /// stays routable on its last metrics until they are older than the staleness
    /// threshold. Refusals, HTTP errors and garbage count at once.
    pub timed_out: bool,
}

/// An endpoint whose health changed in a publish, for logging once per change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub endpoint: Arc<Endpoint>,
    pub from: Health,
    pub to: Health,
    /// The error that made it unhealthy.
    pub error: Option<String>,
}

/// Holds the current [`PoolSnapshot`]; cheap to read from any task.
#[derive(Debug)]
pub struct Datastore {
    current: ArcSwap<PoolSnapshot>,
}

impl Datastore {
    pub fn new(pool: &str, endpoints: Vec<Endpoint>, staleness_threshold: Duration) -> Datastore {
        Datastore {
            current: ArcSwap::from_pointee(PoolSnapshot {
                pool: pool.to_string(),
                endpoints: endpoints.into_iter().map(EndpointState::new).collect(),
                staleness_threshold,
                version: 0,
            }),
        }
    }

    /// The current snapshot. Lock-free; hold it for one decision, not across awaits
    /// that may last longer than a scrape interval.
    pub fn snapshot(&self) -> Arc<PoolSnapshot> {
        self.current.load_full()
    }

    /// Replaces the endpoint set (discovery). Endpoints kept by name and address keep
    /// their load, metrics and health; new ones start `Pending`. Returns the endpoints
    /// that left.
    pub fn set_endpoints(&self, endpoints: Vec<Endpoint>) -> Vec<Arc<Endpoint>> {
        let previous = self.current.rcu(|cur| {
            let mut old: HashMap<&Endpoint, &EndpointState> = cur
                .endpoints
                .iter()
                .map(|e| (e.endpoint.as_ref(), e))
                .collect();
            let next = endpoints
                .iter()
                .map(|e| match old.remove(e) {
                    Some(state) => state.clone(),
                    None => EndpointState::new(e.clone()),
                })
                .collect();
            PoolSnapshot {
                endpoints: next,
                version: cur.version + 1,
                ..PoolSnapshot::clone_shallow(cur)
            }
        });
        let kept: HashSet<&Endpoint> = endpoints.iter().collect();
        previous
            .endpoints
            .iter()
            .filter(|e| !kept.contains(e.endpoint.as_ref()))
            .map(|e| e.endpoint.clone())
            .collect()
    }

    /// Applies one scrape round and swaps in the resulting snapshot (one swap however
    /// many endpoints). Endpoints with fresh metrics get `metrics_refreshed()` on their
    /// load after the swap, so no reader sees new metrics with a reset count missing
    /// requests, only (briefly) old metrics with the count still in. Endpoints without
    /// an outcome are checked for staleness at `now`. Returns the health changes.
    pub fn publish(&self, outcomes: Vec<ScrapeOutcome>, now: Duration) -> Vec<Transition> {
        let by_endpoint: HashMap<&Endpoint, &ScrapeOutcome> =
            outcomes.iter().map(|o| (o.endpoint.as_ref(), o)).collect();
        let mut published = None;
        let previous = self.current.rcu(|cur| {
            let next = Arc::new(apply(cur, &by_endpoint, now));
            published = Some(next.clone());
            next
        });
        let Some(next) = published else {
            return Vec::new();
        };
        for state in &next.endpoints {
            if matches!(by_endpoint.get(state.endpoint.as_ref()), Some(o) if o.result.is_ok()) {
                state.load.metrics_refreshed();
            }
        }
        transitions(&previous, &next)
    }
}

impl PoolSnapshot {
    /// The snapshot's settings with no endpoints, for building a successor.
    fn clone_shallow(&self) -> PoolSnapshot {
        PoolSnapshot {
            pool: self.pool.clone(),
            endpoints: Vec::new(),
            staleness_threshold: self.staleness_threshold,
            version: self.version,
        }
    }
}

fn apply(
    cur: &PoolSnapshot,
    outcomes: &HashMap<&Endpoint, &ScrapeOutcome>,
    now: Duration,
) -> PoolSnapshot {
    let threshold = cur.staleness_threshold;
    let endpoints = cur
        .endpoints
        .iter()
        .map(|state| {
            let mut next = state.clone();
            let outcome = outcomes.get(state.endpoint.as_ref());
            match outcome.map(|o| (&o.result, o.timed_out)) {
                Some((Ok(metrics), _)) => {
                    next.metrics = Some(metrics.clone());
                    next.health = Health::Healthy;
                    next.last_error = None;
                }
                Some((Err(error), true)) if next.fresh_metrics(now, threshold).is_some() => {
                    // Slow, not gone: keep routing on the last metrics for now.
                    next.last_error = Some(error.clone());
                }
                Some((Err(error), _)) => {
                    next.health = Health::Unhealthy;
                    next.last_error = Some(error.clone());
                }
                None if next.health == Health::Healthy
                    && next.fresh_metrics(now, threshold).is_none() =>
                {
                    let age = next
                        .metrics
                        .as_ref()
                        .map_or(now, |m| now.saturating_sub(m.updated_at));
                    next.health = Health::Unhealthy;
                    next.last_error = Some(format!(
                        "metrics are stale: last scraped {age:?} ago (threshold {threshold:?})"
                    ));
                }
                _ => {}
            }
            next
        })
        .collect();
    PoolSnapshot {
        endpoints,
        version: cur.version + 1,
        ..cur.clone_shallow()
    }
}

fn transitions(previous: &PoolSnapshot, next: &PoolSnapshot) -> Vec<Transition> {
    let before: HashMap<&Endpoint, Health> = previous
        .endpoints
        .iter()
        .map(|e| (e.endpoint.as_ref(), e.health))
        .collect();
    next.endpoints
        .iter()
        .filter_map(|e| {
            let from = before.get(e.endpoint.as_ref()).copied()?;
            (from != e.health).then(|| Transition {
                endpoint: e.endpoint.clone(),
                from,
                to: e.health,
                error: e.last_error.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;

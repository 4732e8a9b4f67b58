//! The director: one pool's request path from a parsed request to a [`Decision`], and
//! the bookkeeping when that decision ends (GIE's `requestcontrol` Director,
//! gie-facts §1.5).
//!
//! ```text
//! objective → priority ─► candidates from the current snapshot (subset hint, routable)
//!   ─► DecisionCore: admission ─► scheduler ─► PreRequest hooks ─► Decision (targets)
//! ... the transport forwards; the Decision reports back here:
//!   endpoint failed ─► marked unhealthy until its metrics return
//!   response started ─► running gauge +1
//!   response ended / abandoned ─► running gauge −1, duration, usage, plugin hooks
//! ```
//!
//! It reads the datastore's snapshot without locking; the RNG and scratch buffers sit
//! behind short `std::sync` locks that are never held across an await.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::context::RequestContext;
use super::core::{DecisionCore, collect_candidates};
use super::decision::{Decision, Target};
use super::explain::{self, Explanation};
use super::outlier::OutlierPolicy;
use crate::epp::clock::Clock;
use crate::epp::config::objectives::Objectives;
use crate::epp::datastore::{Datastore, ScrapeOutcome};
use crate::epp::endpoint::{Candidate, Endpoint};
use crate::epp::error::EppError;
use crate::epp::metrics::labels::ModelLabels;
use crate::epp::metrics::{EppMetrics, PoolStats};
use crate::epp::request::{Completion, LlmRequest};
use crate::epp::scheduler::{CycleState, SchedulingContext};

/// What a director is made of.
pub struct DirectorParts {
    pub datastore: Arc<Datastore>,
    pub core: DecisionCore,
    pub objectives: Objectives,
    pub metrics: Arc<EppMetrics>,
    pub clock: Arc<dyn Clock>,
    /// Seeds the picker's random tie-breaks.
    pub seed: u64,
    pub outlier: OutlierPolicy,
}

/// Everything a routing decision needs.
pub struct Director {
    datastore: Arc<Datastore>,
    core: DecisionCore,
    objectives: Objectives,
    metrics: Arc<EppMetrics>,
    clock: Arc<dyn Clock>,
    outlier: OutlierPolicy,
    /// Which model names may be metric label values.
    labels: ModelLabels,
    rng: Mutex<StdRng>,
    /// Scratch for decisions, reused so a decision allocates little.
    scratch: Mutex<Vec<Scratch>>,
}

/// A request's metric label values: its model names, bounded (see
/// [`crate::epp::metrics::labels`]).
#[derive(Clone, Debug)]
pub struct Labels {
    pub model: Arc<str>,
    pub target: Arc<str>,
    /// An inference request (it has a body): counted in the request, running and
    /// duration metrics. A header-only request (a GET) is routed but not counted.
    pub counted: bool,
}

/// One decision's reusable buffers.
#[derive(Default)]
struct Scratch {
    cycle: CycleState,
    candidates: Vec<Candidate>,
    rows: Vec<usize>,
}

/// Scratch sets kept for reuse; more concurrent decisions than this allocate their own.
const MAX_SCRATCH: usize = 64;

impl Director {
    pub fn new(parts: DirectorParts) -> Director {
        Director {
            datastore: parts.datastore,
            core: parts.core,
            objectives: parts.objectives,
            metrics: parts.metrics,
            clock: parts.clock,
            outlier: parts.outlier,
            labels: ModelLabels::default(),
            rng: Mutex::new(StdRng::seed_from_u64(parts.seed)),
            scratch: Mutex::new(Vec::new()),
        }
    }

    pub fn datastore(&self) -> &Arc<Datastore> {
        &self.datastore
    }

    pub fn metrics(&self) -> &Arc<EppMetrics> {
        &self.metrics
    }

    pub fn core(&self) -> &DecisionCore {
        &self.core
    }

    /// The picker's current time (the clock the scrape loop stamps metrics with).
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Pool-level figures from the current snapshot, for `inference_pool_*`.
    pub fn pool_stats(&self) -> PoolStats {
        let snap = self.datastore.snapshot();
        let now = self.clock.now();
        PoolStats {
            ready_endpoints: snap.ready_endpoints(now),
            average_kv_cache_utilization: snap.average_kv_cache_utilization(now),
            average_queue_size: snap.average_queue_size(now),
            average_running_requests: snap.average_running_requests(now),
            queue_by_endpoint: snap
                .endpoints
                .iter()
                .filter_map(|e| {
                    let m = e.metrics.as_ref()?;
                    Some((e.endpoint.name.clone(), m.waiting_queue_size))
                })
                .collect(),
        }
    }

    /// Chooses where `request` goes. A refusal is recorded in the metrics here; the
    /// caller only answers it.
    pub fn route(
        self: &Arc<Self>,
        ctx: &RequestContext,
        mut request: LlmRequest,
    ) -> Result<Decision, EppError> {
        request.priority = self.objectives.priority(ctx.objective.as_deref());
        let labels = self.labels_of(&request);
        if labels.counted {
            self.metrics.request_received(
                &labels.model,
                &labels.target,
                request.priority,
                request.body_len,
            );
        }
        match self.decide(ctx, &request, &[]) {
            Ok(targets) => Ok(Decision::new(
                self.clone(),
                Arc::new(request),
                labels,
                targets,
            )),
            Err(err) => {
                self.metrics
                    .request_failed(&labels.model, &labels.target, err.code());
                Err(err)
            }
        }
    }

    /// What the picker would decide for `request` now, and why, without sending or
    /// booking anything (see [`super::explain`]).
    pub fn explain(&self, ctx: &RequestContext, mut request: LlmRequest) -> Explanation {
        request.priority = self.objectives.priority(ctx.objective.as_deref());
        let snap = self.datastore.snapshot();
        explain::explain(
            &snap,
            self.clock.now(),
            &self.core,
            ctx.subset.as_ref(),
            &request,
        )
    }

    /// The bounded label values of `request`'s model names.
    pub(super) fn labels_of(&self, request: &LlmRequest) -> Labels {
        let label = |name: &str| self.labels.label(name, |n| self.pool_serves(n));
        let model = label(&request.incoming_model);
        let target = if request.target_model == request.incoming_model {
            model.clone()
        } else {
            label(&request.target_model)
        };
        Labels {
            model,
            target,
            counted: request.body_len > 0,
        }
    }

    /// Whether an endpoint reports serving `name` (its model or a loaded adapter).
    fn pool_serves(&self, name: &str) -> bool {
        self.datastore.snapshot().endpoints.iter().any(|e| {
            e.metrics.as_ref().is_some_and(|m| {
                m.served_model.as_deref() == Some(name)
                    || m.active_adapters.iter().any(|a| a == name)
                    || m.waiting_adapters.iter().any(|a| a == name)
            })
        })
    }

    /// Chooses new targets for a decision whose targets all failed before anything
    /// was sent, leaving out the endpoints that failed. Not a new request: it is not
    /// counted again. On an error the decision has failed with it.
    pub fn reroute(&self, ctx: &RequestContext, decision: &mut Decision) -> Result<(), EppError> {
        let request = decision.request().clone();
        match self.decide(ctx, &request, decision.failed_addresses()) {
            Ok(targets) => {
                decision.retarget(targets);
                Ok(())
            }
            Err(err) => {
                decision.fail(&err);
                Err(err)
            }
        }
    }

    fn decide(
        &self,
        ctx: &RequestContext,
        request: &LlmRequest,
        exclude: &[std::net::SocketAddr],
    ) -> Result<Vec<Target>, EppError> {
        let snap = self.datastore.snapshot();
        let now = self.clock.now();
        let started = Instant::now();
        let mut scratch = self
            .scratch
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        let Scratch {
            cycle,
            candidates,
            rows,
        } = &mut scratch;
        let decided = collect_candidates(
            &snap.endpoints,
            now,
            snap.staleness_threshold,
            ctx.subset.as_ref(),
            exclude,
            candidates,
            rows,
        )
        .and_then(|()| {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            let mut sctx = SchedulingContext::new(now, &mut *rng, cycle);
            self.core.decide(request, candidates, &mut sctx)
        });
        let targets = decided.map(|result| {
            result
                .primary
                .iter()
                .map(|&i| {
                    let state = &snap.endpoints[rows[i]];
                    Target {
                        endpoint: state.endpoint.clone(),
                        load: state.load.clone(),
                        outlier: state.outlier.clone(),
                    }
                })
                .collect()
        });
        self.return_scratch(scratch);
        if targets.is_ok() {
            self.metrics.scheduled(started.elapsed());
        }
        targets
    }

    fn return_scratch(&self, mut scratch: Scratch) {
        // Candidates hold endpoint handles and metrics: drop them now, keep capacity.
        scratch.candidates.clear();
        if let Ok(mut s) = self.scratch.lock()
            && s.len() < MAX_SCRATCH
        {
            s.push(scratch);
        }
    }

    /// A request was refused (before or after routing) with `error`.
    pub fn rejected(&self, request: Option<&LlmRequest>, error: &EppError) {
        match request.map(|r| self.labels_of(r)) {
            Some(l) => self
                .metrics
                .request_failed(&l.model, &l.target, error.code()),
            None => self.metrics.request_failed("", "", error.code()),
        }
    }

    /// A decision's request failed with `error` after routing.
    pub(super) fn decision_failed(&self, labels: &Labels, error: &EppError) {
        self.metrics
            .request_failed(&labels.model, &labels.target, error.code());
    }

    /// A forward to `target` failed before any response: refused, unreachable, or the
    /// connection closed before the response began. Marked unhealthy until its next
    /// good scrape (a live server is back within one scrape interval), and counted as
    /// a failure for outlier detection.
    pub(super) fn endpoint_failed(&self, target: &Target, error: &str) {
        let endpoint = &target.endpoint;
        tracing::warn!(endpoint = %endpoint.name, address = %endpoint.address, error, "endpoint failed a request before responding; marked unhealthy until its metrics return");
        // Recorded like a failed scrape: unhealthy now, healthy at the next good scrape.
        let snap = self.datastore.snapshot();
        if let Some(state) = snap.get(&endpoint.name) {
            self.datastore.publish(
                vec![ScrapeOutcome {
                    endpoint: state.endpoint.clone(),
                    result: Err(format!("request forwarding failed: {error}")),
                    timed_out: false,
                }],
                self.clock.now(),
            );
        }
        self.outlier_failure(target);
    }

    /// A request to `target` failed after it was sent (no response in time, or the
    /// response broke off): an outlier-detection failure.
    pub(super) fn outlier_failure(&self, target: &Target) {
        let now = self.clock.now();
        let ejected = target.outlier.record_failure(now, &self.outlier, || {
            let snap = self.datastore.snapshot();
            let out = snap
                .endpoints
                .iter()
                .filter(|e| e.outlier.ejected(now))
                .count();
            out < self.outlier.max_ejected(snap.endpoints.len())
        });
        if let Some(length) = ejected {
            self.metrics.endpoint_ejected();
            tracing::warn!(
                endpoint = %target.endpoint.name,
                address = %target.endpoint.address,
                ejected_for = ?length,
                "endpoint ejected: its requests keep failing"
            );
        }
    }

    /// A response broke off after its headers.
    pub(super) fn response_broken(&self, reason: &str) {
        self.metrics.response_broken(reason);
    }

    /// A request is sent again after failing before any response.
    pub fn retried(&self, reason: &str) {
        self.metrics.retried(reason);
    }

    /// The endpoint answered with response headers; [`Director::completed`] follows
    /// exactly once. A 5xx counts against the endpoint, anything else for it.
    pub(super) fn response_started(&self, labels: &Labels, target: &Target, status: u16) {
        if status >= 500 {
            self.outlier_failure(target);
        } else {
            target.outlier.record_success();
        }
        if labels.counted {
            self.metrics.running_delta(&labels.model, 1);
        }
    }

    /// A decision ended. `responded` says whether response headers had arrived (and
    /// so [`Director::response_started`] ran). A response below 400 proves the pool
    /// serves the request's models: their names become label values.
    pub(super) fn completed(
        &self,
        request: &LlmRequest,
        labels: &Labels,
        endpoint: &Endpoint,
        responded: bool,
        done: &Completion,
    ) {
        if responded && labels.counted {
            self.metrics.running_delta(&labels.model, -1);
            if done.status >= 400 {
                self.metrics
                    .request_failed(&labels.model, &labels.target, "ModelServerError");
            }
            self.metrics.response_completed(
                &labels.model,
                &labels.target,
                done.elapsed,
                done.bytes,
                done.usage,
            );
            if done.status < 400 {
                self.labels.learn(&request.incoming_model);
                self.labels.learn(&request.target_model);
            }
        }
        self.core
            .scheduler
            .on_response_complete(request, endpoint, done);
    }

    /// Every endpoint of the pool.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.datastore
            .snapshot()
            .endpoints
            .iter()
            .map(|e| e.endpoint.clone())
            .collect()
    }
}

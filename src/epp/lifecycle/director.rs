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
use crate::epp::clock::Clock;
use crate::epp::config::objectives::Objectives;
use crate::epp::datastore::{Datastore, ScrapeOutcome};
use crate::epp::endpoint::{Candidate, Endpoint};
use crate::epp::error::EppError;
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
}

/// Everything a routing decision needs.
pub struct Director {
    datastore: Arc<Datastore>,
    core: DecisionCore,
    objectives: Objectives,
    metrics: Arc<EppMetrics>,
    clock: Arc<dyn Clock>,
    rng: Mutex<StdRng>,
    /// Scratch for decisions, reused so a decision allocates little.
    scratch: Mutex<Vec<Scratch>>,
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
        self.metrics.request_received(
            &request.incoming_model,
            &request.target_model,
            request.priority,
            request.body_len,
        );
        match self.decide(ctx, &request) {
            Ok(targets) => Ok(Decision::new(self.clone(), Arc::new(request), targets)),
            Err(err) => {
                self.rejected(Some(&request), &err);
                Err(err)
            }
        }
    }

    fn decide(&self, ctx: &RequestContext, request: &LlmRequest) -> Result<Vec<Target>, EppError> {
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
        let (model, target) = request
            .map(|r| (r.incoming_model.as_str(), r.target_model.as_str()))
            .unwrap_or(("", ""));
        self.metrics.request_failed(model, target, error.code());
    }

    /// A forward to `endpoint` failed before anything was sent (refused, unreachable).
    pub(super) fn endpoint_failed(&self, endpoint: &Endpoint, error: &str) {
        tracing::warn!(endpoint = %endpoint.name, address = %endpoint.address, error, "endpoint refused a request; marked unhealthy until its metrics return");
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
    }

    /// The endpoint answered with response headers; [`Director::completed`] follows
    /// exactly once.
    pub(super) fn response_started(&self, request: &LlmRequest) {
        self.metrics.running_delta(&request.incoming_model, 1);
    }

    /// A decision ended. `responded` says whether response headers had arrived (and
    /// so [`Director::response_started`] ran).
    pub(super) fn completed(
        &self,
        request: &LlmRequest,
        endpoint: &Endpoint,
        responded: bool,
        done: &Completion,
    ) {
        if responded {
            self.metrics.running_delta(&request.incoming_model, -1);
            if done.status >= 400 {
                self.metrics.request_failed(
                    &request.incoming_model,
                    &request.target_model,
                    "ModelServerError",
                );
            }
            self.metrics.response_completed(
                &request.incoming_model,
                &request.target_model,
                done.elapsed,
                done.bytes,
                done.usage,
            );
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

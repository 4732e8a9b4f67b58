//! The director: one request's way through the picker, between the gateway that
//! parsed it and the endpoint that will serve it (GIE's `requestcontrol` Director,
//! gie-facts §1.5).
//!
//! ```text
//! objective → priority ─► candidates from the current snapshot ─► admission
//!   (shed priority < 0 when saturated) ─► scheduler ─► PreRequest hooks
//!   (prefix index) ─► ordered targets for the gateway
//! ```
//!
//! It reads the datastore's snapshot without locking; the scheduler's RNG and scratch
//! buffers sit behind short `std::sync` locks that are never held across an await.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::clock::Clock;
use super::config::objectives::Objectives;
use super::datastore::{Datastore, ScrapeOutcome};
use super::endpoint::{Candidate, Endpoint};
use super::error::EppError;
use super::metrics::{EppMetrics, PoolStats};
use super::proxy::{Completion, RequestRouter, Target};
use super::request::LlmRequest;
use super::saturation::{Detector, should_shed};
use super::scheduler::{CycleState, Scheduler, SchedulingContext};

/// Everything a routing decision needs.
pub struct Director {
    datastore: Arc<Datastore>,
    scheduler: Scheduler,
    detector: Detector,
    objectives: Objectives,
    metrics: Arc<EppMetrics>,
    clock: Arc<dyn Clock>,
    rng: Mutex<StdRng>,
    /// Scratch for decisions, reused so a decision allocates little.
    scratch: Mutex<Vec<CycleState>>,
}

impl Director {
    pub fn new(
        datastore: Arc<Datastore>,
        scheduler: Scheduler,
        detector: Detector,
        objectives: Objectives,
        metrics: Arc<EppMetrics>,
        clock: Arc<dyn Clock>,
        seed: u64,
    ) -> Director {
        Director {
            datastore,
            scheduler,
            detector,
            objectives,
            metrics,
            clock,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            scratch: Mutex::new(Vec::new()),
        }
    }

    pub fn datastore(&self) -> &Arc<Datastore> {
        &self.datastore
    }

    pub fn metrics(&self) -> &Arc<EppMetrics> {
        &self.metrics
    }

    /// The picker's current time (the clock the scrape loop stamps metrics with).
    pub fn now(&self) -> std::time::Duration {
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

    fn decide(
        &self,
        request: &mut LlmRequest,
        objective: Option<&str>,
    ) -> Result<Vec<Target>, EppError> {
        request.priority = self.objectives.priority(objective);
        self.metrics.request_received(
            &request.incoming_model,
            &request.target_model,
            request.priority,
            request.body_len,
        );
        let snap = self.datastore.snapshot();
        if snap.endpoints.is_empty() {
            return Err(EppError::Internal("no pods available in datastore".into()));
        }
        let now = self.clock.now();
        let started = Instant::now();
        // Routable endpoints, with their shared load counters alongside.
        let threshold = snap.staleness_threshold;
        let states: Vec<_> = snap
            .endpoints
            .iter()
            .filter(|e| e.is_routable(now, threshold))
            .collect();
        let candidates: Vec<Candidate> = states.iter().map(|e| e.candidate()).collect();
        if candidates.is_empty() {
            return Err(EppError::no_fresh_candidates());
        }
        if should_shed(request.priority, self.detector.saturation(&candidates, now)) {
            return Err(EppError::ResourceExhausted(
                "system saturated, sheddable request dropped".into(),
            ));
        }
        let mut cycle = self
            .scratch
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        let result = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            let mut ctx = SchedulingContext::new(now, &mut *rng, &mut cycle);
            self.scheduler.schedule(request, &candidates, &mut ctx)
        };
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.return_scratch(cycle);
                return Err(e.into());
            }
        };
        self.scheduler
            .on_scheduled(request, &candidates[result.target()], &mut cycle);
        self.return_scratch(cycle);
        self.metrics.scheduled(started.elapsed());
        Ok(result
            .primary
            .iter()
            .map(|&i| Target {
                endpoint: candidates[i].endpoint.clone(),
                load: states[i].load.clone(),
            })
            .collect())
    }

    fn return_scratch(&self, cycle: CycleState) {
        if let Ok(mut s) = self.scratch.lock()
            && s.len() < 64
        {
            s.push(cycle);
        }
    }
}

impl RequestRouter for Director {
    fn route(
        &self,
        request: &mut LlmRequest,
        objective: Option<&str>,
    ) -> Result<Vec<Target>, EppError> {
        self.decide(request, objective)
    }

    fn endpoint_failed(&self, endpoint: &Endpoint, error: &str) {
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

    fn forwarded(&self, request: &LlmRequest, _endpoint: &Endpoint) {
        self.metrics.running_delta(&request.incoming_model, 1);
    }

    fn completed(
        &self,
        request: &LlmRequest,
        _endpoint: &Endpoint,
        status: u16,
        done: &Completion,
    ) {
        self.metrics.running_delta(&request.incoming_model, -1);
        if status >= 400 {
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

    fn rejected(&self, request: Option<&LlmRequest>, error: &EppError) {
        let (model, target) = request
            .map(|r| (r.incoming_model.as_str(), r.target_model.as_str()))
            .unwrap_or(("", ""));
        self.metrics.request_failed(model, target, error.code());
    }

    fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.datastore
            .snapshot()
            .endpoints
            .iter()
            .map(|e| e.endpoint.clone())
            .collect()
    }
}

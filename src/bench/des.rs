//! The virtual-time pool simulation behind `igw bench --virtual`: N simulator engines
//! behind one router, driven by a discrete-event loop over a virtual clock, so a day of
//! traffic runs in seconds and reproduces exactly for a given seed.
//!
//! Events, in time order (ties in the order they were scheduled, by a sequence
//! number): a request arrives and is routed and added to its engine; an engine's step
//! ends and its tokens become visible; an idle engine wakes when a request leaves the
//! frontend; the scraper ticks. Each engine runs one step at a time, back to back while
//! it has work, exactly as `igw sim serve`'s driver runs it (DESIGN invariant 2).
//!
//! Lag is modelled (DESIGN invariant 6). Every scrape interval (50 ms by default, the
//! first at time 0) each endpoint's metrics
//! ([`EndpointMetrics`](crate::epp::endpoint::EndpointMetrics)) are rebuilt from its
//! engine's gauges, stamped with the tick's time, and published as the live scraper
//! and datastore do: `scrape_started` then `metrics_refreshed` on the endpoint's
//! [`EndpointLoad`](crate::epp::endpoint::EndpointLoad), so "sent since scrape"
//! restarts there. A scrape is taken as
//! instantaneous. Between ticks the EPP sees only those numbers plus its own load
//! counters, which count a request from its routing until its last token is delivered
//! (the live gateway's in-flight guard). The baselines ignore metrics.
//!
//! What the EPP is given per request is what the live parser would produce from the
//! body the live client sends ([`DesRequest::prefix_bytes`]: a completions request's
//! prompt text, a chat request's `messages` JSON; without them, the text of the
//! prompt's token ids, [`crate::sim::tokens::decode`]); those bytes are what prefix
//! affinity hashes.
//! The request's model is the LoRA adapter when it has one, else the pool's model.
//! Priorities are all 0, so nothing is shed. A request may wait for another to end
//! ([`DesRequest::after`], a chat session's next turn): it is sent then, or at its
//! planned time if that is later.
//!
//! No I/O, no tokio, no clock reads: times are [`Duration`]s since the run's start.

mod events;
mod router;
mod snapshot;
#[cfg(test)]
mod tests;
mod types;

use std::sync::Arc;
use std::time::Duration;

use events::{Event, EventQueue};
pub use router::Router;
use router::Routing;
use snapshot::{endpoint, metrics_of};
use types::gap_histogram;
pub use types::{DesError, DesReport, DesRequest, EngineTotals, PoolConfig, RequestRecord};

use hdrhistogram::Histogram;

use super::recorder::Failure;

use crate::epp::datastore::{Datastore, ScrapeOutcome};
use crate::epp::endpoint::InFlightGuard;
use crate::sim::engine::{Engine, EngineEvent, NewRequest, StepResult};

/// Runs `requests` through a pool shaped by `pool` behind `router` until every request
/// has finished or failed.
pub fn simulate(
    pool: &PoolConfig,
    router: Router,
    requests: &[DesRequest],
) -> Result<DesReport, DesError> {
    if pool.engines.is_empty() {
        return Err(DesError::NoEngines);
    }
    if pool.scrape_interval.is_zero() {
        return Err(DesError::ZeroScrapeInterval);
    }
    let replicas = pool
        .engines
        .iter()
        .enumerate()
        .map(|(index, config)| {
            Engine::new(config.clone())
                .map(Replica::new)
                .map_err(|message| DesError::Engine { index, message })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let datastore = Datastore::new(
        "des",
        (0..replicas.len()).map(endpoint).collect(),
        pool.staleness_threshold,
    );
    // Requests that wait for another are sent when it ends, not in arrival order.
    let mut order: Vec<u32> = (0..requests.len() as u32)
        .filter(|&i| requests[i as usize].after.is_none())
        .collect();
    order.sort_by_key(|&i| (requests[i as usize].arrival, i));
    // (waited for, waiting), sorted, so a request's dependants are one range.
    let mut dependants: Vec<(u32, u32)> = requests
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((r.after?, i as u32)))
        .collect();
    dependants.sort_unstable();
    let records = requests
        .iter()
        .enumerate()
        .map(|(i, r)| RequestRecord {
            id: i as u64,
            endpoint: None,
            arrival: r.arrival,
            first_token: None,
            done: None,
            prompt_tokens: r.prompt.len() as u32,
            output_tokens: 0,
            cached_tokens: 0,
            finish_reason: None,
            error: None,
        })
        .collect();
    // Inter-token gaps are kept per adapter ("slot" 0: the base model) for the
    // per-adapter reports; a pool without adapters keeps one histogram.
    let mut adapters: Vec<Arc<str>> = requests.iter().filter_map(|r| r.lora.clone()).collect();
    adapters.sort();
    adapters.dedup();
    let slot_of = if adapters.is_empty() {
        Vec::new()
    } else {
        requests
            .iter()
            .map(|r| {
                r.lora.as_ref().map_or(0, |name| {
                    1 + adapters
                        .binary_search(name)
                        .expect("every adapter is listed") as u32
                })
            })
            .collect()
    };
    let sim = Sim {
        now: Duration::ZERO,
        queue: EventQueue::default(),
        replicas,
        datastore,
        routing: Routing::new(router, pool.seed),
        served_model: Arc::from(pool.model.as_str()),
        guards: (0..requests.len()).map(|_| None).collect(),
        last_token: vec![Duration::ZERO; requests.len()],
        token_times: if pool.keep_token_times {
            requests
                .iter()
                .map(|r| Vec::with_capacity(r.output.len()))
                .collect()
        } else {
            Vec::new()
        },
        previous: Vec::new(),
        inter_token: (0..=adapters.len()).map(|_| gap_histogram()).collect(),
        adapters,
        slot_of,
        requests,
        order,
        next_arrival: 0,
        waiting: dependants.len(),
        dependants,
        ended: Vec::new(),
        records,
        unfinished: 0,
        scrapes: 0,
        finished: 0,
        pool,
    };
    Ok(sim.run())
}

/// One engine and its driver's state.
struct Replica {
    engine: Engine,
    /// A step is in flight (its end is queued).
    busy: bool,
    /// The wake-up queued for this idle engine, if any.
    wake: Option<Duration>,
    /// The step in flight's events, delivered at its end.
    events: Vec<EngineEvent>,
    totals: EngineTotals,
}

impl Replica {
    fn new(engine: Engine) -> Replica {
        Replica {
            engine,
            busy: false,
            wake: None,
            events: Vec::new(),
            totals: EngineTotals::default(),
        }
    }
}

struct Sim<'a> {
    now: Duration,
    queue: EventQueue,
    replicas: Vec<Replica>,
    /// What the picker knows of each endpoint, published as the live scraper publishes.
    datastore: Datastore,
    routing: Routing,
    /// Read, never changed: one stage's requests serve every strategy's run.
    requests: &'a [DesRequest],
    /// Indices of the requests that wait for no other, in arrival order.
    order: Vec<u32>,
    next_arrival: usize,
    /// (waited for, waiting) pairs of [`DesRequest::after`], sorted.
    dependants: Vec<(u32, u32)>,
    /// Requests that wait for another and have not been sent yet.
    waiting: usize,
    /// Requests the step being delivered ended that others wait for.
    ended: Vec<u32>,
    records: Vec<RequestRecord>,
    /// Per request: its unit of in-flight load, held until its last token.
    guards: Vec<Option<InFlightGuard>>,
    /// Per request: when its latest token became visible.
    last_token: Vec<Duration>,
    /// Per request, every token's time (empty unless the pool keeps them).
    token_times: Vec<Vec<Duration>>,
    /// Per event of the step being delivered, `last_token` of its request.
    previous: Vec<Duration>,
    /// Inter-token gaps per slot: 0 the base model, `1 + i` adapter `adapters[i]`.
    inter_token: Vec<Histogram<u64>>,
    /// The LoRA adapters the requests name, sorted.
    adapters: Vec<Arc<str>>,
    /// Per request: its slot in `inter_token` (empty when there are no adapters).
    slot_of: Vec<u32>,
    /// Requests inside engines.
    unfinished: usize,
    scrapes: u64,
    finished: usize,
    pool: &'a PoolConfig,
    /// The pool's model, as every scrape's `model_name` label reports it.
    served_model: Arc<str>,
}

impl Sim<'_> {
    fn run(mut self) -> DesReport {
        // Scraped before anything arrives, as a live picker is ready only after its
        // first round.
        self.queue.push(Duration::ZERO, Event::Scrape);
        self.queue_next_arrival();
        while let Some((at, event)) = self.queue.pop() {
            debug_assert!(at >= self.now, "time never runs backwards");
            self.now = at;
            match event {
                Event::Arrival => {
                    let id = self.order[self.next_arrival] as usize;
                    self.next_arrival += 1;
                    self.queue_next_arrival();
                    self.arrive(id);
                }
                Event::Release(id) => {
                    self.waiting -= 1;
                    self.arrive(id as usize);
                }
                Event::StepEnd(e) => self.step_end(e as usize),
                Event::Wake(e) => {
                    let r = &mut self.replicas[e as usize];
                    if r.wake == Some(at) {
                        r.wake = None;
                        if !r.busy {
                            self.kick(e as usize);
                        }
                    }
                }
                Event::Scrape => {
                    self.scrape();
                    let more = self.next_arrival < self.order.len() || self.waiting > 0;
                    if more || self.unfinished > 0 {
                        self.queue
                            .push(at + self.pool.scrape_interval, Event::Scrape);
                    }
                }
            }
        }
        let engines = self
            .replicas
            .iter_mut()
            .map(|r| {
                let mut t = std::mem::take(&mut r.totals);
                t.preemptions = r.engine.metrics().num_preemptions_total;
                t.lora_loads = r.engine.lora_loads();
                t.left_over = r.engine.num_requests();
                t
            })
            .collect();
        let mut slots = self.inter_token.into_iter();
        let mut inter_token = slots.next().expect("slot 0 always exists");
        let inter_token_by_adapter: Vec<_> = self.adapters.into_iter().zip(slots).collect();
        for (_, gaps) in &inter_token_by_adapter {
            // Same bounds, so adding cannot fail.
            let _ = inter_token.add(gaps);
        }
        DesReport {
            records: self.records,
            engines,
            end: self.now,
            scrapes: self.scrapes,
            finished: self.finished,
            inter_token,
            inter_token_by_adapter,
            token_times: self.token_times,
        }
    }

    fn queue_next_arrival(&mut self) {
        if let Some(&i) = self.order.get(self.next_arrival) {
            let at = self.requests[i as usize].arrival.max(self.now);
            self.queue.push(at, Event::Arrival);
        }
    }

    /// Routes request `id`, sent now, and hands it to its engine.
    fn arrive(&mut self, id: usize) {
        let now = self.now;
        self.records[id].arrival = now;
        let snapshot = self.datastore.snapshot();
        let picked = self.routing.pick(
            id as u64,
            &self.requests[id],
            &self.pool.model,
            &snapshot.endpoints,
            now,
            snapshot.staleness_threshold,
        );
        let e = match picked {
            Ok(e) => e,
            Err(error) => {
                let failure = Failure::http(error.status(), error.to_string().as_bytes());
                return self.fail(id, failure);
            }
        };
        self.records[id].endpoint = Some(e);
        // The gateway counts the request as it forwards it.
        let tokens = self.routing.booked_tokens(&self.requests[id]);
        self.guards[id] = Some(snapshot.endpoints[e].load.start_request(tokens));
        // The engine appends the output to the prompt: one allocation holds both.
        let req = &self.requests[id];
        let mut prompt = Vec::with_capacity(req.prompt.len() + req.output.len());
        prompt.extend_from_slice(&req.prompt);
        let new = NewRequest {
            id: id as u64,
            prompt,
            output: req.output.clone(),
            finish_reason: req.finish_reason,
            // A request that names the pool's own model asks for the base weights.
            lora: req.lora.clone().filter(|name| **name != *self.pool.model),
        };
        let replica = &mut self.replicas[e];
        if let Err(error) = replica.engine.add_request(new, now) {
            self.guards[id] = None;
            let failure = Failure::http(error.status(), error.to_string().as_bytes());
            return self.fail(id, failure);
        }
        self.unfinished += 1;
        if !replica.busy {
            self.kick(e);
        }
    }

    fn fail(&mut self, id: usize, error: Failure) {
        let r = &mut self.records[id];
        r.done = Some(self.now);
        r.error = Some(error);
        self.release_dependants(id);
    }

    /// Request `id` has ended (answered or failed): the requests waiting for it are
    /// sent now, or at their planned time if that is later.
    fn release_dependants(&mut self, id: usize) {
        let id = id as u32;
        let start = self.dependants.partition_point(|&(w, _)| w < id);
        for k in start..self.dependants.len() {
            let (waited, waiting) = self.dependants[k];
            if waited != id {
                break;
            }
            let at = self.requests[waiting as usize].arrival.max(self.now);
            self.queue.push(at, Event::Release(waiting));
        }
    }

    /// Starts engine `e`'s next step now, or queues its wake-up if it has nothing
    /// ready. The engine must be idle.
    fn kick(&mut self, e: usize) {
        let r = &mut self.replicas[e];
        debug_assert!(!r.busy);
        match r.engine.step(self.now) {
            StepResult::Ran(out) => {
                r.busy = true;
                r.events = out.events;
                r.totals.steps += 1;
                r.totals.busy += out.duration;
                self.queue.push(out.end, Event::StepEnd(e as u32));
            }
            StepResult::Idle { wake_at: Some(at) } => {
                // An earlier wake-up already queued will re-check; a later one is
                // superseded (it is ignored when it fires).
                if r.wake.is_none_or(|w| at < w) {
                    r.wake = Some(at);
                    self.queue.push(at, Event::Wake(e as u32));
                }
            }
            StepResult::Idle { wake_at: None } => {}
        }
    }

    /// Delivers the step's tokens and starts the next one.
    fn step_end(&mut self, e: usize) {
        let now = self.now;
        let r = &mut self.replicas[e];
        r.busy = false;
        // The requests' entries are scattered; reading them in a tight loop first
        // lets the cache misses overlap.
        self.previous.clear();
        self.previous
            .extend(r.events.iter().map(|event| match *event {
                EngineEvent::Token { id, .. } => self.last_token[id as usize],
                EngineEvent::Finished { .. } => Duration::ZERO,
            }));
        // Most requests in a step share one gap (they also ran in the previous
        // step): equal gaps of one slot are recorded as one run, not one by one.
        let mut gap_run: Option<(usize, u64, u64)> = None;
        let by_adapter = !self.slot_of.is_empty();
        for (event, &previous) in r.events.iter().zip(&self.previous) {
            match *event {
                EngineEvent::Token { id, index, .. } => {
                    let rec = &mut self.records[id as usize];
                    let new_token = index > 0 || rec.first_token.is_none();
                    if new_token && let Some(times) = self.token_times.get_mut(id as usize) {
                        times.push(now);
                    }
                    if index == 0 && rec.first_token.is_none() {
                        rec.first_token = Some(now);
                    } else if index > 0 {
                        let gap = now.saturating_sub(previous);
                        let micros = gap.as_micros().clamp(1, u64::MAX as u128) as u64;
                        let slot = if by_adapter {
                            self.slot_of[id as usize] as usize
                        } else {
                            0
                        };
                        gap_run = match gap_run {
                            Some((k, v, n)) if k == slot && v == micros => Some((k, v, n + 1)),
                            Some((k, v, n)) => {
                                self.inter_token[k].saturating_record_n(v, n);
                                Some((slot, micros, 1))
                            }
                            None => Some((slot, micros, 1)),
                        };
                    }
                    self.last_token[id as usize] = now;
                }
                EngineEvent::Finished { id, reason, usage } => {
                    let rec = &mut self.records[id as usize];
                    debug_assert!(rec.done.is_none(), "request {id} finished twice");
                    rec.done = Some(now);
                    rec.finish_reason = Some(reason);
                    rec.prompt_tokens = usage.prompt_tokens;
                    rec.output_tokens = usage.completion_tokens;
                    rec.cached_tokens = usage.cached_tokens;
                    let t = &mut r.totals;
                    t.requests += 1;
                    t.prompt_tokens += u64::from(usage.prompt_tokens);
                    t.output_tokens += u64::from(usage.completion_tokens);
                    t.cached_tokens += u64::from(usage.cached_tokens);
                    // The response ends with its last token: the load guard goes.
                    self.guards[id as usize] = None;
                    self.unfinished -= 1;
                    self.finished += 1;
                    if !self.dependants.is_empty() {
                        self.ended.push(id as u32);
                    }
                }
            }
        }
        if let Some((k, v, n)) = gap_run {
            self.inter_token[k].saturating_record_n(v, n);
        }
        let events = std::mem::take(&mut r.events);
        r.engine.recycle_events(events);
        let mut ended = std::mem::take(&mut self.ended);
        for &id in &ended {
            self.release_dependants(id as usize);
        }
        ended.clear();
        self.ended = ended;
        self.kick(e);
    }

    /// One scrape round: every endpoint's metrics from its engine's gauges now,
    /// published at once through the datastore, as the live scraper publishes them
    /// (which also moves each endpoint's "sent since scrape" baseline).
    fn scrape(&mut self) {
        self.scrapes += 1;
        let now = self.now;
        let snapshot = self.datastore.snapshot();
        let outcomes = snapshot
            .endpoints
            .iter()
            .zip(&self.replicas)
            .map(|(state, replica)| {
                state.load.scrape_started();
                ScrapeOutcome {
                    endpoint: state.endpoint.clone(),
                    result: Ok(metrics_of(&replica.engine, &self.served_model, now)),
                    timed_out: false,
                }
            })
            .collect();
        self.datastore.publish(outcomes, now);
    }
}

//! A time-abstract continuous-batching engine that follows vLLM's V1 scheduler.
//!
//! The engine never reads a clock and never blocks: its driver calls
//! [`Engine::step`] with the current time, and the engine plans one forward pass,
//! prices it with the [`LatencyProfile`](super::profile::LatencyProfile), applies
//! its effects and returns the tokens it produced, which become visible at
//! `now + duration`. `igw sim serve` drives it with tokio's clock; `igw sim
//! calibrate` and the benchmark's virtual mode drive it with a virtual one. Both see
//! exactly the same behaviour.
//!
//! One step, as in vLLM V1 (`vllm/v1/core/sched/scheduler.py`, sim-facts §4.3):
//! 1. Running requests first, in admission order: each gets the tokens it still needs
//!    (one for a decode, the rest of its prompt for a chunked prefill) within the step's
//!    token budget. If KV blocks run out, the most recently admitted request is
//!    preempted (recompute): its blocks are freed, and it goes back to the front of the
//!    waiting queue.
//! 2. If nothing was preempted, waiting requests are admitted in order while the budget,
//!    `max_num_seqs`, KV blocks and LoRA slots allow. Cached prefix blocks count as
//!    computed and cost nothing.
//! 3. Every request whose context is fully computed samples one token.

mod add;
mod finish;
mod kv;
mod lora;
mod sequence;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

pub use kv::{BlockId, BlockPool, block_hash, root_hash};
use lora::LoraSlots;
use sequence::Sequence;
pub use types::{
    AddError, EngineConfig, EngineEvent, MAX_BLOCK_SIZE, MAX_KV_BLOCKS, MAX_LORA_LOAD_TIME,
    MAX_LORAS, MAX_NUM_SEQS, MAX_TOKENS, NewRequest, Parent, RequestId, RequestParams, StepOutput,
    StepResult, Usage,
};

use super::metrics::{EngineGauges, EngineMetrics};
use super::profile::StepShape;

/// A client request whose choices are not all done.
#[derive(Debug)]
struct ParentState {
    /// Choices still in the engine.
    remaining: u32,
    /// The request's `n`.
    n: u32,
    /// The most tokens a finished choice generated.
    max_generated: usize,
}

/// The continuous-batching engine of one model-server replica.
pub struct Engine {
    config: EngineConfig,
    blocks: BlockPool,
    loras: LoraSlots,
    rng: StdRng,
    /// Live requests by slot; `index` maps ids to slots.
    slots: Vec<Option<Sequence>>,
    free_slots: Vec<usize>,
    index: HashMap<RequestId, usize>,
    /// Arrived but still in the frontend, in ready-time order.
    arriving: VecDeque<usize>,
    waiting: VecDeque<usize>,
    /// In admission order; preemption takes from the back.
    running: Vec<usize>,
    steps: u64,
    metrics: EngineMetrics,
    /// Client requests with choices still in the engine, by an id of the engine's own.
    parents: HashMap<u64, ParentState>,
    next_parent: u64,
    // Scratch buffers reused across steps.
    scheduled: Vec<(usize, usize)>,
    hit_blocks: Vec<BlockId>,
    /// Slots that sampled their last token this step, in scheduled order.
    done: Vec<usize>,
    /// Per scheduled request, the token it samples if its context is complete and
    /// when its previous token was sampled.
    next_tokens: Vec<(u32, Option<Duration>)>,
    /// An event vector handed back by the driver, for the next step to fill.
    spare_events: Vec<EngineEvent>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine, String> {
        config.validate()?;
        Ok(Engine {
            blocks: BlockPool::new(config.num_blocks, config.enable_prefix_caching),
            loras: LoraSlots::new(config.max_loras),
            rng: StdRng::seed_from_u64(config.seed),
            slots: Vec::new(),
            free_slots: Vec::new(),
            index: HashMap::new(),
            arriving: VecDeque::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            steps: 0,
            metrics: EngineMetrics::new(config.max_model_len),
            parents: HashMap::new(),
            next_parent: 0,
            scheduled: Vec::new(),
            hit_blocks: Vec::new(),
            done: Vec::new(),
            next_tokens: Vec::new(),
            spare_events: Vec::new(),
            config,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Counters and histograms so far.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// Instantaneous state for the gauges.
    pub fn gauges(&self) -> EngineGauges {
        let mut waiting_loras: Vec<String> = self
            .waiting
            .iter()
            .filter_map(|&s| self.seq(s).lora.as_deref().map(str::to_string))
            .collect();
        waiting_loras.sort();
        waiting_loras.dedup();
        // vLLM's `deferred` reason: waiting on the LoRA budget rather than capacity.
        let deferred = self
            .waiting
            .iter()
            .filter(|&&s| {
                self.seq(s)
                    .lora
                    .as_deref()
                    .is_some_and(|l| !self.loras.can_admit(l))
            })
            .count();
        EngineGauges {
            num_requests_running: self.running.len(),
            num_requests_waiting: self.waiting.len(),
            num_requests_waiting_deferred: deferred,
            kv_cache_usage_perc: self.blocks.usage(),
            running_lora_adapters: self.loras.running_names(),
            waiting_lora_adapters: waiting_loras,
        }
    }

    /// Requests the engine holds (arriving, waiting or running).
    pub fn num_requests(&self) -> usize {
        self.index.len()
    }

    /// Adapter loads performed so far.
    pub fn lora_loads(&self) -> u64 {
        self.loras.loads
    }

    /// Hands back a step's event vector once its events are delivered; the next step
    /// reuses its allocation. Optional: a driver that keeps the vectors loses nothing.
    pub fn recycle_events(&mut self, events: Vec<EngineEvent>) {
        if events.capacity() > self.spare_events.capacity() {
            self.spare_events = events;
        }
    }

    /// Runs one forward pass at `now`, if there is anything to run.
    pub fn step(&mut self, now: Duration) -> StepResult {
        while let Some(&slot) = self.arriving.front() {
            if self.seq(slot).ready_at > now {
                break;
            }
            self.arriving.pop_front();
            self.waiting.push_back(slot);
        }
        self.scheduled.clear();
        let mut budget = self.config.max_num_batched_tokens;
        let preempted = self.schedule_running(&mut budget);
        if !preempted {
            self.schedule_waiting(&mut budget, now);
        }
        if self.scheduled.is_empty() {
            return StepResult::Idle {
                wake_at: self.arriving.front().map(|&s| self.seq(s).ready_at),
            };
        }
        self.steps += 1;
        let (shape, lora_time) = self.price_batch();
        let mut duration = self.config.profile.step_duration(shape);
        let noise = self.config.profile.step_noise;
        if noise > 0.0 {
            let z: f64 = StandardNormal.sample(&mut self.rng);
            duration = duration.mul_f64((1.0 + noise * z).clamp(0.5, 1.5));
        }
        duration += lora_time;
        let end = now + duration;
        let events = self.apply_batch(end);
        self.metrics
            .iteration_tokens_total
            .observe((shape.prefill_tokens + shape.decode_seqs) as f64);
        StepResult::Ran(StepOutput {
            end,
            duration,
            shape,
            events,
        })
    }

    /// Phase 1: give running requests their tokens, preempting from the back when KV
    /// runs out. Returns whether anything was preempted.
    fn schedule_running(&mut self, budget: &mut usize) -> bool {
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() {
            if *budget == 0 {
                break;
            }
            let slot = self.running[i];
            let num_new = {
                let seq = self.seq(slot);
                (seq.len() - seq.num_computed).min(*budget)
            };
            let need = self.blocks_needed(slot, num_new);
            loop {
                if need <= self.blocks.num_free() {
                    // Most steps of a decode stay inside the last block.
                    if need > 0 {
                        let seq = self.slots[slot].as_mut().expect("running slot is live");
                        let ok = self.blocks.allocate(need, &mut seq.blocks);
                        debug_assert!(ok);
                    }
                    self.scheduled.push((slot, num_new));
                    *budget -= num_new;
                    i += 1;
                    break;
                }
                let victim = self.running.pop().expect("running is non-empty");
                self.preempt(victim);
                preempted = true;
                if victim == slot {
                    // The request could not make room even alone at the back.
                    return true;
                }
            }
        }
        preempted
    }

    /// Phase 2: admit waiting requests in order.
    fn schedule_waiting(&mut self, budget: &mut usize, now: Duration) {
        let mut skipped: Vec<usize> = Vec::new();
        while let Some(&slot) = self.waiting.front() {
            if self.running.len() >= self.config.max_num_seqs || *budget == 0 {
                break;
            }
            if let Some(l) = &self.seq(slot).lora
                && !self.loras.can_admit(l)
            {
                // Another adapter's request may still fit; keep this one's place.
                self.waiting.pop_front();
                skipped.push(slot);
                continue;
            }
            let bs = self.config.block_size;
            let prefix_caching = self.config.enable_prefix_caching;
            let seq = self.slots[slot].as_mut().expect("waiting slot is live");
            seq.hash_full_blocks(bs);
            self.hit_blocks.clear();
            if prefix_caching {
                // At least the last token is always computed, to produce logits.
                let max_hit = (seq.len() - 1) / bs;
                let hashes = &seq.block_hashes[..max_hit.min(seq.block_hashes.len())];
                self.blocks.lookup(hashes, &mut self.hit_blocks);
            }
            let hit_tokens = self.hit_blocks.len() * bs;
            let remaining = seq.len() - hit_tokens;
            if !self.config.enable_chunked_prefill && remaining > *budget {
                break;
            }
            let num_new = remaining.min(*budget);
            let total_blocks = (hit_tokens + num_new).div_ceil(bs);
            let fresh = total_blocks - self.hit_blocks.len();
            let reused_free = self.blocks.count_free(&self.hit_blocks);
            if fresh + reused_free > self.blocks.num_free() {
                break;
            }
            for &b in &self.hit_blocks {
                self.blocks.touch(b);
            }
            seq.blocks.extend_from_slice(&self.hit_blocks);
            let ok = self.blocks.allocate(fresh, &mut seq.blocks);
            debug_assert!(ok);
            seq.num_computed = hit_tokens;
            seq.registered_blocks = self.hit_blocks.len();
            seq.scheduled_at = Some(now);
            if seq.cached_tokens.is_none() {
                seq.cached_tokens = Some(hit_tokens as u32);
                self.metrics.prefix_cache_queries_total += seq.len() as u64;
                self.metrics.prefix_cache_hits_total += hit_tokens as u64;
                let queued = now.saturating_sub(seq.ready_at).as_secs_f64();
                self.metrics.request_queue_time_seconds.observe(queued);
                seq.first_scheduled_at = Some(now);
            }
            if let Some(l) = seq.lora.clone() {
                self.loras.start_running(&l);
            }
            self.waiting.pop_front();
            self.running.push(slot);
            self.scheduled.push((slot, num_new));
            *budget -= num_new;
        }
        for slot in skipped.into_iter().rev() {
            self.waiting.push_front(slot);
        }
    }

    /// The token mix of the scheduled batch, and the adapter-load time it pays.
    fn price_batch(&mut self) -> (StepShape, Duration) {
        let mut shape = StepShape::default();
        let mut loads = 0u32;
        for i in 0..self.scheduled.len() {
            let (slot, num_new) = self.scheduled[i];
            let seq = self.slots[slot].as_ref().expect("scheduled slot is live");
            if seq.is_decoding() {
                shape.decode_seqs += 1;
                shape.decode_context_tokens += seq.num_computed as u64;
            } else {
                shape.prefill_tokens += num_new as u64;
            }
            if let Some(l) = seq.lora.clone()
                && self.loras.use_in_step(&l, self.steps)
            {
                loads += 1;
            }
        }
        (shape, self.config.lora_load_time * loads)
    }

    /// Applies the scheduled batch: advance computed tokens, cache full blocks, sample
    /// one token where the context is complete, finish requests.
    fn apply_batch(&mut self, end: Duration) -> Vec<EngineEvent> {
        let bs = self.config.block_size;
        let mut events = std::mem::take(&mut self.spare_events);
        events.clear();
        events.reserve(self.scheduled.len() + 4);
        self.done.clear();
        // Each request's next token sits in its own allocation, and its sampling
        // times on another cache line of its state, usually out of cache. Gathering
        // them in a tight loop first lets those misses overlap instead of stalling
        // the main loop once per request.
        self.next_tokens.clear();
        self.next_tokens
            .extend(self.scheduled.iter().map(|&(slot, _)| {
                let seq = self.slots[slot].as_ref().expect("scheduled slot is live");
                (seq.next_token(), seq.last_token_at)
            }));
        for i in 0..self.scheduled.len() {
            let (slot, num_new) = self.scheduled[i];
            let seq = self.slots[slot].as_mut().expect("scheduled slot is live");
            seq.num_computed += num_new;
            if self.config.enable_prefix_caching {
                seq.hash_full_blocks(bs);
                let full = (seq.num_computed / bs).min(seq.block_hashes.len());
                for b in seq.registered_blocks..full {
                    self.blocks.register(seq.blocks[b], seq.block_hashes[b]);
                }
                seq.registered_blocks = seq.registered_blocks.max(full);
            }
            if seq.num_computed < seq.len() {
                continue; // a chunk of a longer prefill
            }
            let (token, last_token_at) = self.next_tokens[i];
            let index = seq.sample();
            events.push(EngineEvent::Token {
                id: seq.id,
                index: index as u32,
                token,
            });
            self.metrics.generation_tokens_total += 1;
            match last_token_at {
                None => {
                    let ttft = end.saturating_sub(seq.arrived).as_secs_f64();
                    self.metrics.time_to_first_token_seconds.observe(ttft);
                    self.metrics.prompt_tokens_total += seq.prompt_len as u64;
                    let cached = u64::from(seq.cached_tokens.unwrap_or(0));
                    self.metrics.prompt_tokens_cached_total += cached;
                    self.metrics.prompt_tokens_local_compute_total +=
                        (seq.prompt_len as u64).saturating_sub(cached);
                    seq.first_token_at = Some(end);
                }
                Some(prev) => {
                    let itl = end.saturating_sub(prev).as_secs_f64();
                    self.metrics.inter_token_latency_seconds.observe(itl);
                }
            }
            seq.last_token_at = Some(end);
            if seq.is_done() {
                self.done.push(slot);
            }
        }
        if !self.done.is_empty() {
            self.finish_done(end, &mut events);
        }
        events
    }

    /// Frees a running request's blocks and puts it back at the front of the queue,
    /// to recompute everything (prompt and output so far) when readmitted.
    fn preempt(&mut self, slot: usize) {
        let seq = self.slots[slot].as_mut().expect("preempted slot is live");
        self.blocks.free(&seq.blocks);
        seq.blocks.clear();
        seq.num_computed = 0;
        seq.registered_blocks = 0;
        if let Some(l) = seq.lora.clone() {
            self.loras.stop_running(&l);
        }
        self.waiting.push_front(slot);
        self.metrics.num_preemptions_total += 1;
    }

    /// New blocks a request needs to hold `num_new` more computed tokens.
    fn blocks_needed(&self, slot: usize, num_new: usize) -> usize {
        let seq = self.seq(slot);
        (seq.num_computed + num_new)
            .div_ceil(self.config.block_size)
            .saturating_sub(seq.blocks.len())
    }

    /// Takes a request out of the engine, returning its blocks to the pool.
    fn release(&mut self, slot: usize) -> Sequence {
        let seq = self.slots[slot].take().expect("released slot is live");
        self.blocks.free(&seq.blocks);
        self.index.remove(&seq.id);
        self.free_slots.push(slot);
        seq
    }

    fn seq(&self, slot: usize) -> &Sequence {
        self.slots[slot].as_ref().expect("slot is live")
    }
}

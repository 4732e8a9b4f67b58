//! Requests leaving the engine: finished (their last token sampled) or aborted, and
//! what vLLM records when they do (per-request histograms, and once per client
//! request the `n` it asked for and the longest of its choices).
//!
//! Nothing here schedules or prices; a request's blocks are returned to the pool
//! before its `Finished` event is emitted.

use std::time::Duration;

use super::sequence::Sequence;
use super::{Engine, EngineEvent, RequestId, Usage};
use crate::sim::metrics::FinishReason;

impl Engine {
    /// Removes every running request that produced its last token (those in `done`).
    pub(super) fn finish_done(&mut self, end: Duration, events: &mut Vec<EngineEvent>) {
        // `done` follows the scheduled order, a subsequence of `running`'s, so one
        // merge walk removes them and the finishes below keep running-queue order.
        let done = std::mem::take(&mut self.done);
        let mut next = 0;
        self.running.retain(|&slot| {
            let finished = done.get(next) == Some(&slot);
            next += usize::from(finished);
            !finished
        });
        debug_assert_eq!(next, done.len(), "finished requests are running");
        for &slot in &done {
            let seq = self.seq(slot);
            if let Some(l) = seq.lora.clone() {
                self.loras.stop_running(&l);
            }
            let seq = self.release(slot);
            let m = &mut self.metrics;
            let secs =
                |from: Option<Duration>| end.saturating_sub(from.unwrap_or(end)).as_secs_f64();
            m.e2e_request_latency_seconds
                .observe(end.saturating_sub(seq.arrived).as_secs_f64());
            m.request_inference_time_seconds
                .observe(secs(seq.first_scheduled_at));
            let prefill = seq
                .first_token_at
                .unwrap_or(end)
                .saturating_sub(seq.first_scheduled_at.unwrap_or(end));
            m.request_prefill_time_seconds
                .observe(prefill.as_secs_f64());
            let decode = secs(seq.first_token_at);
            m.request_decode_time_seconds.observe(decode);
            let n = seq.output_len;
            if n > 1 {
                m.request_time_per_output_token_seconds
                    .observe(decode / (n - 1) as f64);
            }
            m.request_prompt_tokens.observe(seq.prompt_len as f64);
            m.request_generation_tokens.observe(n as f64);
            let cached = seq.cached_tokens.unwrap_or(0) as usize;
            m.request_prefill_kv_computed_tokens
                .observe(seq.prompt_len.saturating_sub(cached) as f64);
            m.count_finished(seq.finish_reason);
            self.end_of_request(&seq);
            events.push(EngineEvent::Finished {
                id: seq.id,
                reason: seq.finish_reason,
                usage: Usage {
                    prompt_tokens: seq.prompt_len as u32,
                    completion_tokens: n as u32,
                    cached_tokens: seq.cached_tokens.unwrap_or(0),
                },
            });
        }
        self.done = done;
    }

    /// Cancels a request wherever it is; its blocks and adapter slot are released at
    /// once. Returns false if the engine does not hold it (e.g. it already finished).
    pub fn abort(&mut self, id: RequestId, now: Duration) -> bool {
        let Some(&slot) = self.index.get(&id) else {
            return false;
        };
        if let Some(p) = self.running.iter().position(|&s| s == slot) {
            self.running.remove(p);
            if let Some(l) = self.seq(slot).lora.clone() {
                self.loras.stop_running(&l);
            }
        } else if let Some(p) = self.waiting.iter().position(|&s| s == slot) {
            self.waiting.remove(p);
        } else if let Some(p) = self.arriving.iter().position(|&s| s == slot) {
            self.arriving.remove(p);
        }
        let seq = self.release(slot);
        self.metrics.count_finished(FinishReason::Abort);
        self.metrics
            .e2e_request_latency_seconds
            .observe(now.saturating_sub(seq.arrived).as_secs_f64());
        self.end_of_request(&seq);
        true
    }

    /// What a request's end records beyond its own histograms: its `max_tokens`,
    /// and, once its client request's last choice has ended, that request's `n` and
    /// its longest choice (vLLM's `observe_finished_request`).
    fn end_of_request(&mut self, seq: &Sequence) {
        let m = &mut self.metrics;
        if let Some(max_tokens) = seq.max_tokens_param {
            m.request_params_max_tokens.observe(f64::from(max_tokens));
        }
        let generated = seq.generated();
        let Some(key) = seq.parent else {
            m.request_params_n.observe(1.0);
            m.request_max_num_generation_tokens
                .observe(generated as f64);
            return;
        };
        let Some(parent) = self.parents.get_mut(&key) else {
            return;
        };
        parent.remaining -= 1;
        parent.max_generated = parent.max_generated.max(generated);
        if parent.remaining == 0 {
            let (n, longest) = (parent.n, parent.max_generated);
            self.parents.remove(&key);
            m.request_params_n.observe(f64::from(n));
            m.request_max_num_generation_tokens.observe(longest as f64);
        }
    }
}

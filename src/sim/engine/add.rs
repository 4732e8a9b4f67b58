//! Requests entering the engine: one at a time, or a client request's choices
//! together (`n > 1`, a list of prompts), all of them or none.
//!
//! A request is checked against the engine's shape before anything is inserted, so a
//! batch that fails leaves no part of itself behind. Nothing here schedules.

use std::time::Duration;

use super::sequence::Sequence;
use super::{AddError, Engine, NewRequest, Parent, ParentState, RequestParams};

impl Engine {
    /// Accepts a request that arrived at `now`: a request of its own (`n` = 1, no
    /// `max_tokens` recorded). It becomes schedulable once the profile's frontend
    /// overhead has passed.
    pub fn add_request(&mut self, req: NewRequest, now: Duration) -> Result<(), AddError> {
        self.check(&req)?;
        self.insert(req, None, RequestParams::default(), now);
        Ok(())
    }

    /// Accepts client requests that arrived at `now`, each with its choices (vLLM's
    /// parent request and its `n` children). Either every choice of every parent is
    /// accepted or, on the first that cannot be, none is. `vllm:request_params_n` and
    /// `vllm:request_max_num_generation_tokens` are observed once per parent, when its
    /// last choice ends.
    pub fn add_parents(&mut self, parents: Vec<Parent>, now: Duration) -> Result<(), AddError> {
        let mut ids = std::collections::HashSet::new();
        for parent in &parents {
            if parent.children.is_empty() {
                return Err(AddError::NoOutput);
            }
            for child in &parent.children {
                self.check(child)?;
                if !ids.insert(child.id) {
                    return Err(AddError::DuplicateId(child.id));
                }
            }
        }
        for parent in parents {
            let key = self.next_parent;
            self.next_parent += 1;
            let n = parent.children.len() as u32;
            self.parents.insert(
                key,
                ParentState {
                    remaining: n,
                    n: parent.params.n.max(n),
                    max_generated: 0,
                },
            );
            for child in parent.children {
                self.insert(child, Some(key), parent.params, now);
            }
        }
        Ok(())
    }

    /// Whether the engine can ever serve `req`.
    fn check(&self, req: &NewRequest) -> Result<(), AddError> {
        if self.index.contains_key(&req.id) {
            return Err(AddError::DuplicateId(req.id));
        }
        if req.prompt.is_empty() {
            return Err(AddError::EmptyPrompt);
        }
        if req.output.is_empty() {
            return Err(AddError::NoOutput);
        }
        let total = req.prompt.len() + req.output.len();
        if total > self.config.max_model_len {
            return Err(AddError::TooLong {
                max_model_len: self.config.max_model_len,
                total,
                prompt: req.prompt.len(),
                output: req.output.len(),
            });
        }
        if let (Some(lora), 0) = (&req.lora, self.config.max_loras) {
            return Err(AddError::LoraDisabled(lora.clone()));
        }
        // The last output token is never fed back, so it needs no KV.
        let needed = (total - 1).div_ceil(self.config.block_size);
        if needed > self.config.num_blocks {
            return Err(AddError::ExceedsKvCapacity {
                needed,
                capacity: self.config.num_blocks,
            });
        }
        Ok(())
    }

    /// Puts a checked request in the frontend queue.
    fn insert(
        &mut self,
        req: NewRequest,
        parent: Option<u64>,
        params: RequestParams,
        now: Duration,
    ) {
        let ready_at = now + self.config.profile.frontend_overhead();
        let mut seq = Sequence::new(req, now, ready_at, self.config.block_size);
        seq.parent = parent;
        seq.max_tokens_param = params.max_tokens;
        let id = seq.id;
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s] = Some(seq);
                s
            }
            None => {
                self.slots.push(Some(seq));
                self.slots.len() - 1
            }
        };
        self.index.insert(id, slot);
        // Ready times only grow when drivers pass non-decreasing times; insert in
        // order anyway so a late caller cannot jump the queue.
        let pos = self
            .arriving
            .iter()
            .rposition(|&s| self.seq(s).ready_at <= ready_at)
            .map_or(0, |p| p + 1);
        self.arriving.insert(pos, slot);
    }
}

//! One request's state inside the engine.

use std::sync::Arc;
use std::time::Duration;

use super::kv::{BlockId, block_hash, root_hash};
use super::{NewRequest, RequestId};
use crate::sim::metrics::FinishReason;

#[derive(Debug)]
pub(super) struct Sequence {
    pub id: RequestId,
    /// The prompt, then the whole output the request will produce. Only the first
    /// `len` are the context so far; keeping the output here means sampling a token
    /// reads the line the context ends on instead of a second vector.
    tokens: Vec<u32>,
    /// Context length: the prompt plus every output token sampled so far.
    len: usize,
    pub prompt_len: usize,
    /// Output tokens the request will produce in all.
    pub output_len: usize,
    pub finish_reason: FinishReason,
    pub lora: Option<Arc<str>>,
    /// Tokens whose KV is computed (and held in `blocks`).
    pub num_computed: usize,
    pub blocks: Vec<BlockId>,
    /// Chained hashes of the full blocks of `tokens` computed so far.
    pub block_hashes: Vec<u64>,
    /// Leading blocks already registered in the prefix cache.
    pub registered_blocks: usize,
    pub arrived: Duration,
    /// When the frontend overhead has passed and the scheduler may see it.
    pub ready_at: Duration,
    pub first_scheduled_at: Option<Duration>,
    /// Most recent admission (re-set after a preemption).
    pub scheduled_at: Option<Duration>,
    pub first_token_at: Option<Duration>,
    pub last_token_at: Option<Duration>,
    /// Prefix-cache hit at first admission, tokens.
    pub cached_tokens: Option<u32>,
    /// The engine's key of the client request this is a choice of.
    pub parent: Option<u64>,
    /// The request's `max_tokens`, recorded when it ends.
    pub max_tokens_param: Option<u32>,
}

impl Sequence {
    /// A request as it arrives. The block lists are sized for its whole context up
    /// front (`block_size` tokens per block), so decoding never regrows them.
    pub fn new(
        req: NewRequest,
        arrived: Duration,
        ready_at: Duration,
        block_size: usize,
    ) -> Sequence {
        let prompt_len = req.prompt.len();
        let mut tokens = req.prompt;
        tokens.extend_from_slice(&req.output);
        let max_blocks = tokens.len().div_ceil(block_size.max(1));
        Sequence {
            id: req.id,
            tokens,
            len: prompt_len,
            prompt_len,
            output_len: req.output.len(),
            finish_reason: req.finish_reason,
            lora: req.lora,
            num_computed: 0,
            blocks: Vec::with_capacity(max_blocks),
            block_hashes: Vec::with_capacity(max_blocks),
            registered_blocks: 0,
            arrived,
            ready_at,
            first_scheduled_at: None,
            scheduled_at: None,
            first_token_at: None,
            last_token_at: None,
            cached_tokens: None,
            parent: None,
            max_tokens_param: None,
        }
    }

    /// Context length in tokens: the prompt and the output sampled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Output tokens sampled so far.
    pub fn generated(&self) -> usize {
        self.len - self.prompt_len
    }

    /// True once every output token has been sampled.
    pub fn is_done(&self) -> bool {
        self.generated() == self.output_len
    }

    /// The output token the request samples next. It must not be done.
    pub fn next_token(&self) -> u32 {
        self.tokens[self.len]
    }

    /// Appends the next output token to the context and returns its index among the
    /// outputs. The request must not be done.
    pub fn sample(&mut self) -> usize {
        let index = self.generated();
        self.len += 1;
        index
    }

    /// True when this step only feeds back the last sampled token.
    pub fn is_decoding(&self) -> bool {
        self.generated() > 0 && self.num_computed + 1 == self.len
    }

    /// Extends `block_hashes` over every full block of the context. Called for every
    /// request in every step, and a block fills only every `block_size` tokens: the
    /// check is inlined, the hashing is not.
    #[inline]
    pub fn hash_full_blocks(&mut self, block_size: usize) {
        let full = self.len / block_size;
        if self.block_hashes.len() < full {
            self.hash_blocks_up_to(full, block_size);
        }
    }

    fn hash_blocks_up_to(&mut self, full: usize, block_size: usize) {
        while self.block_hashes.len() < full {
            let i = self.block_hashes.len();
            let parent = match i {
                0 => root_hash(self.lora.as_deref()),
                _ => self.block_hashes[i - 1],
            };
            let h = block_hash(parent, &self.tokens[i * block_size..(i + 1) * block_size]);
            self.block_hashes.push(h);
        }
    }
}

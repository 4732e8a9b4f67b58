//! GIE's prefix-cache benchmark shape: groups of prompts that share a long system
//! prompt and differ in a short question.
//!
//! Parameters are inference-perf's `shared_prefix` data type (sim-facts §6.2):
//! `num_groups × num_prompts_per_group` distinct prompts, each a group's system prompt
//! of `system_prompt_len` tokens followed by a question of `question_len` tokens, asking
//! for `output_len` tokens. The word text guarantees that a group's prompts share
//! exactly their first `system_prompt_len` token ids, which is what prefix-aware routing
//! exploits. Requests come in a seeded shuffle of all prompts, reshuffled every pass.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::text::{push_words, words_text};
use super::{PromptText, WorkloadError, WorkloadRequest};

/// inference-perf's `shared_prefix` block; lengths in tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedPrefixSpec {
    pub num_groups: usize,
    pub num_prompts_per_group: usize,
    pub system_prompt_len: usize,
    pub question_len: usize,
    pub output_len: usize,
    /// How many requests; absent means endless (the prompts repeat).
    #[serde(default)]
    pub num_requests: Option<usize>,
}

impl SharedPrefixSpec {
    pub(crate) fn generator(&self, seed: u64) -> Result<Generator, WorkloadError> {
        if self.num_groups == 0 || self.num_prompts_per_group == 0 {
            return Err(WorkloadError::Invalid(
                "shared_prefix: num_groups and num_prompts_per_group must be ≥ 1".into(),
            ));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut prompts = Vec::with_capacity(self.num_groups * self.num_prompts_per_group);
        for _ in 0..self.num_groups {
            let system = words_text(&mut rng, self.system_prompt_len);
            for _ in 0..self.num_prompts_per_group {
                let mut text = system.clone();
                push_words(&mut rng, self.question_len, &mut text);
                prompts.push(WorkloadRequest::new(
                    PromptText::Text(text),
                    self.output_len,
                ));
            }
        }
        Ok(Generator {
            order: Vec::new(),
            prompts,
            left: self.num_requests,
            rng,
        })
    }
}

/// The stream behind a shared-prefix [`super::Workload`].
pub(crate) struct Generator {
    prompts: Vec<WorkloadRequest>,
    /// Indices still to send in this pass, popped from the back.
    order: Vec<usize>,
    left: Option<usize>,
    rng: StdRng,
}

impl Iterator for Generator {
    type Item = WorkloadRequest;

    fn next(&mut self) -> Option<WorkloadRequest> {
        if let Some(left) = &mut self.left {
            *left = left.checked_sub(1)?;
        }
        if self.order.is_empty() {
            self.order = (0..self.prompts.len()).collect();
            self.order.shuffle(&mut self.rng);
        }
        let i = self.order.pop()?;
        Some(self.prompts[i].clone())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn spec(groups: usize, per_group: usize, system: usize, question: usize) -> SharedPrefixSpec {
        SharedPrefixSpec {
            num_groups: groups,
            num_prompts_per_group: per_group,
            system_prompt_len: system,
            question_len: question,
            output_len: 100,
            num_requests: None,
        }
    }

    #[test]
    fn a_group_shares_exactly_its_system_prompt() {
        for s in [
            spec(1, 1, 10, 5),
            spec(3, 4, 200, 20),
            spec(5, 2, 1000, 1),
            spec(2, 3, 0, 8),
        ] {
            let g = s.generator(9).unwrap();
            assert_eq!(g.prompts.len(), s.num_groups * s.num_prompts_per_group);
            for (group, prompts) in g.prompts.chunks(s.num_prompts_per_group).enumerate() {
                let head = &prompts[0].prompt_tokens[..s.system_prompt_len];
                for p in prompts {
                    assert_eq!(p.prompt_tokens.len(), s.system_prompt_len + s.question_len);
                    assert_eq!(
                        &p.prompt_tokens[..s.system_prompt_len],
                        head,
                        "group {group}"
                    );
                    assert_eq!(p.output_tokens, 100);
                }
                if s.question_len >= 5 && prompts.len() > 1 {
                    assert_ne!(prompts[0].prompt_tokens, prompts[1].prompt_tokens);
                }
            }
        }
    }

    #[test]
    fn every_pass_sends_every_prompt_once() {
        let s = spec(3, 4, 20, 5);
        let g = s.generator(2).unwrap();
        let all = g.prompts.clone();
        let sent: Vec<WorkloadRequest> = g.take(36).collect();
        for pass in sent.chunks(12) {
            let mut counts: HashMap<&[u32], usize> = HashMap::new();
            for r in pass {
                *counts.entry(&r.prompt_tokens).or_default() += 1;
            }
            assert_eq!(counts.len(), all.len());
            assert!(counts.values().all(|&c| c == 1));
        }
        assert_ne!(sent[..12], sent[12..24], "each pass is reshuffled");
    }

    #[test]
    fn num_requests_bounds_the_stream_and_zero_groups_is_an_error() {
        let mut s = spec(2, 2, 4, 4);
        s.num_requests = Some(7);
        assert_eq!(s.generator(0).unwrap().count(), 7);
        assert!(spec(0, 2, 4, 4).generator(0).is_err());
    }
}

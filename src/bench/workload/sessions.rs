//! Multi-turn sessions: chat conversations that resend their whole history each turn.
//!
//! Turn `k`'s messages are turn `k − 1`'s messages, the assistant's reply to them, and
//! one new user message, so its prompt starts with turn `k − 1`'s prompt and reply,
//! text and token ids alike; that is what a prefix cache and session-affine routing
//! can win on. Replies are the conversation's own (ShareGPT's `gpt` turns, or seeded
//! words), trimmed and ended with one newline: a reply that ended in punctuation would
//! otherwise merge with the template's closing tag into one BPE token and break the
//! token prefix (see [`tokens::apply_chat_template`]). Each turn asks for as many
//! tokens as its reply has.
//!
//! Requests come session by session, turns in order; the plan interleaves them and
//! both drivers send turn `k` only after turn `k − 1` has ended
//! ([`crate::bench::plan::StagePlan::predecessors`]). No I/O beyond reading a ShareGPT
//! file.

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::synthetic::LengthDist;
use super::text::words_text;
use super::{ChatMessage, PromptText, SessionTurn, WorkloadError, WorkloadRequest, sharegpt};
use crate::sim::tokens;

/// Where conversations come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SessionSource {
    /// ShareGPT conversations with at least two complete user/assistant exchanges.
    Sharegpt { path: PathBuf },
    /// Seeded word text; lengths in tokens.
    Synthetic {
        /// Exchanges per session.
        turns: LengthDist,
        user: LengthDist,
        reply: LengthDist,
    },
}

impl Default for SessionSource {
    /// 2–6 turns, user messages ≈60 tokens and replies ≈200 (ShareGPT-like).
    fn default() -> SessionSource {
        SessionSource::Synthetic {
            turns: LengthDist::Uniform { min: 2, max: 6 },
            user: LengthDist::LogNormal {
                mean: 60.0,
                std_dev: 50.0,
                min: 4,
                max: 1024,
            },
            reply: LengthDist::LogNormal {
                mean: 200.0,
                std_dev: 150.0,
                min: 4,
                max: 1024,
            },
        }
    }
}

/// Multi-turn chat sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSpec {
    pub num_sessions: usize,
    #[serde(default)]
    pub source: SessionSource,
    /// A session ends before the turn whose prompt + reply would exceed this, tokens
    /// (the served model's context length).
    #[serde(default = "default_max_context")]
    pub max_context_tokens: usize,
}

fn default_max_context() -> usize {
    8192
}

/// One conversation as (user message, assistant reply) pairs.
type Exchanges = Vec<(String, String)>;

impl SessionsSpec {
    pub(crate) fn requests(&self, seed: u64) -> Result<Vec<WorkloadRequest>, WorkloadError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let conversations: Vec<Exchanges> = match &self.source {
            SessionSource::Sharegpt { path } => {
                let mut all: Vec<Exchanges> = sharegpt::load(path)?
                    .iter()
                    .map(exchanges)
                    .filter(|e| e.len() >= 2)
                    .collect();
                if all.is_empty() {
                    return Err(WorkloadError::NoUsableEntries {
                        path: path.clone(),
                        what: "sessions need two user/assistant exchanges",
                    });
                }
                all.shuffle(&mut rng);
                // Oversample with replacement when the file has too few, as vLLM does;
                // each copy opens with a marker line, so no two sessions are the same
                // conversation (they would share a prefix no real users share).
                let have = all.len();
                let mut copies = 0;
                while all.len() < self.num_sessions {
                    let mut c = all[rng.random_range(0..have)].clone();
                    copies += 1;
                    if let Some((first, _)) = c.first_mut() {
                        *first = format!("{}{first}", sharegpt::repeat_marker(copies));
                    }
                    all.push(c);
                }
                all.truncate(self.num_sessions);
                all
            }
            SessionSource::Synthetic { turns, user, reply } => {
                let turns = turns.sampler("sessions turns")?;
                let user = user.sampler("sessions user")?;
                let reply = reply.sampler("sessions reply")?;
                (0..self.num_sessions)
                    .map(|_| {
                        (0..turns.draw(&mut rng).max(1))
                            .map(|_| {
                                let (u, r) = (user.draw(&mut rng), reply.draw(&mut rng));
                                (words_text(&mut rng, u), words_text(&mut rng, r))
                            })
                            .collect()
                    })
                    .collect()
            }
        };
        let mut out = Vec::new();
        for (id, conversation) in conversations.iter().enumerate() {
            out.extend(session(id as u64, conversation, self.max_context_tokens));
        }
        Ok(out)
    }
}

/// Leading alternating user/assistant pairs; stops at the first turn out of place.
fn exchanges(c: &sharegpt::Conversation) -> Exchanges {
    let is_user = |from: &str| matches!(from, "human" | "user");
    let is_assistant = |from: &str| !is_user(from) && from != "system";
    c.conversations
        .chunks_exact(2)
        .take_while(|p| is_user(&p[0].from) && is_assistant(&p[1].from))
        .map(|p| (p[0].value.clone(), p[1].value.clone()))
        .collect()
}

/// `request`, a session's turn, as the same turn of that session's `copy`th repeat
/// (`copy` ≥ 1) when a stage needs more turns than the sessions have: the session id
/// moves past the `sessions` distinct ids, and a marker line (`#<copy>`) opens the
/// first user message, so no copy shares a prefix with the original or another copy
/// (a real user population does not send the same conversation twice). A request
/// outside sessions is returned as it is.
pub fn repeated(
    request: &WorkloadRequest,
    copy: usize,
    sessions: u64,
    encoder: &tokens::OwnEncoder,
) -> WorkloadRequest {
    let (Some(turn), PromptText::Chat(messages)) = (request.session, &request.prompt) else {
        return request.clone();
    };
    let mut messages = messages.clone();
    let mut ids = None;
    if let Some(first) = messages.first_mut() {
        let marker = sharegpt::repeat_marker(copy);
        first.content = format!("{marker}{}", first.content);
        // The marker sits between the first turn's header, which ends in a newline
        // BPE keeps as its own token, and the content, which has a newline of its own
        // before it now: the copy's ids are the original's with the marker's spliced
        // in, and re-encoding the whole history for every copy is not needed.
        let header = encoder.encode(&tokens::chat_turn_header(&first.role));
        if request.prompt_tokens.starts_with(&header) {
            let mut spliced = Vec::with_capacity(request.prompt_tokens.len() + 4);
            spliced.extend_from_slice(&header);
            spliced.extend(encoder.encode(&marker));
            spliced.extend_from_slice(&request.prompt_tokens[header.len()..]);
            ids = Some(spliced);
        }
    }
    let prompt = PromptText::Chat(messages);
    let ids = ids.unwrap_or_else(|| encoder.encode(&prompt.flatten()));
    debug_assert_eq!(ids, encoder.encode(&prompt.flatten()), "spliced ids differ");
    let mut copied = WorkloadRequest::with_tokens(prompt, ids, request.output_tokens);
    copied.lora = request.lora.clone();
    copied.session = Some(SessionTurn {
        session: turn.session + copy as u64 * sessions,
        turn: turn.turn,
    });
    copied
}

/// The requests of one session.
///
/// Each turn's text is the previous turn's, the reply, then text of its own (see
/// [`tokens::apply_chat_template`]), and the boundaries fall where BPE starts a new
/// token anyway (after a newline, before `<|end|>` or non-space content), so its ids
/// are the previous turn's ids, the reply's, then those of the new text: each piece
/// of the history is encoded once rather than once per later turn.
fn session(id: u64, conversation: &[(String, String)], max_context: usize) -> Vec<WorkloadRequest> {
    let mut messages: Vec<ChatMessage> = Vec::new();
    let mut out: Vec<WorkloadRequest> = Vec::new();
    // The previous turn's text, and its ids followed by its reply's.
    let mut before: Option<(String, Vec<u32>)> = None;
    for (turn, (user, reply)) in conversation.iter().enumerate() {
        messages.push(ChatMessage {
            role: "user".into(),
            content: user.trim().to_string(),
        });
        let reply = format!("{}\n", reply.trim());
        let reply_ids = tokens::encode(&reply);
        let output = reply_ids.len();
        let prompt = PromptText::Chat(messages.clone());
        let text = prompt.flatten();
        let ids = match &before {
            Some((head, head_ids)) if text.starts_with(head.as_str()) => {
                let mut ids = head_ids.clone();
                ids.extend(tokens::encode(&text[head.len()..]));
                ids
            }
            _ => tokens::encode(&text),
        };
        debug_assert_eq!(ids, tokens::encode(&text), "session {id} turn {turn}");
        if ids.len() + output > max_context {
            break;
        }
        let mut head_ids = ids.clone();
        head_ids.extend_from_slice(&reply_ids);
        let mut request = WorkloadRequest::with_tokens(prompt, ids, output);
        request.session = Some(SessionTurn { session: id, turn });
        out.push(request);
        // An empty reply is a bare newline, which BPE would merge with the one the
        // generation prompt ends in: the next turn is then encoded whole.
        before = (reply.len() > 1).then(|| (text + &reply, head_ids));
        messages.push(ChatMessage {
            role: "assistant".into(),
            content: reply,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: SessionSource, n: usize) -> SessionsSpec {
        SessionsSpec {
            num_sessions: n,
            source,
            max_context_tokens: default_max_context(),
        }
    }

    /// Every request's ids are its text's; turn k's ids start with turn k − 1's ids
    /// followed by the reply's ids, and turn k − 1 asked for exactly as many tokens as
    /// that reply has.
    fn check(requests: &[WorkloadRequest]) {
        for r in requests {
            assert_eq!(
                r.prompt_tokens,
                tokens::encode(&r.prompt.flatten()),
                "{r:?}"
            );
        }
        for pair in requests.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            let (Some(p), Some(n)) = (prev.session, next.session) else {
                panic!("session requests carry their session");
            };
            if n.session != p.session {
                assert_eq!(n.turn, 0);
                continue;
            }
            assert_eq!(n.turn, p.turn + 1);
            let PromptText::Chat(messages) = &next.prompt else {
                panic!("sessions are chat");
            };
            let reply = &messages[2 * n.turn - 1];
            assert_eq!(reply.role, "assistant");
            let reply_ids = tokens::encode(&reply.content);
            assert_eq!(prev.output_tokens, reply_ids.len());
            if reply.content == "\n" {
                // An empty reply's newline merges with the one before it (see
                // `apply_chat_template`): that turn's prefix is not the last one's.
                continue;
            }
            let mut head = prev.prompt_tokens.clone();
            head.extend_from_slice(&reply_ids);
            assert!(
                next.prompt_tokens.starts_with(&head),
                "session {} turn {}: token prefix broken",
                n.session,
                n.turn
            );
        }
    }

    #[test]
    fn each_turn_resends_the_previous_prompt_and_reply() {
        let sample = PathBuf::from(sharegpt::SAMPLE_PATH);
        for s in [
            spec(SessionSource::default(), 30),
            spec(SessionSource::Sharegpt { path: sample }, 60),
        ] {
            let requests = s.requests(4).unwrap();
            let sessions = requests
                .iter()
                .filter(|r| r.session.unwrap().turn == 0)
                .count();
            assert_eq!(sessions, s.num_sessions, "{s:?}");
            assert!(requests.len() >= 2 * s.num_sessions, "{}", requests.len());
            check(&requests);
        }
    }

    #[test]
    fn oversampled_conversations_become_sessions_of_their_own() {
        // Four times the sample's multi-turn conversations: no two
        // sessions open with the same first prompt.
        let sample = PathBuf::from(sharegpt::SAMPLE_PATH);
        let s = spec(SessionSource::Sharegpt { path: sample }, 500);
        let requests = s.requests(5).unwrap();
        let firsts: Vec<&Vec<u32>> = requests
            .iter()
            .filter(|r| r.session.unwrap().turn == 0)
            .map(|r| &r.prompt_tokens)
            .collect();
        // (A session whose first exchange alone passes the context limit sends nothing.)
        assert!(firsts.len() > 450, "{}", firsts.len());
        let distinct: std::collections::HashSet<_> = firsts.iter().collect();
        assert_eq!(
            distinct.len(),
            firsts.len(),
            "a conversation was sent twice"
        );
        check(&requests);
    }

    #[test]
    fn awkward_replies_keep_the_token_prefix() {
        let conversation: Exchanges = [
            ("Hi", "Sure."),
            ("And?", "\n\nLeading newlines, trailing punctuation!)"),
            ("ok", "  spaces  "),
            ("code", "```rust\nfn main() {}\n```"),
            ("numbers", "42"),
            ("more", "日本語。"),
            ("", "an empty question"),
            ("silence?", ""),
            ("42 is the answer", "windows\r\nline ends\r\n"),
            ("#3\nlooks like a marker", "trailing punctuation…"),
            ("last", ""),
        ]
        .iter()
        .map(|(u, r)| (u.to_string(), r.to_string()))
        .collect();
        check(&session(0, &conversation, usize::MAX));
    }

    #[test]
    fn sessions_stop_at_the_context_limit() {
        let conversation: Exchanges = (0..10)
            .map(|_| ("question ".repeat(50), "answer ".repeat(100)))
            .collect();
        let all = session(3, &conversation, usize::MAX);
        assert_eq!(all.len(), 10);
        let limited = session(3, &conversation, 600);
        assert!(!limited.is_empty() && limited.len() < 10);
        for r in &limited {
            assert!(r.prompt_tokens.len() + r.output_tokens <= 600);
        }
        assert_eq!(limited[..], all[..limited.len()]);
    }

    #[test]
    fn only_alternating_user_assistant_pairs_count() {
        let c: sharegpt::Conversation = serde_json::from_value(serde_json::json!({
            "conversations": [
                {"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                {"from": "user", "value": "c"}, {"from": "chatgpt", "value": "d"},
                {"from": "human", "value": "e"}, {"from": "human", "value": "f"},
                {"from": "gpt", "value": "g"}
            ]
        }))
        .unwrap();
        assert_eq!(exchanges(&c).len(), 2);
    }
}

//! A streaming response as Server-Sent Events (sim-facts §1.5): per choice (chat: a
//! role chunk,) one chunk per token and a chunk with its finish reason, the choices'
//! chunks interleaved as their tokens arrive; then a usage chunk if asked for, then
//! `[DONE]`.
//!
//! The stream owns every choice's in-flight guard, so a client that leaves aborts
//! all of its sequences. It waits on nothing but the choices' own event channels,
//! and holds at most a few chunks ahead of the client.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use futures::Stream;
use futures::stream::{self, BoxStream, SelectAll, StreamExt};
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::choice::{ChoiceSpec, Output, UsageSum};
use super::logprobs;
use super::stream::{InFlight, Running, engine_stopped, usage_of};
use crate::api::openai::{
    ChatChunkChoice, ChatCompletionChunk, CompletionChoice, CompletionChunk, Delta,
};
use crate::sim::engine::EngineEvent;
use crate::sim::metrics::FinishReason;
use crate::sim::tokens::{StreamDecoder, Tokenizer};

/// Which API a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Completions,
    Chat,
}

/// The identity every chunk of a response repeats.
#[derive(Clone, Debug)]
pub struct ResponseMeta {
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
}

/// One choice's progress through the stream.
struct ChoiceState {
    spec: ChoiceSpec,
    guard: InFlight,
    decoder: StreamDecoder,
    started: bool,
    finished: bool,
    /// Characters of the choice's text so far (completions' `text_offset`).
    offset: usize,
}

struct State {
    api: Api,
    meta: ResponseMeta,
    include_usage: bool,
    tokenizer: Tokenizer,
    choices: Vec<ChoiceState>,
    /// `(choice, event)`; `None` when that choice's channel closed.
    events: SelectAll<BoxStream<'static, (usize, Option<EngineEvent>)>>,
    pending: VecDeque<Event>,
    usage: UsageSum,
    ended: bool,
}

/// The SSE response of a streaming request whose choices are `choices`.
pub fn sse(
    api: Api,
    meta: ResponseMeta,
    include_usage: bool,
    tokenizer: Tokenizer,
    choices: Vec<(ChoiceSpec, Running)>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut events = SelectAll::new();
    let mut states = Vec::with_capacity(choices.len());
    for (i, (spec, running)) in choices.into_iter().enumerate() {
        let Running { events: rx, guard } = running;
        let s = UnboundedReceiverStream::new(rx)
            .map(move |e| (i, Some(e)))
            .chain(stream::once(async move { (i, None) }));
        events.push(s.boxed());
        states.push(ChoiceState {
            spec,
            guard,
            decoder: StreamDecoder::new(tokenizer.clone()),
            started: false,
            finished: false,
            offset: 0,
        });
    }
    let state = State {
        api,
        meta,
        include_usage,
        tokenizer,
        choices: states,
        events,
        pending: VecDeque::new(),
        usage: UsageSum::default(),
        ended: false,
    };
    Sse::new(stream::unfold(state, |mut st| async move {
        let event = st.next_event().await?;
        Some((Ok(event), st))
    }))
}

impl State {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.events.next().await {
                Some((i, Some(event))) => self.on_event(i, event),
                Some((i, None)) => {
                    if !self.choices[i].finished {
                        // Mid-stream errors are one error frame, then [DONE].
                        self.pending.push_back(json_event(&engine_stopped().body()));
                        self.pending.push_back(Event::default().data("[DONE]"));
                        self.ended = true;
                    }
                }
                None => {
                    if self.include_usage {
                        let usage = self.usage.usage();
                        let m = &self.meta;
                        let chunk = match self.api {
                            Api::Chat => json_event(&ChatCompletionChunk {
                                id: m.id.clone(),
                                object: "chat.completion.chunk".into(),
                                created: m.created,
                                model: m.model.clone(),
                                choices: Vec::new(),
                                usage: Some(usage),
                            }),
                            Api::Completions => json_event(&CompletionChunk {
                                id: m.id.clone(),
                                object: "text_completion".into(),
                                created: m.created,
                                model: m.model.clone(),
                                choices: Vec::new(),
                                usage: Some(usage),
                            }),
                        };
                        self.pending.push_back(chunk);
                    }
                    self.pending.push_back(Event::default().data("[DONE]"));
                    self.ended = true;
                }
            }
        }
    }

    fn on_event(&mut self, i: usize, event: EngineEvent) {
        if self.api == Api::Chat && !self.choices[i].started {
            // The role chunk goes out with the first token, as vLLM sends it when the
            // first output arrives (so time to first chunk is time to first token).
            let delta = Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                tool_calls: None,
            };
            let chunk = self.chunk(i, delta, None, None);
            self.pending.push_back(chunk);
        }
        match event {
            EngineEvent::Token { index, token, .. } => {
                let c = &mut self.choices[i];
                let first = !c.started;
                c.started = true;
                let piece = c.decoder.push(token);
                let logprobs = c.spec.logprobs.map(|top| {
                    let e = logprobs::sample(&self.tokenizer, c.spec.seed, index, token, top);
                    match self.api {
                        Api::Chat => logprobs::chat_object(&self.tokenizer, &[e]),
                        Api::Completions => {
                            logprobs::completion_object(&self.tokenizer, &[e], c.offset)
                        }
                    }
                });
                c.offset += self.tokenizer.token_text(token).chars().count();
                let delta = match &c.spec.output {
                    Output::Text => Delta {
                        content: Some(piece),
                        ..Delta::default()
                    },
                    Output::ToolCall { id, name, .. } => {
                        let call = if first {
                            json!({"index": 0, "id": id, "type": "function",
                                   "function": {"name": name, "arguments": piece}})
                        } else {
                            json!({"index": 0, "function": {"arguments": piece}})
                        };
                        Delta {
                            tool_calls: Some(vec![call]),
                            ..Delta::default()
                        }
                    }
                };
                let chunk = self.chunk(i, delta, None, logprobs);
                self.pending.push_back(chunk);
            }
            EngineEvent::Finished { reason, usage, .. } => {
                let c = &mut self.choices[i];
                c.started = true;
                c.finished = true;
                c.guard.finish();
                self.usage.add(&c.spec, &usage_of(usage));
                let chunk = self.chunk(i, Delta::default(), Some(reason), None);
                self.pending.push_back(chunk);
            }
        }
    }

    /// A chunk with choice `i` alone. For completions only the delta's `content`
    /// is used.
    fn chunk(
        &self,
        i: usize,
        delta: Delta,
        reason: Option<FinishReason>,
        logprobs: Option<Value>,
    ) -> Event {
        let m = &self.meta;
        let spec = &self.choices[i].spec;
        let finish_reason = reason.map(|r| spec.finish_reason(r));
        match self.api {
            Api::Chat => json_event(&ChatCompletionChunk {
                id: m.id.clone(),
                object: "chat.completion.chunk".into(),
                created: m.created,
                model: m.model.clone(),
                choices: vec![ChatChunkChoice {
                    index: spec.index,
                    delta,
                    logprobs,
                    finish_reason,
                }],
                usage: None,
            }),
            Api::Completions => json_event(&CompletionChunk {
                id: m.id.clone(),
                object: "text_completion".into(),
                created: m.created,
                model: m.model.clone(),
                choices: vec![CompletionChoice {
                    index: spec.index,
                    text: delta.content.unwrap_or_default(),
                    logprobs,
                    finish_reason,
                    stop_reason: None,
                }],
                usage: None,
            }),
        }
    }
}

/// One `data: <json>` event. Serialising these plain structs cannot fail; if it ever
/// did, the client gets an error frame instead of a panic.
fn json_event<T: serde::Serialize>(value: &T) -> Event {
    match serde_json::to_string(value) {
        Ok(s) => Event::default().data(s),
        Err(e) => Event::default().data(format!(
            r#"{{"error":{{"message":"cannot encode a chunk: {}","type":"InternalServerError","param":null,"code":500}}}}"#,
            e.to_string().replace(['"', '\\'], "'")
        )),
    }
}

//! Turning a running engine request into a response: collected whole, or streamed as
//! Server-Sent Events with one chunk per token (sim-facts §1.5).
//!
//! A request in flight is owned by an [`InFlight`] guard that lives inside the response
//! future or stream. When a client goes away, hyper drops that future or stream, and
//! the guard tells the driver to abort, which frees the request's KV blocks and LoRA
//! slot before the next step. Nothing here waits on anything but the request's own
//! event channel.

use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use futures::Stream;
use tokio::sync::mpsc;

use super::driver::{DriverHandle, SubmitError};
use super::error::ApiError;
use crate::api::openai::{
    ChatChunkChoice, ChatCompletionChunk, CompletionChoice, CompletionChunk, Delta, Usage,
};
use crate::sim::engine::{AddError, EngineEvent, NewRequest, RequestId};
use crate::sim::metrics::FinishReason;
use crate::sim::tokens;

/// Aborts its request on drop unless the request finished.
#[derive(Debug)]
pub struct InFlight {
    id: RequestId,
    driver: DriverHandle,
    finished: bool,
}

impl InFlight {
    /// Marks the request finished: dropping the guard no longer aborts it.
    pub fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            tracing::debug!(request = self.id, "response dropped early; aborting");
            self.driver.abort(self.id);
        }
    }
}

/// A request the engine holds: its events and the guard that owns it.
pub struct Running {
    events: mpsc::UnboundedReceiver<EngineEvent>,
    guard: InFlight,
}

/// Hands `request` to the engine.
pub async fn submit(driver: &DriverHandle, request: NewRequest) -> Result<Running, ApiError> {
    // The guard exists before the request reaches the engine, so a client that leaves
    // while the add is in flight still aborts it (the abort follows the add).
    let mut guard = InFlight {
        id: request.id,
        driver: driver.clone(),
        finished: false,
    };
    match driver.add(request).await {
        Ok(events) => Ok(Running { events, guard }),
        Err(e) => {
            guard.finish();
            Err(submit_error(e))
        }
    }
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Rejected(e) => {
            let status = axum::http::StatusCode::from_u16(e.status())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            match e {
                AddError::EmptyPrompt => {
                    ApiError::new(status, "The prompt cannot be empty.").with_param("prompt")
                }
                AddError::ExceedsKvCapacity { .. } | AddError::TooLong { .. } => {
                    ApiError::new(status, e.to_string()).with_param("prompt")
                }
                AddError::LoraDisabled(_) => {
                    ApiError::new(status, e.to_string()).with_param("model")
                }
                AddError::DuplicateId(_) | AddError::NoOutput => {
                    ApiError::new(status, e.to_string())
                }
            }
        }
        SubmitError::Stopped => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "The engine is not running: the server is shutting down or its engine failed.",
        ),
    }
}

fn engine_stopped() -> ApiError {
    ApiError::internal("The engine stopped before the request finished.")
}

/// A whole generated output.
pub struct Collected {
    pub tokens: Vec<u32>,
    pub reason: FinishReason,
    pub usage: Usage,
}

/// Waits for every token of a request.
pub async fn collect(mut running: Running) -> Result<Collected, ApiError> {
    let mut tokens = Vec::new();
    while let Some(event) = running.events.recv().await {
        match event {
            EngineEvent::Token { token, .. } => tokens.push(token),
            EngineEvent::Finished { reason, usage, .. } => {
                running.guard.finish();
                return Ok(Collected {
                    tokens,
                    reason,
                    usage: usage_of(usage),
                });
            }
        }
    }
    Err(engine_stopped())
}

/// The OpenAI `usage` of an engine usage record.
pub fn usage_of(u: crate::sim::engine::Usage) -> Usage {
    Usage::new(u.prompt_tokens, u.completion_tokens, u.cached_tokens)
}

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

enum Phase {
    /// Chat only: the role chunk goes out with the first token, as vLLM sends it
    /// when the first output arrives (so time to first chunk is time to first token).
    Role,
    Tokens,
    Usage(Usage),
    Done,
    End,
}

struct StreamState {
    api: Api,
    meta: ResponseMeta,
    include_usage: bool,
    running: Running,
    /// An event read ahead by the role phase.
    pending: Option<EngineEvent>,
    phase: Phase,
}

/// The SSE response for a streaming request: (chat: a role chunk,) one chunk per
/// token, a chunk with the finish reason, a usage chunk if asked for, `[DONE]`.
pub fn sse(
    api: Api,
    meta: ResponseMeta,
    include_usage: bool,
    running: Running,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let state = StreamState {
        api,
        meta,
        include_usage,
        running,
        pending: None,
        phase: match api {
            Api::Chat => Phase::Role,
            Api::Completions => Phase::Tokens,
        },
    };
    Sse::new(futures::stream::unfold(state, |mut st| async move {
        let event = st.next_event().await?;
        Some((Ok(event), st))
    }))
}

impl StreamState {
    async fn next_event(&mut self) -> Option<Event> {
        match std::mem::replace(&mut self.phase, Phase::End) {
            Phase::Role => {
                self.pending = self.running.events.recv().await;
                self.phase = Phase::Tokens;
                Some(self.chunk(
                    Some(Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                    }),
                    None,
                ))
            }
            Phase::Tokens => {
                let event = match self.pending.take() {
                    Some(e) => Some(e),
                    None => self.running.events.recv().await,
                };
                match event {
                    Some(EngineEvent::Token { token, .. }) => {
                        self.phase = Phase::Tokens;
                        let text = tokens::token_text(token);
                        Some(self.chunk(
                            Some(Delta {
                                role: None,
                                content: Some(text),
                            }),
                            None,
                        ))
                    }
                    Some(EngineEvent::Finished { reason, usage, .. }) => {
                        self.running.guard.finish();
                        self.phase = if self.include_usage {
                            Phase::Usage(usage_of(usage))
                        } else {
                            Phase::Done
                        };
                        Some(self.chunk(Some(Delta::default()), Some(reason)))
                    }
                    None => {
                        // Mid-stream errors are one error frame, then [DONE].
                        self.phase = Phase::Done;
                        Some(json_event(&engine_stopped().body()))
                    }
                }
            }
            Phase::Usage(usage) => {
                self.phase = Phase::Done;
                Some(self.usage_chunk(usage))
            }
            Phase::Done => Some(Event::default().data("[DONE]")),
            Phase::End => None,
        }
    }

    /// A chunk with one choice. `delta` carries the text: for completions only its
    /// `content` is used.
    fn chunk(&self, delta: Option<Delta>, reason: Option<FinishReason>) -> Event {
        let m = &self.meta;
        let finish_reason = reason.map(|r| r.as_str().to_string());
        match self.api {
            Api::Chat => json_event(&ChatCompletionChunk {
                id: m.id.clone(),
                object: "chat.completion.chunk".into(),
                created: m.created,
                model: m.model.clone(),
                choices: vec![ChatChunkChoice {
                    index: 0,
                    delta: delta.unwrap_or_default(),
                    logprobs: None,
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
                    index: 0,
                    text: delta.and_then(|d| d.content).unwrap_or_default(),
                    logprobs: None,
                    finish_reason,
                    stop_reason: None,
                }],
                usage: None,
            }),
        }
    }

    fn usage_chunk(&self, usage: Usage) -> Event {
        let m = &self.meta;
        match self.api {
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

//! A running engine request and its guard: submitted, then collected whole here or
//! streamed by `sse`.
//!
//! A request in flight is owned by an [`InFlight`] guard that lives inside the response
//! future or stream. When a client goes away, hyper drops that future or stream, and
//! the guard tells the driver to abort, which frees the request's KV blocks and LoRA
//! slot before the next step. Nothing here waits on anything but the request's own
//! event channel.

use tokio::sync::mpsc;

use super::driver::{DriverHandle, SubmitError};
use super::error::ApiError;
use crate::api::openai::Usage;
use crate::sim::engine::{AddError, EngineEvent, NewRequest, RequestId};
use crate::sim::metrics::FinishReason;

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
    pub events: mpsc::UnboundedReceiver<EngineEvent>,
    pub guard: InFlight,
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

pub fn engine_stopped() -> ApiError {
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

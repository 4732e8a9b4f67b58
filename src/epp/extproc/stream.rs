//! One ext_proc stream, whatever processes it: a state machine answers each message
//! from Envoy with a [`Step`] (the replies, and whether the stream is over), and
//! [`replies`] turns it into the tonic reply stream.
//!
//! The reply stream pulls Envoy's messages itself (no task, no channel), so when the
//! stream ends for any reason (Envoy done, client gone, the drain timeout) dropping it
//! drops the inbound half and the state machine with it: whatever the stream holds (a
//! gathered body, a routing decision and its in-flight booking) goes with it.

use std::pin::Pin;

use envoy_types::pb::envoy::service::ext_proc::v3::{ProcessingRequest, ProcessingResponse};
use futures::{Stream, StreamExt};
use tonic::{Status, Streaming};

/// The result of one message from Envoy.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// To send, in order.
    pub replies: Vec<ProcessingResponse>,
    /// The stream is over (an immediate response went out): stop reading.
    pub close: bool,
}

impl Step {
    /// Replies that keep the stream going.
    pub fn send(replies: Vec<ProcessingResponse>) -> Step {
        Step {
            replies,
            close: false,
        }
    }
}

/// One stream's state machine.
pub trait StreamState: Send + 'static {
    fn on_message(&mut self, msg: ProcessingRequest) -> Step;
}

/// The tonic reply stream of a `Process` call.
pub type Replies = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

/// Drives `state` with `inbound`'s messages; see the module docs.
pub fn replies<S: StreamState>(inbound: Streaming<ProcessingRequest>, state: S) -> Replies {
    let replies = futures::stream::unfold(Some((inbound, state)), |state| async move {
        let (mut inbound, mut stream) = state?;
        loop {
            match inbound.message().await {
                Ok(Some(msg)) => {
                    let step = stream.on_message(msg);
                    if step.replies.is_empty() && !step.close {
                        continue;
                    }
                    let next = (!step.close).then_some((inbound, stream));
                    return Some((step.replies, next));
                }
                Ok(None) => return None,
                // Envoy cancelled or the connection broke: nobody is listening.
                Err(status) => {
                    tracing::debug!(%status, "ext_proc stream ended by the data plane");
                    return None;
                }
            }
        }
    })
    .flat_map(|replies| futures::stream::iter(replies.into_iter().map(Ok)));
    Box::pin(replies)
}

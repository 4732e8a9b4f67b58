//! The picker as a tonic `ExternalProcessor`: each `Process` call drives one
//! [`PickerStream`].
//!
//! The reply stream pulls Envoy's messages itself (no task, no channel), so when the
//! stream ends for any reason (Envoy done, client gone, the drain timeout) dropping it
//! drops the inbound half, the gathered body and the request's decision with it: the
//! in-flight booking is released and nothing outlives the stream.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessor;
use envoy_types::pb::envoy::service::ext_proc::v3::{ProcessingRequest, ProcessingResponse};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::stream::{PickerStream, Shared};

/// The ext_proc service; cheap to clone.
#[derive(Clone)]
pub struct PickerProcessor {
    shared: Arc<Shared>,
}

impl PickerProcessor {
    pub fn new(shared: Shared) -> PickerProcessor {
        PickerProcessor {
            shared: Arc::new(shared),
        }
    }
}

type Replies = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for PickerProcessor {
    type ProcessStream = Replies;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let state = (request.into_inner(), PickerStream::new(self.shared.clone()));
        let replies = futures::stream::unfold(Some(state), |state| async move {
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
        Ok(Response::new(Box::pin(replies)))
    }
}

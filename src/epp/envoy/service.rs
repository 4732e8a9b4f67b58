//! The picker as a tonic `ExternalProcessor`: each `Process` call drives one
//! [`PickerStream`].

use std::sync::Arc;

use envoy_types::pb::envoy::service::ext_proc::v3::ProcessingRequest;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessor;
use tonic::{Request, Response, Status, Streaming};

use crate::epp::extproc::{Replies, replies};

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

#[tonic::async_trait]
impl ExternalProcessor for PickerProcessor {
    type ProcessStream = Replies;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let state = PickerStream::new(self.shared.clone());
        Ok(Response::new(replies(request.into_inner(), state)))
    }
}

//! BBR as a tonic `ExternalProcessor`: each `Process` call drives one [`BbrStream`].

use std::sync::Arc;

use envoy_types::pb::envoy::service::ext_proc::v3::ProcessingRequest;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessor;
use tonic::{Request, Response, Status, Streaming};

use crate::epp::extproc::{Replies, replies};

use super::stream::{BbrShared, BbrStream};

/// The ext_proc service; cheap to clone.
#[derive(Clone)]
pub struct BbrProcessor {
    shared: Arc<BbrShared>,
}

impl BbrProcessor {
    pub fn new(shared: Arc<BbrShared>) -> BbrProcessor {
        BbrProcessor { shared }
    }
}

#[tonic::async_trait]
impl ExternalProcessor for BbrProcessor {
    type ProcessStream = Replies;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let state = BbrStream::new(self.shared.clone());
        Ok(Response::new(replies(request.into_inner(), state)))
    }
}

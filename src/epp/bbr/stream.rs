//! One ext_proc stream of the body-based router: one HTTP request and its response,
//! in FULL_DUPLEX_STREAMED mode both ways (gie-facts §1.2, §7).
//!
//! Request path: the headers reply is held back until the body ends; body chunks are
//! gathered (at most `max_body_bytes`, else 413); at the end the `model` field is read,
//! and one headers reply (routing headers, `clear_route_cache`, `Content-Length`) goes
//! out followed by the body in 62,000-byte chunks. A body that is not a JSON object, or
//! has no usable `model`, passes through untouched. Response path: every message is
//! echoed at once, so Envoy never waits on BBR.
//!
//! Pure: a message in, the replies out; no I/O, no clock, no panic on any input. The
//! only memory held is the request body being gathered, bounded by `max_body_bytes`.

use std::sync::Arc;

use envoy_types::pb::envoy::service::ext_proc::v3::{ProcessingRequest, processing_request};

use super::base_model::BaseModels;
use super::metrics::BbrMetrics;
use super::model::{ModelField, model_field};
pub use crate::epp::extproc::Step;
use crate::epp::extproc::StreamState;
use crate::epp::extproc::codec::{self, Direction, Mutation};
use envoy_types::pb::envoy::service::ext_proc::v3::ProcessingResponse;

/// The header BBR sets from the body's `model` (gie-facts §1.4).
pub const MODEL_HEADER: &str = "X-Gateway-Model-Name";
/// The header naming the base model of the requested adapter (gie-facts §1.4).
pub const BASE_MODEL_HEADER: &str = "X-Gateway-Base-Model-Name";

/// What every stream shares: the map, the metrics and the body cap.
pub struct BbrShared {
    pub base_models: BaseModels,
    pub metrics: Arc<BbrMetrics>,
    /// Largest request body gathered, bytes; a longer one is answered 413.
    pub max_body_bytes: usize,
}

/// Where the request half of the stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No request headers yet.
    Start,
    /// Headers seen, their reply held back, body being gathered.
    Gathering,
    /// The request half has been answered; only response messages remain.
    Answered,
}

/// The state of one stream.
pub struct BbrStream {
    shared: Arc<BbrShared>,
    phase: Phase,
    body: Vec<u8>,
}

impl BbrStream {
    pub fn new(shared: Arc<BbrShared>) -> BbrStream {
        BbrStream {
            shared,
            phase: Phase::Start,
            body: Vec::new(),
        }
    }

    /// Handles one message from Envoy (the [`StreamState`] the reply stream drives).
    pub fn handle(&mut self, msg: ProcessingRequest) -> Step {
        use processing_request::Request as R;
        match msg.request {
            None => Step::default(),
            Some(R::RequestHeaders(h)) => match self.phase {
                Phase::Start if h.end_of_stream => {
                    // Nothing to read a model from: let the request through as it is.
                    self.phase = Phase::Answered;
                    Step::send(vec![codec::pass_headers(Direction::Request)])
                }
                Phase::Start => {
                    self.phase = Phase::Gathering;
                    Step::default()
                }
                // A second set of request headers breaks the protocol; answering it
                // would confuse Envoy's ordering, so it gets no reply.
                Phase::Gathering | Phase::Answered => Step::default(),
            },
            Some(R::RequestBody(b)) => {
                if self.phase == Phase::Answered {
                    return Step::default();
                }
                self.phase = Phase::Gathering;
                if self.body.len().saturating_add(b.body.len()) > self.shared.max_body_bytes {
                    self.body = Vec::new();
                    self.phase = Phase::Answered;
                    return Step {
                        replies: vec![too_large(self.shared.max_body_bytes)],
                        close: true,
                    };
                }
                self.body.extend_from_slice(&b.body);
                if b.end_of_stream {
                    Step::send(self.finish_request(true))
                } else {
                    Step::default()
                }
            }
            Some(R::RequestTrailers(_)) => {
                // Trailers end the request instead of a body chunk with end_of_stream:
                // the body goes out without it, then the trailers reply (Header → Body →
                // Trailer order, gie-facts §1.2).
                let mut replies = if self.phase == Phase::Answered {
                    Vec::new()
                } else {
                    self.finish_request(false)
                };
                replies.push(codec::pass_trailers(Direction::Request));
                Step::send(replies)
            }
            Some(R::ResponseHeaders(_)) => {
                Step::send(vec![codec::pass_headers(Direction::Response)])
            }
            Some(R::ResponseBody(b)) => Step::send(codec::body_responses(
                Direction::Response,
                &b.body,
                b.end_of_stream,
            )),
            Some(R::ResponseTrailers(_)) => {
                Step::send(vec![codec::pass_trailers(Direction::Response)])
            }
        }
    }

    /// The held-back headers reply and the body, once the request body is complete.
    fn finish_request(&mut self, end_of_stream: bool) -> Vec<ProcessingResponse> {
        self.phase = Phase::Answered;
        let body = std::mem::take(&mut self.body);
        let mutation = self.route(&body);
        let mut replies = Vec::with_capacity(2 + body.len() / codec::BODY_BYTE_LIMIT);
        replies.push(codec::headers_response(Direction::Request, mutation));
        replies.extend(codec::body_responses(
            Direction::Request,
            &body,
            end_of_stream,
        ));
        replies
    }

    /// The header mutation for `body`, and the metric it counts.
    fn route(&self, body: &[u8]) -> Mutation {
        let metrics = &self.shared.metrics;
        // GIE's BBR answers 400 "failed to parse request body" to a body that is not
        // JSON (gie-facts §7). igw lets it through untouched instead, as it does a
        // body with no model: routing falls to the default route, and the model
        // server, not the router, says what is wrong with the request.
        let model = match model_field(body) {
            ModelField::Found(model) => model,
            ModelField::Missing => {
                metrics.field_not_found();
                return Mutation::default().clear_route_cache();
            }
            ModelField::Empty => {
                metrics.field_empty();
                return Mutation::default().clear_route_cache();
            }
            ModelField::Unparsable | ModelField::Unusable => {
                return Mutation::default().clear_route_cache();
            }
        };
        metrics.success();
        let mut mutation = Mutation::default()
            .set(MODEL_HEADER, model.as_bytes())
            .set("content-length", body.len().to_string())
            .clear_route_cache();
        if let Some(base) = self.shared.base_models.base_of(&model) {
            mutation = mutation.set(BASE_MODEL_HEADER, base.as_bytes());
        }
        mutation
    }
}

impl StreamState for BbrStream {
    fn on_message(&mut self, msg: ProcessingRequest) -> Step {
        self.handle(msg)
    }
}

fn too_large(limit: usize) -> ProcessingResponse {
    codec::immediate_response(
        413,
        &format!("request body is larger than the body-based router's limit of {limit} bytes\n"),
        &[("content-type", "text/plain; charset=utf-8")],
    )
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

//! One ext_proc stream of the picker: one HTTP request and its response, in
//! FULL_DUPLEX_STREAMED mode both ways, as GIE's EPP answers them (gie-facts §1.3).
//!
//! Request path: headers are read into the lifecycle's [`RequestContext`] (the subset
//! hint from `envoy.lb.subset_hint`); a header-only request is routed at once; otherwise
//! the headers reply waits for the body's end, the body is gathered (at most
//! `max_body_bytes`, else 413), parsed and routed, and then one headers reply goes out
//! (destination header and `envoy.lb` metadata, `Content-Length`, `x-request-id`,
//! `clear_route_cache`) followed by the body in 62,000-byte chunks, end of stream on the
//! last. Refusals are immediate responses with GIE's codes and texts and llm-d's
//! dropped-reason header.
//!
//! Response path: the endpoint that served is read from `envoy.lb`; SSE chunks are
//! echoed as they come, other bodies are held until their end (so the model name can
//! be turned back into the one the client sent); usage is read on the way through the
//! lifecycle's [`ResponseMeter`], which owns the decision and so its in-flight booking.
//!
//! No I/O beyond the pool's own request path, no clock, no panic on any input. Memory
//! per stream is bounded: the request body by `max_body_bytes`, a held response body by
//! [`MAX_HELD_RESPONSE`] (past it the body is passed on unchanged).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpHeaders, ProcessingRequest, ProcessingResponse, processing_request,
};
use http::Method;

use crate::epp::error::EppError;
use crate::epp::extproc::codec::{self, Direction, Mutation};
use crate::epp::extproc::{Step, StreamState};
use crate::epp::lifecycle::body::{restore_model, rewrite_model};
use crate::epp::lifecycle::headers::{
    DESTINATION, DROPPED_REASON, LB_NAMESPACE, REQUEST_ID, SERVED, SUBSET, SUBSET_NAMESPACE,
};
use crate::epp::lifecycle::{Decision, RequestContext, RequestIds, ResponseMeter, SubsetHint};
use crate::epp::pool::Pool;

/// The largest non-streaming response body held for the model-name rewrite, bytes.
pub const MAX_HELD_RESPONSE: usize = 16 << 20;

/// GIE's debug header on every response (gie-facts §1.3); kept so tests and dashboards
/// written against GIE see it.
const WENT_INTO_RESP_HEADERS: &str = "x-went-into-resp-headers";

/// What every stream shares.
pub struct Shared {
    pub pool: Arc<Pool>,
    pub ids: RequestIds,
    /// Largest request body gathered, bytes.
    pub max_body_bytes: usize,
    /// Ignore the data plane's subset hint (GIE's `--disable-endpoint-subset-filter`).
    pub ignore_subset: bool,
}

/// The immediate response that refuses a request with `error`.
fn refuse(error: &EppError) -> Step {
    let mut headers = vec![("content-type", "text/plain; charset=utf-8")];
    if let Some(reason) = error.dropped_reason() {
        headers.push((DROPPED_REASON, reason));
    }
    Step {
        replies: vec![codec::immediate_response(
            error.status(),
            &error.to_string(),
            &headers,
        )],
        close: true,
    }
}

/// Where the request half is.
enum Request {
    /// No headers yet.
    Start,
    /// Headers read, body being gathered; the headers reply is held back.
    Gathering(Box<RequestContext>, Vec<u8>),
    /// Routed (or passed through): the rest is the response.
    Answered,
}

/// The response half, once its headers came.
enum Response {
    /// No response headers yet (the decision waits here).
    Waiting(Option<Decision>),
    /// Streaming: every chunk is passed on at once.
    Streaming(ResponseMeter),
    /// Held until its end for the model-name rewrite.
    Holding(ResponseMeter, Vec<u8>),
    /// Done, or nothing to meter.
    Over,
}

/// The model names the response must be turned back from and to.
struct Names {
    target: String,
    incoming: String,
}

/// One stream's state.
pub struct PickerStream {
    shared: Arc<Shared>,
    request: Request,
    response: Response,
    names: Option<Names>,
}

impl PickerStream {
    pub fn new(shared: Arc<Shared>) -> PickerStream {
        PickerStream {
            shared,
            request: Request::Start,
            response: Response::Waiting(None),
            names: None,
        }
    }

    /// Handles one message from Envoy (the [`StreamState`] the reply stream drives).
    pub fn handle(&mut self, msg: ProcessingRequest) -> Step {
        use processing_request::Request as R;
        let metadata = msg.metadata_context;
        match msg.request {
            None => Step::default(),
            Some(R::RequestHeaders(h)) => {
                if !matches!(self.request, Request::Start) {
                    return Step::default();
                }
                let mut ctx = self.context(&h);
                if !self.shared.ignore_subset
                    && let Some(hint) =
                        codec::metadata_strings(metadata.as_ref(), SUBSET_NAMESPACE, SUBSET)
                {
                    ctx.subset = Some(SubsetHint::parse(hint.iter().map(String::as_str)));
                }
                if h.end_of_stream {
                    return self.route(ctx, Vec::new(), None);
                }
                self.request = Request::Gathering(Box::new(ctx), Vec::new());
                Step::default()
            }
            Some(R::RequestBody(b)) => {
                let Request::Gathering(_, body) = &mut self.request else {
                    return Step::default();
                };
                if body.len().saturating_add(b.body.len()) > self.shared.max_body_bytes {
                    self.request = Request::Answered;
                    let err = EppError::PayloadTooLarge(format!(
                        "request body exceeds {} bytes",
                        self.shared.max_body_bytes
                    ));
                    self.shared.pool.reject(None, &err);
                    return refuse(&err);
                }
                body.extend_from_slice(&b.body);
                if !b.end_of_stream {
                    return Step::default();
                }
                self.finish_request(true)
            }
            Some(R::RequestTrailers(_)) => {
                let mut step = if matches!(self.request, Request::Gathering(..)) {
                    self.finish_request(false)
                } else {
                    Step::default()
                };
                if !step.close {
                    step.replies.push(codec::pass_trailers(Direction::Request));
                }
                step
            }
            Some(R::ResponseHeaders(h)) => self.response_headers(&h, metadata.as_ref()),
            Some(R::ResponseBody(b)) => self.response_body(b.body, b.end_of_stream),
            Some(R::ResponseTrailers(_)) => {
                let mut replies = self.end_response(false);
                replies.push(codec::pass_trailers(Direction::Response));
                Step::send(replies)
            }
        }
    }

    /// The lifecycle's view of the request headers.
    fn context(&self, h: &HttpHeaders) -> RequestContext {
        let headers = codec::header_map(h);
        let method = codec::pseudo_header(h, ":method")
            .and_then(|m| Method::from_bytes(m).ok())
            .unwrap_or(Method::POST);
        // GIE's order: `:path`, then the paths a gateway may have moved it to.
        let path = [
            codec::pseudo_header(h, ":path"),
            headers.get("x-original-path").map(|v| v.as_bytes()),
            headers.get("x-forwarded-path").map(|v| v.as_bytes()),
        ]
        .into_iter()
        .flatten()
        .find(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_else(|| "/v1/completions".into());
        RequestContext::new(method, path, headers, &self.shared.ids)
    }

    fn finish_request(&mut self, end_of_stream: bool) -> Step {
        let Request::Gathering(ctx, body) = std::mem::replace(&mut self.request, Request::Answered)
        else {
            return Step::default();
        };
        self.route(*ctx, body, Some(end_of_stream))
    }

    /// Parses and routes the request; `end_of_stream` is `None` for a header-only
    /// request (no body to send back).
    fn route(&mut self, ctx: RequestContext, body: Vec<u8>, end_of_stream: Option<bool>) -> Step {
        self.request = Request::Answered;
        let pool = &self.shared.pool;
        let request = match pool.parse(&ctx, &body) {
            Ok(r) => r,
            Err(err) => {
                pool.reject(None, &err);
                return refuse(&err);
            }
        };
        let body = rewrite_model(&request, Bytes::from(body));
        self.names = Some(Names {
            target: request.target_model.clone(),
            incoming: request.incoming_model.clone(),
        });
        let mut decision = match pool.route(&ctx, request) {
            Ok(d) => d,
            Err(err) => return refuse(&err),
        };
        // Envoy sends to the first target; a fallback that serves instead is read
        // from the response's metadata.
        decision.reserve(0);
        let destinations = decision.destinations();
        let mut mutation = Mutation::default()
            .set(DESTINATION, destinations.as_bytes())
            .set(REQUEST_ID, ctx.request_id.as_bytes())
            .clear_route_cache();
        if end_of_stream.is_some() {
            mutation = mutation.set("content-length", body.len().to_string());
        }
        let mut headers = codec::headers_response(Direction::Request, mutation);
        let targets: Vec<String> = destinations.split(',').map(str::to_string).collect();
        headers.dynamic_metadata = Some(codec::destination_metadata(&targets));
        let mut replies = vec![headers];
        if let Some(eos) = end_of_stream {
            replies.extend(codec::body_responses(Direction::Request, &body, eos));
        }
        self.response = Response::Waiting(Some(decision));
        Step::send(replies)
    }

    fn response_headers(
        &mut self,
        h: &HttpHeaders,
        metadata: Option<&envoy_types::pb::envoy::config::core::v3::Metadata>,
    ) -> Step {
        let reply = codec::headers_response(
            Direction::Response,
            Mutation::default().set(WENT_INTO_RESP_HEADERS, "true"),
        );
        let Response::Waiting(decision) = std::mem::replace(&mut self.response, Response::Over)
        else {
            return Step::send(vec![reply]);
        };
        let Some(mut decision) = decision else {
            return Step::send(vec![reply]);
        };
        if let Some(served) = codec::metadata_string_value(metadata, LB_NAMESPACE, SERVED)
            .and_then(|s| s.parse::<SocketAddr>().ok())
        {
            decision.served(served);
        }
        let headers = codec::header_map(h);
        let status = codec::pseudo_header(h, ":status")
            .or_else(|| headers.get("status").map(|v| v.as_bytes()))
            .and_then(|s| std::str::from_utf8(s).ok()?.trim().parse::<u16>().ok())
            .unwrap_or(200);
        let streaming = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/event-stream"));
        let mut meter = ResponseMeter::start(decision, status, streaming);
        if h.end_of_stream {
            meter.finish(true);
        } else if streaming {
            self.response = Response::Streaming(meter);
        } else {
            self.response = Response::Holding(meter, Vec::new());
        }
        Step::send(vec![reply])
    }

    fn response_body(&mut self, chunk: Vec<u8>, end_of_stream: bool) -> Step {
        match std::mem::replace(&mut self.response, Response::Over) {
            Response::Streaming(mut meter) => {
                meter.chunk(&chunk);
                let bytes = self.restored(&chunk).unwrap_or(chunk);
                if end_of_stream {
                    meter.finish(true);
                } else {
                    self.response = Response::Streaming(meter);
                }
                Step::send(codec::body_responses(
                    Direction::Response,
                    &bytes,
                    end_of_stream,
                ))
            }
            Response::Holding(mut meter, mut held) => {
                if held.len().saturating_add(chunk.len()) > MAX_HELD_RESPONSE {
                    // Too large to hold: pass everything on as it is from here.
                    meter.chunk(&held);
                    meter.chunk(&chunk);
                    held.extend_from_slice(&chunk);
                    if end_of_stream {
                        meter.finish(true);
                    } else {
                        self.response = Response::Streaming(meter);
                    }
                    return Step::send(codec::body_responses(
                        Direction::Response,
                        &held,
                        end_of_stream,
                    ));
                }
                held.extend_from_slice(&chunk);
                self.response = Response::Holding(meter, held);
                if end_of_stream {
                    Step::send(self.end_response(true))
                } else {
                    Step::default()
                }
            }
            // No response headers seen, or the response is over: pass it on.
            other => {
                self.response = other;
                Step::send(codec::body_responses(
                    Direction::Response,
                    &chunk,
                    end_of_stream,
                ))
            }
        }
    }

    /// Ends the response: a held body goes out now (with end of stream when
    /// `end_of_stream`, else trailers follow), and the meter reports.
    fn end_response(&mut self, end_of_stream: bool) -> Vec<ProcessingResponse> {
        match std::mem::replace(&mut self.response, Response::Over) {
            Response::Holding(mut meter, held) => {
                meter.chunk(&held);
                meter.finish(true);
                let bytes = self.restored(&held).unwrap_or(held);
                codec::body_responses(Direction::Response, &bytes, end_of_stream)
            }
            Response::Streaming(mut meter) => {
                meter.finish(true);
                Vec::new()
            }
            other => {
                self.response = other;
                Vec::new()
            }
        }
    }

    /// `bytes` with the target model turned back into the one the client sent.
    fn restored(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let names = self.names.as_ref()?;
        restore_model(bytes, &names.target, &names.incoming)
    }
}

impl StreamState for PickerStream {
    fn on_message(&mut self, msg: ProcessingRequest) -> Step {
        self.handle(msg)
    }
}

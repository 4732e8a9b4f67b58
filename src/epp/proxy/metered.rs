//! The response body the gateway hands back: the model server's bytes, passed on as
//! they arrive, inside the [`ResponseMeter`] that owns the request's decision, so the
//! in-flight booking lasts exactly as long as the stream (released when it ends, fails
//! or the client goes away) and usage is read as frames go by.
//!
//! A body that breaks off (the model server's connection fails, or sends nothing for
//! the stall timeout) counts against the endpoint. A server-sent-events stream then
//! ends the way vLLM ends a stream that fails mid-way: one `data: {"error": …}` event
//! and `data: [DONE]` (sim-facts §"streaming"), so a client sees why its stream
//! stopped instead of a cut connection; any other body ends with an error, which
//! closes the client's connection.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::epp::lifecycle::ResponseMeter;

/// The body's error: the model server's, or the gateway's own (a stall).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A pass-through body that meters the response.
pub struct MeteredBody {
    inner: hyper::body::Incoming,
    meter: ResponseMeter,
    /// Longest wait for the next body bytes, and the timer of the current wait.
    stall: Option<(Duration, Pin<Box<Sleep>>)>,
    /// Nothing more to send.
    ended: bool,
}

impl MeteredBody {
    /// `stall_timeout`: how long the body may send nothing before it counts as broken
    /// (`None`: wait forever).
    pub fn new(
        inner: hyper::body::Incoming,
        meter: ResponseMeter,
        stall_timeout: Option<Duration>,
    ) -> MeteredBody {
        MeteredBody {
            inner,
            meter,
            stall: stall_timeout.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            ended: false,
        }
    }

    /// The upstream body broke off: count it, and end an SSE stream with an error
    /// event (or fail the body) as the module docs say.
    fn broke_off(
        &mut self,
        reason: &'static str,
        message: String,
    ) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.meter.broke_off(reason);
        self.meter.finish(false);
        self.ended = true;
        if self.meter.streaming() {
            Some(Ok(Frame::data(error_event(&message))))
        } else {
            Some(Err(message.into()))
        }
    }
}

/// vLLM's mid-stream error: an `error` event in its error body's shape, then `[DONE]`.
fn error_event(message: &str) -> Bytes {
    let body = serde_json::json!({"error": {
        "message": message,
        "type": "BadGatewayError",
        "param": null,
        "code": 502,
    }});
    Bytes::from(format!("data: {body}\n\ndata: [DONE]\n\n"))
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.meter.chunk(data);
                    if let Some((timeout, sleep)) = &mut this.stall {
                        sleep.as_mut().reset(Instant::now() + *timeout);
                    }
                }
                // A body with a known length may never be polled to its end.
                if this.inner.is_end_stream() {
                    this.meter.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(this.broke_off(
                "upstream",
                format!("the model server's response broke off: {e}"),
            )),
            Poll::Ready(None) => {
                this.meter.finish(true);
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some((timeout, sleep)) = &mut this.stall else {
                    return Poll::Pending;
                };
                ready!(sleep.as_mut().poll(cx));
                let message = format!("the model server sent nothing for {timeout:?}");
                Poll::Ready(this.broke_off("stall", message))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // Dropped unfinished means the client left. A body whose last byte went out
        // counts as complete.
        let complete = self.inner.is_end_stream();
        self.meter.finish(complete);
    }
}

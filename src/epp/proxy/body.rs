//! The response body the gateway hands back: the model server's bytes, passed on as
//! they arrive, plus the bookkeeping that must last exactly as long as the stream.
//!
//! It holds the endpoint's in-flight guard (so load is released when the stream ends
//! or the client goes away, never leaked), reads usage as frames go by, and reports
//! one [`Completion`] when the body ends, fails or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::usage::{TokenUsage, UsageSniffer};
use crate::epp::endpoint::InFlightGuard;

/// How a forwarded response ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The response body reached its end.
    pub complete: bool,
    /// From the body, if the server sent a `usage` object.
    pub usage: Option<TokenUsage>,
    /// From sending the request to the first body byte.
    pub first_byte: Option<Duration>,
    /// From sending the request to the end (or abandonment) of the body.
    pub elapsed: Duration,
    /// Response bytes passed on.
    pub bytes: u64,
}

/// Called once with the response's [`Completion`].
pub type OnComplete = Box<dyn FnOnce(Completion) + Send + Sync>;

/// A pass-through body that meters the response.
pub struct MeteredBody {
    inner: hyper::body::Incoming,
    _guard: InFlightGuard,
    sniffer: UsageSniffer,
    sent_at: Instant,
    first_byte: Option<Duration>,
    bytes: u64,
    on_complete: Option<OnComplete>,
}

impl MeteredBody {
    pub fn new(
        inner: hyper::body::Incoming,
        guard: InFlightGuard,
        streaming: bool,
        sent_at: Instant,
        on_complete: OnComplete,
    ) -> MeteredBody {
        MeteredBody {
            inner,
            _guard: guard,
            sniffer: UsageSniffer::new(streaming),
            sent_at,
            first_byte: None,
            bytes: 0,
            on_complete: Some(on_complete),
        }
    }

    fn report(&mut self, complete: bool) {
        if let Some(done) = self.on_complete.take() {
            done(Completion {
                complete,
                usage: self.sniffer.finish(),
                first_byte: self.first_byte,
                elapsed: self.sent_at.elapsed(),
                bytes: self.bytes,
            });
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.first_byte
                        .get_or_insert_with(|| this.sent_at.elapsed());
                    this.bytes += data.len() as u64;
                    this.sniffer.feed(data);
                }
                // A body with a known length may never be polled to its end.
                if this.inner.is_end_stream() {
                    this.report(true);
                }
            }
            Poll::Ready(Some(Err(_))) => this.report(false),
            Poll::Ready(None) => this.report(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // Dropped unfinished means the client left (or the server failed): still report
        // once. A body whose last byte went out counts as complete.
        let complete = self.inner.is_end_stream();
        self.report(complete);
    }
}

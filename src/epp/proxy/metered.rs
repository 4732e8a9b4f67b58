//! The response body the gateway hands back: the model server's bytes, passed on as
//! they arrive, inside the [`ResponseMeter`] that owns the request's decision, so the
//! in-flight booking lasts exactly as long as the stream (released when it ends, fails
//! or the client goes away) and usage is read as frames go by.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::epp::lifecycle::ResponseMeter;

/// A pass-through body that meters the response.
pub struct MeteredBody {
    inner: hyper::body::Incoming,
    meter: ResponseMeter,
}

impl MeteredBody {
    pub fn new(inner: hyper::body::Incoming, meter: ResponseMeter) -> MeteredBody {
        MeteredBody { inner, meter }
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
                    this.meter.chunk(data);
                }
                // A body with a known length may never be polled to its end.
                if this.inner.is_end_stream() {
                    this.meter.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => this.meter.finish(false),
            Poll::Ready(None) => this.meter.finish(true),
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
        // Dropped unfinished means the client left (or the server failed). A body
        // whose last byte went out counts as complete.
        let complete = self.inner.is_end_stream();
        self.meter.finish(complete);
    }
}

//! A request body under the server's limits: it must arrive before a deadline, and
//! its bytes count against the budget of request bytes buffered by all connections.
//!
//! [`LimitedBody`] is what an app's handlers read. When the deadline passes or the
//! budget runs out it fails with a [`BodyError`], which reaches the app's extractor
//! as the source of its rejection; [`body_error`] finds it there so the app can answer
//! with the right status. Nothing here reads ahead of the app: an unread body costs
//! nothing but its reservation.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::stats::ServeStats;

/// Why a request body was refused or cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body did not arrive within the request body timeout.
    #[error("The request body did not arrive within {0:?}.")]
    TimedOut(Duration),
    /// Taking the body would exceed the bytes the server buffers at once; a retry
    /// may succeed.
    #[error("The server is already buffering its most request bytes ({budget}); retry later.")]
    OverBudget { budget: usize },
    /// The declared body is larger than everything the server ever buffers at once.
    #[error(
        "The request body ({declared} bytes) is larger than the {budget} bytes the server \
         buffers at once."
    )]
    TooLarge { declared: u64, budget: usize },
    /// The connection failed while the body was being read.
    #[error("Reading the request body failed: {0}")]
    Transport(#[source] hyper::Error),
}

impl BodyError {
    /// The status an app should answer with: 408, 503, 413, or 400 for a broken
    /// connection (which will rarely be read).
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::OverBudget { .. } => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Transport(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The [`BodyError`] behind `err`, if any: `err` itself or one of its sources, as
/// when an extractor's rejection wraps a failed body read.
pub fn body_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a BodyError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<BodyError>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// The budget of request bytes buffered at once, in bytes (one permit per byte).
#[derive(Debug)]
pub(super) struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub(super) fn new(total: usize) -> Budget {
        Budget {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The whole budget, bytes.
    pub(super) fn total(&self) -> usize {
        self.total
    }

    /// Bytes reserved now.
    pub(super) fn in_use(&self) -> usize {
        self.total - self.permits.available_permits()
    }

    /// Reserves `bytes` at once, or says why not.
    pub(super) fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit, BodyError> {
        let too_large = BodyError::TooLarge {
            declared: bytes,
            budget: self.total,
        };
        if bytes > self.total as u64 {
            return Err(too_large);
        }
        let n = u32::try_from(bytes).map_err(|_| too_large)?;
        self.permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::OverBudget { budget: self.total })
    }
}

/// Bytes one request holds of the budget. Shared by its body and its handler's
/// call, so the bytes return when both are done: the body dropped (its bytes are no
/// longer being received) and the handler answered (it no longer holds what it
/// read).
#[derive(Debug, Default)]
pub(super) struct Reservation(Mutex<Option<OwnedSemaphorePermit>>);

impl Reservation {
    pub(super) fn add(&self, permit: OwnedSemaphorePermit) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(p) => p.merge(permit),
            None => *held = Some(permit),
        }
    }
}

/// A request body with a deadline and a budget; see the module comment.
#[derive(Debug)]
pub struct LimitedBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    /// Armed on the first read that has to wait, so bodiless requests arm no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    budget: Arc<Budget>,
    reservation: Arc<Reservation>,
    /// Whether the body's whole length was reserved with its head.
    reserved_upfront: bool,
    stats: Arc<ServeStats>,
    /// Set once the body has ended or failed: later polls end it.
    done: bool,
}

impl LimitedBody {
    pub(super) fn new(
        inner: Incoming,
        timeout: Duration,
        budget: Arc<Budget>,
        reservation: Arc<Reservation>,
        reserved_upfront: bool,
        stats: Arc<ServeStats>,
    ) -> LimitedBody {
        LimitedBody {
            inner,
            deadline: Instant::now() + timeout,
            timeout,
            sleep: None,
            budget,
            reservation,
            reserved_upfront,
            stats,
            done: false,
        }
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        self.sleep = None;
        self.stats.body_refused(&e);
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if !this.reserved_upfront
                    && let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    match this.budget.reserve(data.len() as u64) {
                        Ok(permit) => this.reservation.add(permit),
                        Err(e) => return this.fail(e),
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(BodyError::Transport(e)),
            Poll::Ready(None) => {
                this.done = true;
                this.sleep = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return this.fail(BodyError::TimedOut(this.timeout));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

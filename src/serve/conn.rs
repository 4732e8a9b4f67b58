//! One connection: hyper's HTTP/1.1 state machine, a watchdog that closes it when a
//! request head is too slow or it idles too long, and the wrapping of each request
//! (body limits) and response (the end of the request).
//!
//! A connection is always in one phase: *head* (waiting for a request head to
//! complete: from accept, or from the first byte after an idle pause), *busy* (a
//! request is being handled or its response is still being written), or *idle*
//! (kept alive, nothing received since the last response). Head and idle have a
//! deadline; busy has none, because a body has its own timeout and a response (a
//! token stream) may rightly last minutes. In any phase, a write blocked on a client
//! that does not read gets the idle timeout: the kernel's send buffer (megabytes)
//! must drain within it. The watchdog runs inside the connection's
//! own task, so it costs no extra task and cannot outlive the connection.

use std::convert::Infallible;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use super::Shared;
use super::body::{BodyError, LimitedBody, Reservation};
use super::stats::Closed;

#[derive(Clone, Copy, Debug)]
enum Phase {
    Head { since: Instant },
    Busy { requests: usize },
    Idle { since: Instant },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Since when a write has waited for the client to read, in any phase (hyper
    /// may still be flushing a response after its body ended).
    write_blocked: Option<Instant>,
}

/// The phase of one connection, shared by its IO, its requests and its watchdog.
#[derive(Debug)]
struct ConnState {
    inner: Mutex<Inner>,
    /// Wakes the watchdog when a deadline may have moved earlier or appeared.
    changed: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            inner: Mutex::new(Inner {
                phase: Phase::Head {
                    since: Instant::now(),
                },
                write_blocked: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: an idle connection starts receiving a request head.
    fn on_bytes(&self) {
        let mut inner = self.lock();
        if let Phase::Idle { .. } = inner.phase {
            inner.phase = Phase::Head {
                since: Instant::now(),
            };
            drop(inner);
            self.changed.notify_one();
        }
    }

    /// A request head is complete; the returned guard ends the request when dropped.
    fn begin(self: &Arc<Self>) -> InRequest {
        let mut inner = self.lock();
        inner.phase = match inner.phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        };
        InRequest(self.clone())
    }

    fn end(&self) {
        let mut inner = self.lock();
        if let Phase::Busy { requests } = inner.phase {
            inner.phase = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                Phase::Idle {
                    since: Instant::now(),
                }
            };
        }
        drop(inner);
        self.changed.notify_one();
    }

    /// A write could not go out: the client is not reading.
    fn on_write_blocked(&self) {
        let mut inner = self.lock();
        if inner.write_blocked.is_none() {
            inner.write_blocked = Some(Instant::now());
            drop(inner);
            self.changed.notify_one();
        }
    }

    /// A blocked write went out. An idle connection still flushing its last
    /// response counts its idle time from here.
    fn on_write_progress(&self) {
        let mut inner = self.lock();
        inner.write_blocked = None;
        if let Phase::Idle { since } = &mut inner.phase {
            *since = Instant::now();
        }
    }

    fn deadline(&self, shared: &Shared) -> Option<(Instant, Closed)> {
        let inner = self.lock();
        let idle = shared.limits.idle_timeout;
        if let Some(since) = inner.write_blocked {
            return Some((since + idle, Closed::Unread));
        }
        match inner.phase {
            Phase::Head { since } => Some((
                since + shared.limits.header_read_timeout,
                Closed::HeaderTimeout,
            )),
            Phase::Idle { since } => Some((since + idle, Closed::IdleTimeout)),
            Phase::Busy { .. } => None,
        }
    }
}

/// One request in progress, from its complete head until its response body is done.
#[derive(Debug)]
struct InRequest(Arc<ConnState>);

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Serves one accepted connection until it ends, a watchdog deadline passes, or the
/// server shuts down (then it finishes the request in progress). `_slot` is its
/// place under the connection limit; `_open` keeps the server's shutdown waiting.
pub(super) async fn run(
    tcp: TcpStream,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) {
    shared.stats.opened();
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Watched {
        inner: tcp,
        state: state.clone(),
        write_blocked: false,
    });
    let service = hyper::service::service_fn({
        let shared = shared.clone();
        let state = state.clone();
        move |req| handle(shared.clone(), state.begin(), req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog times request heads; hyper's own timer would also cut idle
    // connections at the header timeout.
    builder.keep_alive(true).header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    loop {
        let deadline = state.deadline(&shared);
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            _ = state.changed.notified() => {}
            _ = sleep_until(deadline.map(|(at, _)| at)) => {
                if let Some((at, why)) = state.deadline(&shared)
                    && at <= Instant::now()
                {
                    tracing::debug!(reason = ?why, "closing a connection at its deadline");
                    shared.stats.closed_by(why);
                    break;
                }
            }
        }
    }
    shared.stats.closed();
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One request: reserve its declared body or refuse it at once, put its body under
/// the limits, call the app, and tie the response to the request's end.
async fn handle(
    shared: Arc<Shared>,
    in_request: InRequest,
    req: Request<Incoming>,
) -> Result<Response<TrackedBody>, Infallible> {
    let (parts, incoming) = req.into_parts();
    let reservation = Arc::new(Reservation::default());
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let reserved_upfront = match declared {
        Some(n) if n > 0 => match shared.budget.reserve(n) {
            Ok(permit) => {
                reservation.add(permit);
                true
            }
            Err(e) => {
                shared.stats.body_refused(&e);
                tracing::debug!(error = %e, "request body refused at its head");
                let mut res = (shared.reject)(&e);
                // The body stays unread, so the connection cannot be reused.
                res.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                if matches!(e, BodyError::OverBudget { .. }) {
                    // Bodies in flight take seconds at most to return their bytes.
                    res.headers_mut().insert(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_static("1"),
                    );
                }
                return Ok(res.map(|body| TrackedBody {
                    inner: body,
                    _request: in_request,
                }));
            }
        },
        _ => false,
    };
    let body = LimitedBody::new(
        incoming,
        shared.limits.request_body_timeout,
        shared.budget.clone(),
        reservation.clone(),
        reserved_upfront,
        shared.stats.clone(),
    );
    let app = TowerToHyperService::new(shared.app.clone());
    let res = match app.call(Request::from_parts(parts, body)).await {
        Ok(res) => res,
        Err(never) => match never {},
    };
    drop(reservation);
    Ok(res.map(|body| TrackedBody {
        inner: body,
        _request: in_request,
    }))
}

/// A response body that ends its request when hyper is done with it.
struct TrackedBody {
    inner: Body,
    _request: InRequest,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling the connection's phase when bytes arrive and when writes
/// block and unblock (only on those transitions, not on every write).
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
    write_blocked: bool,
}

impl Watched {
    fn track<T>(&mut self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match (&poll, self.write_blocked) {
            (Poll::Pending, false) => {
                self.write_blocked = true;
                self.state.on_write_blocked();
            }
            (Poll::Ready(_), true) => {
                self.write_blocked = false;
                self.state.on_write_progress();
            }
            _ => {}
        }
        poll
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.on_bytes();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! Serving an axum app to clients that may be slow, stalled or hostile: the accept
//! loop and per-connection handling shared by the simulator (and, next, the gateway)
//! in place of `axum::serve`.
//!
//! [`Server::serve`] accepts up to [`ServeLimits::max_connections`] connections (more
//! wait in the kernel's listen backlog), sets `TCP_NODELAY` on each (token streams
//! are small writes that must leave at once), and speaks HTTP/1.1 on them, as vLLM's
//! uvicorn does. Each connection is closed when a request head takes longer than
//! the header timeout, or it sits idle (or its response sits unread) past the idle
//! timeout; each request body must
//! arrive within the body timeout and fit the budget of bytes buffered by all
//! connections, or it fails with a [`BodyError`] that the app turns into 408, 503 or
//! 413 ([`body_error`] finds it behind an extractor's rejection). A body whose
//! declared length does not fit is refused before the app sees the request.
//! Graceful shutdown stops accepting, closes idle connections, and waits for the
//! requests in flight.
//!
//! What it must not do: buffer anything the app does not read, hold a lock across
//! an await, or spawn more than one task per connection.
//!
//! Layout: `limits` ([`ServeLimits`], its defaults and flags), `conn` (one connection:
//! phases, watchdog, request and response wrapping), `body` (the request body's
//! deadline and budget, [`BodyError`]), `stats` ([`ServeStats`] and its Prometheus
//! text).

mod body;
mod conn;
mod limits;
mod stats;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

pub use body::{BodyError, LimitedBody, body_error};
pub use limits::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_INFLIGHT_BODY_BYTES, DEFAULT_REQUEST_BODY_TIMEOUT, LimitsError, ServeLimitOptions,
    ServeLimits,
};
pub use stats::{ServeStats, ServeStatsSnapshot};

use body::Budget;

/// Builds the response to a body refused before the app saw it (its declared length
/// does not fit the budget). The server adds `Connection: close`, and `Retry-After`
/// when a retry may succeed.
pub type Rejection = Arc<dyn Fn(&BodyError) -> Response + Send + Sync>;

/// Pause after an accept error that is not the client's (out of file descriptors):
/// retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// At most one "connection limit reached" warning per this long.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// What every connection of one server shares.
struct Shared {
    app: Router,
    limits: ServeLimits,
    budget: Arc<Budget>,
    stats: Arc<ServeStats>,
    reject: Rejection,
}

/// A server with its limits, counters and rejection response, ready to serve an app.
pub struct Server {
    limits: ServeLimits,
    budget: Arc<Budget>,
    stats: Arc<ServeStats>,
    reject: Rejection,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with these limits; fails if one is out of range.
    pub fn new(limits: ServeLimits) -> Result<Server, LimitsError> {
        limits.validate()?;
        let budget = Arc::new(Budget::new(limits.max_inflight_body_bytes));
        Ok(Server {
            stats: Arc::new(ServeStats::new(budget.clone())),
            budget,
            limits,
            reject: Arc::new(default_rejection),
        })
    }

    /// Answers bodies refused at their head with `f` instead of the default
    /// OpenAI-shaped error (`{"error": {"message", "type", "param", "code"}}`).
    pub fn with_rejection(
        mut self,
        f: impl Fn(&BodyError) -> Response + Send + Sync + 'static,
    ) -> Server {
        self.reject = Arc::new(f);
        self
    }

    /// The server's counters, readable while it serves (e.g. by the app's `/metrics`).
    pub fn stats(&self) -> Arc<ServeStats> {
        self.stats.clone()
    }

    /// Serves `app` on `listener` until `shutdown` completes, then stops accepting,
    /// closes idle connections and waits for the requests in flight to finish.
    pub async fn serve<F>(self, listener: TcpListener, app: Router, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let shared = Arc::new(Shared {
            app,
            limits: self.limits,
            budget: self.budget,
            stats: self.stats,
            reject: self.reject,
        });
        let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a receiver; the server returns once all are gone.
        let (open_tx, open_rx) = watch::channel(());
        let mut shutdown = pin!(shutdown);
        let mut warned_full: Option<Instant> = None;
        loop {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    shared.stats.accept_paused();
                    if warned_full.is_none_or(|t| t.elapsed() >= FULL_WARNING_EVERY) {
                        warned_full = Some(Instant::now());
                        tracing::warn!(
                            max_connections = shared.limits.max_connections,
                            "connection limit reached; new connections wait in the listen backlog"
                        );
                    }
                    tokio::select! {
                        biased;
                        _ = &mut shutdown => break,
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => break,
                        },
                    }
                }
            };
            let accepted = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let tcp = match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            tokio::spawn(conn::run(
                tcp,
                shared.clone(),
                slot,
                stop_rx.clone(),
                open_rx.clone(),
            ));
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(open_rx);
        open_tx.closed().await;
        Ok(())
    }
}

/// [`Server::new`]`(limits)?.serve(listener, app, shutdown)`.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let server = Server::new(limits).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    server.serve(listener, app, shutdown).await
}

/// Errors of one incoming connection (the client gave up), not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The OpenAI error shape both the simulator and the gateway speak.
fn default_rejection(e: &BodyError) -> Response {
    let status = e.status();
    let kind = match status.as_u16() {
        413 => "BadRequestError",
        s if s >= 500 => "InternalServerError",
        _ => "APIError",
    };
    let body = serde_json::json!({"error": {
        "message": e.to_string(), "type": kind, "param": null, "code": status.as_u16(),
    }});
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests;

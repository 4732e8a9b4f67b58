//! Serving tonic services on a given listener, as GIE's EPP and BBR serve ext_proc:
//! optional TLS (a cert directory or a self-signed certificate made at start,
//! gie-facts §1.9), message-size limits, and a graceful drain.
//!
//! Drain: when the shutdown future completes the server stops accepting connections,
//! tells open HTTP/2 connections to take no new streams (GOAWAY), and lets the streams
//! in flight finish for up to [`GrpcServing::drain_timeout`]. Streams still open then
//! are ended with gRPC `UNAVAILABLE`, which drops their handlers (and everything they
//! hold), and [`GrpcServer::serve`] returns. The gRPC health service lives in
//! [`super::health`](mod@super::health).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

/// gRPC's own default message limit, bytes (4 MiB); Envoy's body chunks are far smaller.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// How long open streams may run on after shutdown starts (llm-d's `--drain-timeout`
/// default, llm-d-facts §1.11).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// After the drain timeout ends the last streams, how long connections get to close
/// before `serve` returns regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where the server's TLS identity comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP/2 (`--secure-serving=false`).
    Off,
    /// A certificate generated at start for `localhost`, `127.0.0.1` and `::1`, as
    /// GIE does when `--secure-serving` is on without `--cert-path`. Envoy accepts it
    /// when its cluster sets no validation context.
    SelfSigned,
    /// `tls.crt` and `tls.key` (PEM) in this directory (GIE's `--cert-path`).
    CertDir(PathBuf),
}

/// How a [`GrpcServer`] serves.
#[derive(Clone, Debug)]
pub struct GrpcServing {
    pub tls: Tls,
    /// Largest message a service decodes, bytes (applied by [`GrpcServing::ext_proc`]).
    pub max_recv: usize,
    /// Largest message a service encodes, bytes.
    pub max_send: usize,
    pub drain_timeout: Duration,
}

impl Default for GrpcServing {
    /// Plain text, gRPC's message limits, a 30 s drain.
    fn default() -> GrpcServing {
        GrpcServing {
            tls: Tls::Off,
            max_recv: DEFAULT_MAX_MESSAGE_BYTES,
            max_send: DEFAULT_MAX_MESSAGE_BYTES,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl GrpcServing {
    /// `processor` as a tonic service with this serving's message limits.
    pub fn ext_proc<T: ExternalProcessor>(&self, processor: T) -> ExternalProcessorServer<T> {
        ExternalProcessorServer::new(processor)
            .max_decoding_message_size(self.max_recv)
            .max_encoding_message_size(self.max_send)
    }
}

/// Why a gRPC server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the TLS file {path}: {source}")]
    ReadTls {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TLS certificate and key in {dir} are not usable: {message}")]
    BadTls { dir: PathBuf, message: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A TLS identity in PEM form.
struct Pem {
    cert: String,
    key: String,
}

/// Services ready to serve, with their TLS identity loaded (or made) and parsed: a
/// bad cert directory is an error here, before anything listens.
pub struct GrpcServer {
    builder: Server,
    drain_timeout: Duration,
    certificate: Option<String>,
    routes: Routes,
}

impl GrpcServer {
    /// Loads or generates the TLS identity `serving` asks for.
    pub fn new(serving: &GrpcServing, routes: Routes) -> Result<GrpcServer, ServeError> {
        let mut builder = Server::builder();
        let mut certificate = None;
        if serving.tls != Tls::Off {
            let pem = match &serving.tls {
                Tls::CertDir(dir) => read_cert_dir(dir)?,
                _ => self_signed()?,
            };
            let tls = ServerTlsConfig::new().identity(Identity::from_pem(&pem.cert, &pem.key));
            builder = builder.tls_config(tls).map_err(|e| match &serving.tls {
                Tls::CertDir(dir) => ServeError::BadTls {
                    dir: dir.clone(),
                    message: e.to_string(),
                },
                _ => ServeError::SelfSigned(e.to_string()),
            })?;
            certificate = Some(pem.cert);
        }
        Ok(GrpcServer {
            builder,
            drain_timeout: serving.drain_timeout,
            certificate,
            routes,
        })
    }

    /// The certificate served (PEM), for clients that want to trust exactly it.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate.as_deref()
    }

    /// Serves on `listener` until `shutdown` completes, then drains (module doc).
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send,
    {
        let (abort_tx, abort_rx) = watch::channel(false);
        let router = self
            .routes
            .into_axum_router()
            .layer(axum::middleware::map_response(move |resp: Response| {
                let abort = abort_rx.clone();
                async move { resp.map(|body| Body::new(DrainBody::new(body, abort))) }
            }));
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = started_tx.send(());
        };
        // Streamed body chunks must leave at once, not wait for Nagle's algorithm.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = self
            .builder
            .serve_with_incoming_shutdown(router, incoming, signal);
        let drain_timeout = self.drain_timeout;
        let drained = async move {
            if started_rx.await.is_err() {
                return std::future::pending().await;
            }
            tokio::time::sleep(drain_timeout).await;
            let _ = abort_tx.send(true);
            tokio::time::sleep(CLOSE_GRACE).await;
        };
        tokio::select! {
            result = server => Ok(result?),
            () = drained => Ok(()),
        }
    }
}

fn self_signed() -> Result<Pem, ServeError> {
    let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServeError::SelfSigned(e.to_string()))?;
    Ok(Pem {
        cert: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
    })
}

fn read_cert_dir(dir: &std::path::Path) -> Result<Pem, ServeError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| ServeError::ReadTls { path, source })
    };
    Ok(Pem {
        cert: read("tls.crt")?,
        key: read("tls.key")?,
    })
}

/// A response body that ends with gRPC `UNAVAILABLE` trailers once the drain timeout
/// has passed, so no stream outlives the server.
struct DrainBody {
    inner: Body,
    abort: Pin<Box<dyn Future<Output = ()> + Send>>,
    state: DrainState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DrainState {
    Open,
    /// The inner body sent its trailers: its end can no longer be replaced.
    InnerTrailers,
    /// Our `UNAVAILABLE` trailers went out: the body is over.
    Aborted,
}

impl DrainBody {
    fn new(inner: Body, mut abort: watch::Receiver<bool>) -> DrainBody {
        DrainBody {
            inner,
            abort: Box::pin(async move {
                // A dropped sender means the server is gone without aborting: never fire.
                if abort.wait_for(|abort| *abort).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }),
            state: DrainState::Open,
        }
    }
}

impl http_body::Body for DrainBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match this.state {
            DrainState::Aborted => return Poll::Ready(None),
            DrainState::InnerTrailers => return Pin::new(&mut this.inner).poll_frame(cx),
            DrainState::Open => {}
        }
        if this.abort.as_mut().poll(cx).is_ready() {
            this.state = DrainState::Aborted;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("14"));
            trailers.insert(
                "grpc-message",
                HeaderValue::from_static("server shutting down"),
            );
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame
            && f.is_trailers()
        {
            this.state = DrainState::InnerTrailers;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.state == DrainState::Aborted || self.inner.is_end_stream()
    }
}

//! `igw bbr run`: the body-based router's flags and wiring, its ext_proc, gRPC health
//! and metrics servers on the caller's tokio runtime.
//!
//! Every configuration error (the base-model map, TLS files, ports) is returned by
//! [`start`] before anything is served. Tests start it on port 0 exactly as the binary
//! does and read the bound addresses back from [`RunningBbr`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

use super::base_model::{BaseModelError, BaseModels};
use super::metrics::BbrMetrics;
use super::service::BbrProcessor;
use super::stream::BbrShared;
use crate::epp::duration::parse_go_duration;
use crate::epp::extproc::{self, GrpcServer, GrpcServing, HealthNames, HealthReporter, Tls};

/// Largest request body BBR gathers by default, bytes (the picker's gateway cap).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// `igw bbr run` flags (GIE's BBR names and defaults, gie-facts §7).
#[derive(clap::Args, Clone, Debug)]
pub struct BbrOptions {
    /// The ext_proc gRPC port.
    #[arg(long, default_value_t = 9004)]
    pub grpc_port: u16,
    /// The gRPC health port (plain text).
    #[arg(long, default_value_t = 9005)]
    pub grpc_health_port: u16,
    /// Prometheus metrics at `/metrics`.
    #[arg(long, default_value_t = 9090)]
    pub metrics_port: u16,
    /// Serve ext_proc over TLS: `--cert-path`'s files, else a self-signed certificate.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub secure_serving: bool,
    /// A directory holding `tls.crt` and `tls.key` (PEM).
    #[arg(long, value_name = "DIR")]
    pub cert_path: Option<PathBuf>,
    /// YAML mapping adapters to base models, for `X-Gateway-Base-Model-Name`: a plain
    /// `adapter: base` map or GIE's ConfigMaps (`data.baseModel`, `data.adapters`).
    #[arg(long, value_name = "FILE")]
    pub base_model_map: Option<PathBuf>,
    /// Largest request body read, bytes; a longer one is answered 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// How long open streams may finish after shutdown starts (Go duration).
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    pub drain_timeout: Duration,
}

impl BbrOptions {
    /// Plain-text BBR on free loopback ports, as tests want.
    pub fn local() -> BbrOptions {
        BbrOptions {
            grpc_port: 0,
            grpc_health_port: 0,
            metrics_port: 0,
            secure_serving: false,
            cert_path: None,
            base_model_map: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            host: "127.0.0.1".into(),
            drain_timeout: Duration::from_secs(5),
        }
    }

    fn tls(&self) -> Tls {
        match (&self.cert_path, self.secure_serving) {
            (_, false) => Tls::Off,
            (Some(dir), true) => Tls::CertDir(dir.clone()),
            (None, true) => Tls::SelfSigned,
        }
    }
}

/// Why BBR could not start.
#[derive(Debug, thiserror::Error)]
pub enum BbrError {
    #[error(transparent)]
    BaseModels(#[from] BaseModelError),
    #[error(transparent)]
    Serve(#[from] extproc::ServeError),
    #[error("--{a} and --{b} are both {port}: the three ports must differ")]
    SamePort {
        a: &'static str,
        b: &'static str,
        port: u16,
    },
    #[error("cannot listen on {host}:{port}: {source}")]
    Bind {
        host: String,
        port: u16,
        source: std::io::Error,
    },
}

/// A running body-based router.
pub struct RunningBbr {
    pub grpc_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The ext_proc certificate (PEM) when serving TLS.
    pub certificate_pem: Option<String>,
    pub health: HealthReporter,
    pub metrics: Arc<BbrMetrics>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningBbr {
    /// Stops accepting, lets open streams drain (up to `--drain-timeout`), and waits
    /// for every server to end.
    pub async fn shutdown(self) {
        self.health.set_ready(false).await;
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Loads the map, binds the three ports and starts serving; ready once it returns.
pub async fn start(opts: &BbrOptions) -> Result<RunningBbr, BbrError> {
    let ports = [
        ("grpc-port", opts.grpc_port),
        ("grpc-health-port", opts.grpc_health_port),
        ("metrics-port", opts.metrics_port),
    ];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb && *pa != 0 {
                return Err(BbrError::SamePort { a, b, port: *pa });
            }
        }
    }
    let base_models = match &opts.base_model_map {
        Some(path) => BaseModels::load(path)?,
        None => BaseModels::default(),
    };
    let metrics = Arc::new(BbrMetrics::new());
    let shared = Arc::new(BbrShared {
        base_models,
        metrics: metrics.clone(),
        max_body_bytes: opts.max_body_bytes,
    });
    let serving = GrpcServing {
        tls: opts.tls(),
        drain_timeout: opts.drain_timeout,
        ..GrpcServing::default()
    };
    let grpc = GrpcServer::new(
        &serving,
        Routes::new(serving.ext_proc(BbrProcessor::new(shared))),
    )?;
    let certificate_pem = grpc.certificate_pem().map(str::to_string);
    let (health, health_service) = extproc::health(HealthNames::gie()).await;

    let bind = |port: u16| {
        let host = opts.host.clone();
        async move {
            TcpListener::bind((host.as_str(), port))
                .await
                .map_err(|source| BbrError::Bind { host, port, source })
        }
    };
    let grpc_listener = bind(opts.grpc_port).await?;
    let health_listener = bind(opts.grpc_health_port).await?;
    let metrics_listener = bind(opts.metrics_port).await?;
    let local = |l: &TcpListener, port: u16| {
        l.local_addr().map_err(|source| BbrError::Bind {
            host: opts.host.clone(),
            port,
            source,
        })
    };
    let grpc_addr = local(&grpc_listener, opts.grpc_port)?;
    let health_addr = local(&health_listener, opts.grpc_health_port)?;
    let metrics_addr = local(&metrics_listener, opts.metrics_port)?;

    let (shutdown, signal) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let metrics_app = axum::Router::new().route(
        "/metrics",
        axum::routing::get({
            let metrics = metrics.clone();
            move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
                    .into_response()
            }
        }),
    );
    let tasks = vec![
        tokio::spawn({
            let stop = stopped(signal.clone());
            async move {
                if let Err(e) = grpc.serve(grpc_listener, stop).await {
                    tracing::error!(error = %e, "ext_proc server failed");
                }
            }
        }),
        tokio::spawn({
            let stop = stopped(signal.clone());
            async move {
                if let Err(e) = extproc::serve_health(health_listener, health_service, stop).await {
                    tracing::error!(error = %e, "gRPC health server failed");
                }
            }
        }),
        tokio::spawn({
            let stop = stopped(signal);
            async move {
                if let Err(e) = axum::serve(metrics_listener, metrics_app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "metrics server failed");
                }
            }
        }),
    ];
    // Nothing to sync: BBR can route as soon as it listens.
    health.set_ready(true).await;
    Ok(RunningBbr {
        grpc_addr,
        health_addr,
        metrics_addr,
        certificate_pem,
        health,
        metrics,
        shutdown,
        tasks,
    })
}

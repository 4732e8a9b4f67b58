//! `igw epp run`: start the picker as a standalone HTTP gateway, with its scrape loop,
//! Prometheus metrics and admin API.
//!
//! Wiring only: the pool comes from a pool file or `--endpoints`, the scheduler from
//! an `EndpointPickerConfig` (GIE's default when none is given), and everything runs
//! on the caller's tokio runtime until the shutdown future completes. Tests start it
//! on port 0 through [`start`] exactly as the binary does.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod options;
mod tasks;

pub use options::EppOptions;
pub use tasks::Fault;
use tasks::Tasks;

use super::admin;
use super::clock::TokioClock;
use super::config::{LoadedConfig, objectives::Objectives};
use super::discovery::Reloads;
use super::envoy::{PickerProcessor, Shared};
use super::extproc::{self, GrpcServer, HealthNames, HealthReporter};
use super::lifecycle::RequestIds;
use super::pool::{Pool, PoolParts};
use super::proxy;

/// A running picker.
pub struct RunningEpp {
    /// The standalone gateway, unless `--no-proxy`.
    pub proxy_addr: Option<SocketAddr>,
    /// Envoy's ext_proc server.
    pub grpc_addr: SocketAddr,
    /// The gRPC health server.
    pub grpc_health_addr: SocketAddr,
    /// The ext_proc server's certificate (PEM) when it serves TLS.
    pub grpc_certificate_pem: Option<String>,
    pub metrics_addr: SocketAddr,
    pub pool: Arc<Pool>,
    /// What an endpoints-file source has reloaded and refused; `None` for a fixed pool.
    pub discovery_reloads: Option<watch::Receiver<Reloads>>,
    health: HealthReporter,
    shutdown: watch::Sender<bool>,
    tasks: Tasks,
}

impl RunningEpp {
    /// Resolves when a background task has died, with why; never while all is well.
    pub async fn failed(&self) -> String {
        let mut fault = self.tasks.fault();
        match fault.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops: readiness goes NOT_SERVING, new connections are refused, open ext_proc
    /// streams get up to `--drain-timeout` to finish, and every task is awaited.
    pub async fn shutdown(self) {
        self.health.set_ready(false).await;
        self.tasks.stopping();
        let _ = self.shutdown.send(true);
        self.tasks.join().await;
    }
}

/// The scheduling profiles with their plugins and weights, in one line:
/// `default: queue-scorer×2, kv-cache-utilization-scorer×2, max-score-picker`.
fn describe_profiles(config: &LoadedConfig) -> String {
    config
        .spec
        .scheduling_profiles
        .iter()
        .map(|p| {
            let plugins = p
                .plugins
                .iter()
                .map(|r| match r.weight {
                    Some(w) => format!("{}×{w}", r.plugin_ref),
                    None => r.plugin_ref.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("{}: {plugins}", p.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Loads everything the options name, binds both ports and starts serving. Every
/// configuration error is returned before anything listens.
pub async fn start(opts: &EppOptions) -> anyhow::Result<RunningEpp> {
    let config = opts.config()?;
    start_with_config(opts, config).await
}

/// [`start`] with an already loaded EndpointPickerConfig in place of the options'
/// `config`/`preset` (the benchmark builds its baselines' configs in memory).
pub async fn start_with_config(
    opts: &EppOptions,
    config: LoadedConfig,
) -> anyhow::Result<RunningEpp> {
    opts.validate().map_err(anyhow::Error::msg)?;
    let (pool_name, discovery) = opts.discovery(&config).await?;
    for note in &config.notes {
        tracing::info!(config = %config.origin, "{note}");
    }
    tracing::debug!(
        config = %config.origin,
        plugins = config.spec.plugins.len(),
        gates = ?config.feature_gates,
        "loaded; GIE's defaults applied"
    );
    tracing::info!(
        config = %config.origin,
        pool = %format!("{}/{}", opts.pool_namespace, pool_name),
        endpoints = %discovery.describe(),
        profiles = %describe_profiles(&config),
        parser = ?config.parser,
        "active configuration"
    );
    let objectives = match &opts.objectives {
        Some(path) => Objectives::load(path)?,
        None => Objectives::default(),
    };
    let pool = Arc::new(Pool::new(PoolParts {
        name: pool_name,
        endpoints: discovery.initial(),
        config,
        objectives,
        refresh_interval: opts.refresh_metrics_interval,
        staleness_threshold: opts.metrics_staleness_threshold,
        clock: Arc::new(TokioClock::new()),
        seed: opts.seed,
        outlier: opts.outlier_policy(),
    })?);

    let bind = |port: u16| {
        let host = opts.host.clone();
        async move {
            TcpListener::bind((host.as_str(), port))
                .await
                .with_context(|| format!("cannot listen on {host}:{port}"))
        }
    };
    let grpc_server = {
        let processor = PickerProcessor::new(Shared {
            pool: pool.clone(),
            ids: RequestIds::default(),
            max_body_bytes: opts.max_body_bytes,
            ignore_subset: opts.disable_endpoint_subset_filter,
        });
        let serving = opts.grpc_serving();
        (serving, processor)
    };
    let (health, health_service) = extproc::health(HealthNames::epp()).await;
    let mut routes = tonic::service::Routes::new(grpc_server.0.ext_proc(grpc_server.1));
    // Envoy's reference config health-checks the ext_proc cluster on its own port.
    routes = health.service().add_to(routes);
    let grpc = GrpcServer::new(&grpc_server.0, routes)
        .with_context(|| "--secure-serving / --cert-path")?;
    let grpc_certificate_pem = grpc.certificate_pem().map(str::to_string);
    let grpc_listener = bind(opts.grpc_port).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let health_listener = bind(opts.grpc_health_port).await?;
    let grpc_health_addr = health_listener.local_addr()?;
    let proxy_listener = if opts.no_proxy {
        None
    } else {
        let l = bind(opts.proxy_port).await?;
        let addr = l.local_addr()?;
        Some((l, addr))
    };
    // Both HTTP ports under the same limits (TCP_NODELAY on each connection too).
    let limits = opts.limits.limits()?;
    let http_server = || {
        crate::serve::Server::new(limits.clone()).map(|s| {
            s.with_rejection(|e| proxy::error_response(&crate::epp::error::EppError::from_body(e)))
        })
    };
    let proxy_addr = proxy_listener.as_ref().map(|(_, a)| *a);
    let metrics_listener = bind(opts.metrics_port).await?;
    let metrics_addr = metrics_listener.local_addr()?;

    let (shutdown, signal) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let scraper = pool.scraper();
    let mut rounds = scraper.subscribe_rounds();
    let mut tasks = Tasks::default();
    let admin = admin::app(pool.clone(), tasks.fault());
    tasks.spawn("the scrape loop", scraper.run(stopped(signal.clone())));
    let discovery_reloads = discovery.reloads();
    tasks.spawn(
        "endpoint discovery",
        discovery.run(pool.clone(), Box::pin(stopped(signal.clone()))),
    );
    if let Some((listener, _)) = proxy_listener {
        let gateway = proxy::app(pool.clone(), opts.gateway_config());
        let stop = stopped(signal.clone());
        let server = http_server()?;
        tasks.spawn("the gateway server", async move {
            if let Err(e) = server.serve(listener, gateway, stop).await {
                tracing::error!(error = %e, "gateway server failed");
            }
        });
    }
    tasks.spawn("the ext_proc server", {
        let stop = stopped(signal.clone());
        async move {
            if let Err(e) = grpc.serve(grpc_listener, stop).await {
                tracing::error!(error = %e, "ext_proc server failed");
            }
        }
    });
    tasks.spawn("the gRPC health server", {
        let stop = stopped(signal.clone());
        async move {
            if let Err(e) = extproc::serve_health(health_listener, health_service, stop).await {
                tracing::error!(error = %e, "gRPC health server failed");
            }
        }
    });
    tasks.spawn("the metrics server", {
        let stop = stopped(signal.clone());
        let server = http_server()?;
        async move {
            if let Err(e) = server.serve(metrics_listener, admin, stop).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        }
    });
    // Readiness: SERVING once the first scrape round has told the pool which of its
    // endpoints answer (GIE: once the datastore has synced), NOT_SERVING for good when
    // a task dies.
    tasks.spawn("the readiness watch", {
        let health = health.clone();
        let mut fault = tasks.fault();
        async move {
            let first_round = async {
                let _ = rounds.wait_for(|n| *n >= 1).await;
            };
            tokio::select! {
                () = stopped(signal.clone()) => return,
                () = first_round => health.set_ready(true).await,
            }
            let died = async {
                let _ = fault.wait_for(Option::is_some).await;
            };
            tokio::select! {
                () = stopped(signal.clone()) => {}
                () = died => {
                    health.set_ready(false).await;
                    health.set_live(false).await;
                    // Stays until shutdown: a fault is not this task ending.
                    stopped(signal).await;
                }
            }
        }
    });
    Ok(RunningEpp {
        proxy_addr,
        grpc_addr,
        grpc_health_addr,
        grpc_certificate_pem,
        metrics_addr,
        pool,
        discovery_reloads,
        health,
        shutdown,
        tasks,
    })
}

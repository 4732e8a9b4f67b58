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
use super::pool::{Pool, PoolParts};
use super::proxy;

/// A running picker.
pub struct RunningEpp {
    pub proxy_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub pool: Arc<Pool>,
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

    /// Stops serving and scraping, and waits for the tasks to end.
    pub async fn shutdown(self) {
        self.tasks.stopping();
        let _ = self.shutdown.send(true);
        self.tasks.join().await;
    }
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
    let static_pool = opts.pool()?;
    for note in &config.notes {
        tracing::info!(config = %config.origin, "{note}");
    }
    let objectives = match &opts.objectives {
        Some(path) => Objectives::load(path)?,
        None => Objectives::default(),
    };
    let pool = Arc::new(Pool::new(PoolParts {
        name: static_pool.name,
        endpoints: static_pool.endpoints,
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
    let proxy_listener = bind(opts.proxy_port).await?;
    let proxy_addr = proxy_listener.local_addr()?;
    // Streamed tokens are small writes that must leave at once: without TCP_NODELAY,
    // Nagle's algorithm and the client's delayed ACKs hold each one back ~40 ms.
    let proxy_listener = axum::serve::ListenerExt::tap_io(proxy_listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let metrics_listener = bind(opts.metrics_port).await?;
    let metrics_addr = metrics_listener.local_addr()?;

    let (shutdown, signal) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let scraper = pool.scraper();
    let gateway = proxy::app(pool.clone(), opts.gateway_config());
    let mut tasks = Tasks::default();
    let admin = admin::app(pool.clone(), tasks.fault());
    tasks.spawn("the scrape loop", scraper.run(stopped(signal.clone())));
    tasks.spawn("the gateway server", {
        let stop = stopped(signal.clone());
        async move {
            if let Err(e) = axum::serve(proxy_listener, gateway)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "gateway server failed");
            }
        }
    });
    tasks.spawn("the metrics server", {
        let stop = stopped(signal);
        async move {
            if let Err(e) = axum::serve(metrics_listener, admin)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "metrics server failed");
            }
        }
    });
    Ok(RunningEpp {
        proxy_addr,
        metrics_addr,
        pool,
        shutdown,
        tasks,
    })
}

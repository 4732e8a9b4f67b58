//! `igw epp run`: start the picker as a standalone HTTP gateway, with its scrape loop,
//! Prometheus metrics and admin API.
//!
//! Wiring only: the pool comes from a pool file or `--endpoints`, the scheduler from
//! an `EndpointPickerConfig` (GIE's default when none is given), and everything runs
//! on the caller's tokio runtime until the shutdown future completes. Tests start it
//! on port 0 through [`start`] exactly as the binary does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admin;
use super::clock::TokioClock;
use super::config::{self, LoadedConfig, objectives::Objectives};
use super::datastore::DEFAULT_STALENESS_THRESHOLD;
use super::discovery::StaticPool;
use super::duration::parse_go_duration;
use super::pool::{Pool, PoolParts};
use super::proxy::{self, DEFAULT_MAX_BODY_BYTES, GatewayConfig};

/// `igw epp run` flags (names follow GIE's EPP where it has them, gie-facts §8.1).
#[derive(clap::Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("pool").required(true).args(["pool_file", "endpoints"])))]
pub struct EppOptions {
    /// The pool: an InferencePool v1 YAML with `spec.endpoints` listing addresses.
    #[arg(long, value_name = "FILE")]
    pub pool_file: Option<PathBuf>,
    /// The pool, quick form: comma-separated `ip:port` model-server addresses.
    #[arg(long, value_name = "LIST")]
    pub endpoints: Option<String>,
    /// Pool name for `--endpoints` (labels `inference_pool_*` metrics).
    #[arg(long, default_value = "igw-pool")]
    pub pool_name: String,
    /// An EndpointPickerConfig YAML (GIE's format). Without it: GIE's default profile.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// A built-in configuration instead of `--config`: `gie-default` or `igw-default`.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Objectives (name → priority) for the `x-gateway-inference-objective` header.
    #[arg(long, value_name = "FILE")]
    pub objectives: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// The standalone gateway's port (OpenAI API in, forwarded to the picked endpoint).
    #[arg(long, default_value_t = 8080)]
    pub proxy_port: u16,
    /// Prometheus metrics, health, readiness and the admin API.
    #[arg(long, default_value_t = 9090)]
    pub metrics_port: u16,
    /// How often each endpoint's `/metrics` is scraped (Go duration).
    #[arg(long, default_value = "50ms", value_parser = parse_go_duration)]
    pub refresh_metrics_interval: Duration,
    /// Metrics older than this make an endpoint unhealthy (Go duration).
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    pub metrics_staleness_threshold: Duration,
    /// How long an endpoint may take to start answering (a non-streaming completion
    /// answers only when done), Go duration; then the client gets 503.
    #[arg(long, default_value = "10m", value_parser = parse_go_duration)]
    pub response_timeout: Duration,
    /// Largest request body accepted, bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Seed of the picker's random tie-breaks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl EppOptions {
    /// Options for a pool of `endpoints` on free loopback ports, as tests want.
    pub fn local(endpoints: &[SocketAddr]) -> EppOptions {
        EppOptions {
            pool_file: None,
            endpoints: Some(
                endpoints
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            pool_name: "igw-pool".into(),
            config: None,
            preset: None,
            objectives: None,
            host: "127.0.0.1".into(),
            proxy_port: 0,
            metrics_port: 0,
            refresh_metrics_interval: Duration::from_millis(50),
            metrics_staleness_threshold: DEFAULT_STALENESS_THRESHOLD,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            response_timeout: Duration::from_secs(600),
            seed: 0,
        }
    }

    fn pool(&self) -> anyhow::Result<StaticPool> {
        Ok(match (&self.pool_file, &self.endpoints) {
            (Some(path), _) => StaticPool::from_file(path)?,
            (None, Some(list)) => StaticPool::from_endpoints_flag(&self.pool_name, list)?,
            (None, None) => anyhow::bail!("give the pool with --pool-file or --endpoints"),
        })
    }

    fn config(&self) -> anyhow::Result<LoadedConfig> {
        Ok(match (&self.config, self.preset.as_deref()) {
            (Some(path), _) => config::load(path)?,
            (None, None | Some("gie-default")) => config::gie_default(),
            (None, Some("igw-default")) => config::igw_default(),
            (None, Some(other)) => {
                anyhow::bail!("--preset: unknown preset `{other}` (gie-default, igw-default)")
            }
        })
    }
}

/// A running picker.
pub struct RunningEpp {
    pub proxy_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub pool: Arc<Pool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningEpp {
    /// Stops serving and scraping, and waits for the tasks to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
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
    let gateway = proxy::app(
        pool.clone(),
        GatewayConfig {
            max_body_bytes: opts.max_body_bytes,
            response_timeout: opts.response_timeout,
            ..GatewayConfig::default()
        },
    );
    let admin = admin::app(pool.clone());
    let tasks = vec![
        tokio::spawn(scraper.run(stopped(signal.clone()))),
        tokio::spawn({
            let stop = stopped(signal.clone());
            async move {
                if let Err(e) = axum::serve(proxy_listener, gateway)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "gateway server failed");
                }
            }
        }),
        tokio::spawn({
            let stop = stopped(signal);
            async move {
                if let Err(e) = axum::serve(metrics_listener, admin)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "metrics server failed");
                }
            }
        }),
    ];
    Ok(RunningEpp {
        proxy_addr,
        metrics_addr,
        pool,
        shutdown,
        tasks,
    })
}

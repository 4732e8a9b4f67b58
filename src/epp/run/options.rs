//! `igw epp run`'s flags, their defaults (GIE's names and values where GIE has the
//! flag, gie-facts §8.1), and the checks that refuse a bad value at start with one
//! line naming the flag, so no background task can die of it later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::epp::config::{self, LoadedConfig};
use crate::epp::datastore::DEFAULT_STALENESS_THRESHOLD;
use crate::epp::discovery::kubernetes::KubernetesPool;
use crate::epp::discovery::{Discovery, Fixed, StaticPool, WatchedFile};
use crate::epp::duration::parse_go_duration;
use crate::epp::extproc::{DEFAULT_MAX_MESSAGE_BYTES, GrpcServing, Tls};
use crate::epp::lifecycle::outlier::OutlierPolicy;
use crate::epp::proxy::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_RETRIES, DEFAULT_STALL_TIMEOUT, ForwardPaths, GatewayConfig,
};
use crate::serve::ServeLimitOptions;

/// `igw epp run` flags (names follow GIE's EPP where it has them, gie-facts §8.1).
#[derive(clap::Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("pool").args(["pool_file", "endpoints", "endpoints_file"])))]
pub struct EppOptions {
    /// The pool: an InferencePool v1 YAML with `spec.endpoints` listing addresses.
    #[arg(long, value_name = "FILE")]
    pub pool_file: Option<PathBuf>,
    /// The pool, quick form: comma-separated `ip:port` model-server addresses.
    #[arg(long, value_name = "LIST")]
    pub endpoints: Option<String>,
    /// The pool, as llm-d Router's endpoints file lists it (YAML or JSON, `endpoints:
    /// [{name, namespace, address, port, labels}]`), re-read when it changes. The
    /// config's `file-discovery` plugin gives the same without this flag.
    #[arg(long, value_name = "FILE")]
    pub endpoints_file: Option<PathBuf>,
    /// Pool name for `--endpoints` and endpoints files (labels `inference_pool_*`
    /// metrics).
    #[arg(long, default_value = "igw-pool")]
    pub pool_name: String,
    /// The pool's namespace (GIE's flag; `NAMESPACE` in the environment, else
    /// `default`). Without Kubernetes it only names the pool in logs.
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    pub pool_namespace: String,
    /// The kubeconfig to reach the Kubernetes API with (controller-runtime's flag);
    /// without it, the in-cluster config, else `KUBECONFIG` or `~/.kube/config`.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// GIE's log verbosity: 2 (the default) info, 3 and 4 debug, 5 trace. `RUST_LOG`
    /// wins when set.
    #[arg(long = "v", value_name = "LEVEL", default_value_t = 2)]
    pub verbosity: u8,
    /// GIE's log encoding: `console` (the default) or `json` (one JSON object a line).
    #[arg(long, value_name = "ENCODER", default_value = "console", value_parser = ["console", "json"])]
    pub zap_encoder: String,
    /// An EndpointPickerConfig YAML (GIE's or llm-d Router's format; GIE's flag name
    /// `--config-file` works too). Without it: GIE's default profile.
    #[arg(long, visible_alias = "config-file", value_name = "FILE", conflicts_with_all = ["preset", "config_text"])]
    pub config: Option<PathBuf>,
    /// The EndpointPickerConfig inline, as GIE's `--config-text`.
    #[arg(long, value_name = "YAML", conflicts_with = "preset")]
    pub config_text: Option<String>,
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
    /// Serve no standalone gateway: only Envoy's ext_proc (a picker behind Envoy).
    #[arg(long)]
    pub no_proxy: bool,
    /// Envoy's external-processing (ext_proc) gRPC port.
    #[arg(long, default_value_t = 9002)]
    pub grpc_port: u16,
    /// The gRPC health port (plain text): `liveness`, and `readiness`, `""`,
    /// `inference-extension` and the ext_proc service, serving once the pool's
    /// endpoints are known. The ext_proc port answers health checks too.
    #[arg(long, default_value_t = 9003)]
    pub grpc_health_port: u16,
    /// TLS on the ext_proc port, as GIE serves it (`--secure-serving=false` for plain
    /// HTTP/2): from `--cert-path`, else a self-signed certificate made at start.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub secure_serving: bool,
    /// A directory holding `tls.crt` and `tls.key` (PEM) for the ext_proc port.
    #[arg(long, value_name = "DIR")]
    pub cert_path: Option<PathBuf>,
    /// Largest gRPC message the ext_proc server accepts (bytes, or e.g. `25MiB`).
    #[arg(long, default_value = "4MiB", value_parser = parse_byte_size)]
    pub grpc_max_recv_msg_size: usize,
    /// Largest gRPC message the ext_proc server sends (bytes, or e.g. `25MiB`).
    #[arg(long, default_value = "4MiB", value_parser = parse_byte_size)]
    pub grpc_max_send_msg_size: usize,
    /// After SIGTERM or Ctrl-C: how long open ext_proc streams may finish while new
    /// ones are refused (Go duration).
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    pub drain_timeout: Duration,
    /// Ignore the data plane's subset hint (`envoy.lb.subset_hint`).
    #[arg(long)]
    pub disable_endpoint_subset_filter: bool,
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
    /// How long a response body may send nothing, once its headers came, before the
    /// gateway ends it (an SSE stream with vLLM's error event) and counts it against
    /// the endpoint, Go duration.
    #[arg(long, default_value = "2m", value_parser = parse_go_duration)]
    pub response_stall_timeout: Duration,
    /// Re-sends of a request whose endpoint failed before any response (to the next
    /// picked endpoint, then to a re-pick without the failed ones); 0 turns them off.
    #[arg(long, default_value_t = DEFAULT_MAX_RETRIES)]
    pub max_retries: u32,
    /// The request paths the gateway forwards, comma-separated, or `*` for all. By
    /// default the inference APIs (completions, chat, embeddings, responses, …); model
    /// servers' admin routes (adapter loading, `/metrics`) answer 404.
    #[arg(long, value_name = "PATHS", value_parser = ForwardPaths::parse)]
    pub forward_paths: Option<ForwardPaths>,
    /// Failures in a row (5xx, or no response) that take an endpoint out of rotation;
    /// 0 turns outlier detection off.
    #[arg(long, default_value_t = OutlierPolicy::default().consecutive_failures)]
    pub outlier_consecutive_failures: u32,
    /// The first ejection's length; each further one of the same endpoint is longer
    /// by as much (Go duration).
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    pub outlier_base_ejection_time: Duration,
    /// The longest ejection (Go duration).
    #[arg(long, default_value = "5m", value_parser = parse_go_duration)]
    pub outlier_max_ejection_time: Duration,
    /// The largest share of the pool ejected at once, percent (at least one endpoint).
    #[arg(long, default_value_t = OutlierPolicy::default().max_ejected_percent)]
    pub outlier_max_ejection_percent: u8,
    /// Largest request body accepted, bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Slow and stalled clients, and how many connections and buffered body bytes the
    /// gateway and the metrics port hold at once.
    #[command(flatten)]
    pub limits: ServeLimitOptions,
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
            endpoints_file: None,
            pool_name: "igw-pool".into(),
            pool_namespace: "default".into(),
            kubeconfig: None,
            verbosity: 2,
            zap_encoder: "console".into(),
            config: None,
            config_text: None,
            preset: None,
            objectives: None,
            host: "127.0.0.1".into(),
            proxy_port: 0,
            no_proxy: false,
            grpc_port: 0,
            grpc_health_port: 0,
            secure_serving: false,
            cert_path: None,
            grpc_max_recv_msg_size: DEFAULT_MAX_MESSAGE_BYTES,
            grpc_max_send_msg_size: DEFAULT_MAX_MESSAGE_BYTES,
            drain_timeout: Duration::from_secs(1),
            disable_endpoint_subset_filter: false,
            metrics_port: 0,
            refresh_metrics_interval: Duration::from_millis(50),
            metrics_staleness_threshold: DEFAULT_STALENESS_THRESHOLD,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            limits: ServeLimitOptions::default(),
            response_timeout: Duration::from_secs(600),
            response_stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            forward_paths: None,
            outlier_consecutive_failures: OutlierPolicy::default().consecutive_failures,
            outlier_base_ejection_time: OutlierPolicy::default().base_ejection,
            outlier_max_ejection_time: OutlierPolicy::default().max_ejection,
            outlier_max_ejection_percent: OutlierPolicy::default().max_ejected_percent,
            seed: 0,
        }
    }

    /// Refuses values no background task could live with: one line naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--refresh-metrics-interval", self.refresh_metrics_interval),
            (
                "--metrics-staleness-threshold",
                self.metrics_staleness_threshold,
            ),
            ("--response-timeout", self.response_timeout),
            ("--response-stall-timeout", self.response_stall_timeout),
            (
                "--outlier-base-ejection-time",
                self.outlier_base_ejection_time,
            ),
            (
                "--outlier-max-ejection-time",
                self.outlier_max_ejection_time,
            ),
        ];
        for (flag, value) in positive {
            if value.is_zero() {
                return Err(format!("{flag}: must be longer than 0s"));
            }
        }
        if self.metrics_staleness_threshold <= self.refresh_metrics_interval {
            return Err(format!(
                "--metrics-staleness-threshold: {:?} must be longer than --refresh-metrics-interval ({:?}), or every endpoint goes stale between scrapes",
                self.metrics_staleness_threshold, self.refresh_metrics_interval
            ));
        }
        let mut ports = vec![
            ("--grpc-port", self.grpc_port),
            ("--grpc-health-port", self.grpc_health_port),
            ("--metrics-port", self.metrics_port),
        ];
        if !self.no_proxy {
            ports.push(("--proxy-port", self.proxy_port));
        }
        let mut seen: Vec<(&str, u16)> = Vec::new();
        for (flag, port) in ports {
            if let Some((other, _)) = seen.iter().find(|(_, p)| *p == port && port != 0) {
                return Err(format!("{flag}: port {port} is also {other}'s"));
            }
            seen.push((flag, port));
        }
        if self.grpc_max_recv_msg_size < 64 << 10 || self.grpc_max_send_msg_size < 64 << 10 {
            return Err(
                "--grpc-max-recv-msg-size, --grpc-max-send-msg-size: at least 64KiB (Envoy's body chunks are up to 62,000 bytes)"
                    .into(),
            );
        }
        if self.max_body_bytes == 0 {
            return Err("--max-body-bytes: must be at least 1".into());
        }
        self.limits.limits().map_err(|e| e.to_string())?;
        if self.outlier_max_ejection_percent > 100 {
            return Err(format!(
                "--outlier-max-ejection-percent: {} is over 100",
                self.outlier_max_ejection_percent
            ));
        }
        Ok(())
    }

    /// The outlier-detection flags as a policy.
    pub fn outlier_policy(&self) -> OutlierPolicy {
        OutlierPolicy {
            consecutive_failures: self.outlier_consecutive_failures,
            base_ejection: self.outlier_base_ejection_time,
            max_ejection: self.outlier_max_ejection_time,
            max_ejected_percent: self.outlier_max_ejection_percent,
        }
    }

    /// The ext_proc server's TLS, message limits and drain.
    pub fn grpc_serving(&self) -> GrpcServing {
        GrpcServing {
            tls: match (&self.cert_path, self.secure_serving) {
                (_, false) => Tls::Off,
                (Some(dir), true) => Tls::CertDir(dir.clone()),
                (None, true) => Tls::SelfSigned,
            },
            max_recv: self.grpc_max_recv_msg_size,
            max_send: self.grpc_max_send_msg_size,
            drain_timeout: self.drain_timeout,
        }
    }

    /// The gateway's settings from the flags.
    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            max_body_bytes: self.max_body_bytes,
            response_timeout: self.response_timeout,
            stall_timeout: Some(self.response_stall_timeout),
            max_retries: self.max_retries,
            forward_paths: self.forward_paths.clone().unwrap_or_default(),
            ..GatewayConfig::default()
        }
    }

    /// The pool's name and where its endpoints come from: one of `--pool-file`,
    /// `--endpoints` and `--endpoints-file`, or the config's `file-discovery`.
    pub(super) async fn discovery(
        &self,
        config: &LoadedConfig,
    ) -> anyhow::Result<(String, Box<dyn Discovery>)> {
        let from_config = config.discovery.as_ref();
        let flag = [
            ("--pool-file", self.pool_file.is_some()),
            ("--endpoints", self.endpoints.is_some()),
            ("--endpoints-file", self.endpoints_file.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name));
        if let (Some(flag), Some(_)) = (flag, from_config) {
            anyhow::bail!(
                "{flag} and the file-discovery plugin of {} both give the pool's endpoints; keep one",
                config.origin
            );
        }
        let pool_name = self.pool_name.clone();
        Ok(
            match (&self.pool_file, &self.endpoints, &self.endpoints_file) {
                (Some(path), ..) => {
                    let pool = StaticPool::from_file(path)?;
                    let what = format!("pool file {}", path.display());
                    (
                        pool.name,
                        Box::new(Fixed {
                            what,
                            endpoints: pool.endpoints,
                        }),
                    )
                }
                (None, Some(list), _) => {
                    let pool = StaticPool::from_endpoints_flag(&self.pool_name, list)?;
                    let what = "--endpoints".to_string();
                    (
                        pool.name,
                        Box::new(Fixed {
                            what,
                            endpoints: pool.endpoints,
                        }),
                    )
                }
                (None, None, Some(path)) => {
                    (pool_name, Box::new(WatchedFile::open(path.clone(), true)?))
                }
                (None, None, None) => {
                    match from_config {
                        Some(d) => (
                            pool_name,
                            Box::new(WatchedFile::open(d.path.clone(), d.watch_file).map_err(
                                |e| anyhow::anyhow!("{}: file-discovery: {e}", config.origin),
                            )?),
                        ),
                        None => {
                            let pool = self.kubernetes_pool().await?;
                            (pool_name, Box::new(pool))
                        }
                    }
                }
            },
        )
    }

    /// The InferencePool `--pool-name` on the Kubernetes API (in-cluster config, or the
    /// kubeconfig), when no file gives the pool.
    async fn kubernetes_pool(&self) -> anyhow::Result<KubernetesPool> {
        let client = match &self.kubeconfig {
            Some(path) => {
                let config = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| anyhow::anyhow!("--kubeconfig {}: {e}", path.display()))?;
                let options = kube::config::KubeConfigOptions::default();
                let config = kube::Config::from_custom_kubeconfig(config, &options)
                    .await
                    .map_err(|e| anyhow::anyhow!("--kubeconfig {}: {e}", path.display()))?;
                kube::Client::try_from(config)
                    .map_err(|e| anyhow::anyhow!("--kubeconfig {}: {e}", path.display()))?
            }
            None => kube::Client::try_default().await.map_err(|e| {
                anyhow::anyhow!(
                    "give the pool with --pool-file, --endpoints or --endpoints-file, or a file-discovery plugin in the config; or run where a Kubernetes config is (in a cluster, or with a kubeconfig) to read InferencePool {}/{}: {e}",
                    self.pool_namespace,
                    self.pool_name
                )
            })?,
        };
        KubernetesPool::open(client, &self.pool_namespace, &self.pool_name).await
    }

    /// The log level `--v` asks for.
    pub fn log_level(&self) -> &'static str {
        match self.verbosity {
            0..=2 => "info",
            3 | 4 => "debug",
            _ => "trace",
        }
    }

    /// Whether `--zap-encoder json` asks for JSON logs.
    pub fn json_logs(&self) -> bool {
        self.zap_encoder == "json"
    }

    pub(super) fn config(&self) -> anyhow::Result<LoadedConfig> {
        if let Some(text) = &self.config_text {
            return Ok(config::from_yaml_str(text, "--config-text")?);
        }
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

/// Parses a size in bytes: a plain number, or one with a unit as Kubernetes and
/// llm-d's flags write them (`KiB`, `MiB`, `GiB`; `KB`, `MB`, `GB`; `K`, `M`, `G`).
pub fn parse_byte_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let err = || format!("invalid size {text:?} (expected e.g. 4194304, 4MiB, 25MiB)");
    let number: u64 = number.parse().map_err(|_| err())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "K" | "k" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        _ => return Err(err()),
    };
    number
        .checked_mul(scale)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_byte_size("25MiB"), Ok(25 << 20));
        assert_eq!(parse_byte_size("2M"), Ok(2_000_000));
        for bad in ["", "MiB", "4 parsecs", "-1", "99999999999999999999GiB"] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
    }
}

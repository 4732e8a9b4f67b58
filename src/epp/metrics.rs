//! The picker's own Prometheus metrics, with GIE's names and labels (gie-facts §8.2),
//! so dashboards built for GIE's EPP read igw unchanged.
//!
//! `inference_objective_*` per request (labels `model_name`, `target_model_name`),
//! `inference_pool_*` pool gauges refreshed from the datastore, and
//! `inference_extension_*` for the scheduler itself. igw's own additions are named
//! `igw_epp_*`: re-sends after a failure, responses that broke off, ejections.
//! Model-name label values are bounded by [`labels`]; the host passes bounded values. Recording is lock-free on the
//! hot path (prometheus-client families take a read lock once a label set exists).
//! Bucket bounds: the reference confirms only the request-duration range (5 ms to
//! 3600 s); the exact lists are GIE's `metrics.go` values as recalled.

pub mod exposition;
pub mod labels;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::request::TokenUsage;

const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0,
    1200.0, 1800.0, 2700.0, 3600.0,
];
const NTPOT_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6,
    0.8, 1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 12.0, 18.0, 24.0, 30.0, 36.0, 48.0, 60.0,
];
const SIZE_BUCKETS: &[f64] = &[
    64.0,
    128.0,
    256.0,
    512.0,
    1024.0,
    2048.0,
    4096.0,
    8192.0,
    16384.0,
    32768.0,
    65536.0,
    131072.0,
    262144.0,
    524288.0,
    1048576.0,
    2097152.0,
    4194304.0,
    8388608.0,
    16777216.0,
    33554432.0,
    67108864.0,
    134217728.0,
    268435456.0,
    536870912.0,
    1073741824.0,
];
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
    32768.0, 65536.0, 131072.0, 262144.0, 524288.0, 1048576.0,
];
const SCHEDULER_BUCKETS: &[f64] = &[
    0.000_01, 0.000_02, 0.000_05, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model_name: String,
    target_model_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model_name: String,
    target_model_name: String,
    priority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    model_name: String,
    target_model_name: String,
    error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelNameLabel {
    model_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabels {
    name: String,
    model_server_pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    name: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    commit: String,
    build_ref: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>(buckets: fn() -> Histogram) -> HistogramFamily<L> {
    Family::new_with_constructor(buckets)
}

/// Pool-level numbers refreshed from the datastore.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolStats {
    pub ready_endpoints: usize,
    pub average_kv_cache_utilization: f64,
    pub average_queue_size: f64,
    pub average_running_requests: f64,
    /// Per endpoint name: waiting queue size.
    pub queue_by_endpoint: Vec<(String, u64)>,
}

/// Every metric the picker exports.
pub struct EppMetrics {
    registry: Registry,
    pool_name: String,
    request_total: Family<RequestLabels, Counter>,
    request_error_total: Family<ErrorLabels, Counter>,
    request_duration: HistogramFamily<ModelLabels>,
    ntpot: HistogramFamily<ModelLabels>,
    request_sizes: HistogramFamily<ModelLabels>,
    response_sizes: HistogramFamily<ModelLabels>,
    input_tokens: HistogramFamily<ModelLabels>,
    output_tokens: HistogramFamily<ModelLabels>,
    cached_tokens: HistogramFamily<ModelLabels>,
    running_requests: Family<ModelNameLabel, Gauge>,
    pool_ready: Family<PoolLabel, Gauge>,
    pool_kv: Family<PoolLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pool_queue: Family<PoolLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pool_running: Family<PoolLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pool_pod_queue: Family<PodLabels, Gauge>,
    scheduler_e2e: Histogram,
    retries: Family<ReasonLabels, Counter>,
    broken: Family<ReasonLabels, Counter>,
    ejections: Family<PoolLabel, Counter>,
}

impl EppMetrics {
    pub fn new(pool_name: &str) -> EppMetrics {
        let mut registry = Registry::default();
        let m = EppMetrics {
            pool_name: pool_name.to_string(),
            request_total: Family::default(),
            request_error_total: Family::default(),
            request_duration: histograms(|| Histogram::new(DURATION_BUCKETS.iter().copied())),
            ntpot: histograms(|| Histogram::new(NTPOT_BUCKETS.iter().copied())),
            request_sizes: histograms(|| Histogram::new(SIZE_BUCKETS.iter().copied())),
            response_sizes: histograms(|| Histogram::new(SIZE_BUCKETS.iter().copied())),
            input_tokens: histograms(|| Histogram::new(TOKEN_BUCKETS.iter().copied())),
            output_tokens: histograms(|| Histogram::new(TOKEN_BUCKETS.iter().copied())),
            cached_tokens: histograms(|| Histogram::new(TOKEN_BUCKETS.iter().copied())),
            running_requests: Family::default(),
            pool_ready: Family::default(),
            pool_kv: Family::default(),
            pool_queue: Family::default(),
            pool_running: Family::default(),
            pool_pod_queue: Family::default(),
            scheduler_e2e: Histogram::new(SCHEDULER_BUCKETS.iter().copied()),
            retries: Family::default(),
            broken: Family::default(),
            ejections: Family::default(),
            registry: Registry::default(),
        };
        // Counters get `_total` appended by the encoder.
        registry.register(
            "inference_objective_request",
            "Counter of inference objective requests broken out for each model and target model",
            m.request_total.clone(),
        );
        registry.register("inference_objective_request_error", "Counter of inference objective requests errors broken out for each model and target model", m.request_error_total.clone());
        registry.register("inference_objective_request_duration_seconds", "Inference objective response latency distribution in seconds for each model and target model", m.request_duration.clone());
        registry.register("inference_objective_normalized_time_per_output_token_seconds", "Inference objective latency divided by number of output tokens in seconds for each model and target model", m.ntpot.clone());
        registry.register("inference_objective_request_sizes", "Inference objective requests size distribution in bytes for each model and target model", m.request_sizes.clone());
        registry.register("inference_objective_response_sizes", "Inference objective responses size distribution in bytes for each model and target model", m.response_sizes.clone());
        registry.register(
            "inference_objective_input_tokens",
            "Inference objective input token count distribution for requests in each model",
            m.input_tokens.clone(),
        );
        registry.register(
            "inference_objective_output_tokens",
            "Inference objective output token count distribution for requests in each model",
            m.output_tokens.clone(),
        );
        registry.register(
            "inference_objective_prompt_cached_tokens",
            "Inference objective prompt cached token count distribution for requests in each model",
            m.cached_tokens.clone(),
        );
        registry.register(
            "inference_objective_running_requests",
            "Inference objective number of running requests in each model",
            m.running_requests.clone(),
        );
        registry.register(
            "inference_pool_ready_pods",
            "The number of ready pods in the inference server pool",
            m.pool_ready.clone(),
        );
        registry.register(
            "inference_pool_average_kv_cache_utilization",
            "The average kv cache utilization for an inference server pool",
            m.pool_kv.clone(),
        );
        registry.register(
            "inference_pool_average_queue_size",
            "The average number of requests pending in the model server queue",
            m.pool_queue.clone(),
        );
        registry.register(
            "inference_pool_average_running_requests",
            "The average number of requests currently being processed by the model servers",
            m.pool_running.clone(),
        );
        registry.register("inference_pool_per_pod_queue_size", "The total number of requests pending in the model server queue for each underlying pod", m.pool_pod_queue.clone());
        registry.register(
            "inference_extension_scheduler_e2e_duration_seconds",
            "End-to-end scheduling latency distribution in seconds",
            m.scheduler_e2e.clone(),
        );
        registry.register(
            "igw_epp_request_retries",
            "Requests sent again after the endpoint tried failed before any response, by reason (connect: no connection; closed: the connection closed first)",
            m.retries.clone(),
        );
        registry.register(
            "igw_epp_responses_broken",
            "Responses that broke off after their headers, by reason (upstream: the model server's body failed; stall: no bytes within the stall timeout)",
            m.broken.clone(),
        );
        registry.register(
            "igw_epp_outlier_ejections",
            "Endpoints taken out of rotation because their requests kept failing",
            m.ejections.clone(),
        );
        // llm-d Router's canonical names (llm-d-facts §1.12): the same series again,
        // so dashboards of either generation read igw unchanged.
        registry.register(
            "llm_d_epp_request",
            "Requests received, by model, target model and priority",
            m.request_total.clone(),
        );
        registry.register(
            "llm_d_epp_request_error",
            "Requests that failed, by model, target model and error code",
            m.request_error_total.clone(),
        );
        registry.register(
            "llm_d_epp_request_duration_seconds",
            "Response latency, seconds",
            m.request_duration.clone(),
        );
        registry.register(
            "llm_d_epp_request_ntpot_seconds",
            "Latency divided by output tokens, seconds",
            m.ntpot.clone(),
        );
        registry.register(
            "llm_d_epp_request_size_bytes",
            "Request sizes, bytes",
            m.request_sizes.clone(),
        );
        registry.register(
            "llm_d_epp_response_size_bytes",
            "Response sizes, bytes",
            m.response_sizes.clone(),
        );
        registry.register(
            "llm_d_epp_request_input_tokens",
            "Input tokens per request",
            m.input_tokens.clone(),
        );
        registry.register(
            "llm_d_epp_request_output_tokens",
            "Output tokens per request",
            m.output_tokens.clone(),
        );
        registry.register(
            "llm_d_epp_request_cached_tokens",
            "Prompt tokens served from the prefix cache per request",
            m.cached_tokens.clone(),
        );
        registry.register(
            "llm_d_epp_request_running",
            "Requests running, by model",
            m.running_requests.clone(),
        );
        registry.register(
            "llm_d_epp_ready_endpoints",
            "Endpoints ready to take requests",
            m.pool_ready.clone(),
        );
        registry.register(
            "llm_d_epp_average_kv_cache_utilization",
            "Mean KV-cache use of the ready endpoints",
            m.pool_kv.clone(),
        );
        registry.register(
            "llm_d_epp_average_queue_size",
            "Mean waiting-queue length of the ready endpoints",
            m.pool_queue.clone(),
        );
        registry.register(
            "llm_d_epp_average_running_requests",
            "Mean running batch of the ready endpoints",
            m.pool_running.clone(),
        );
        registry.register(
            "llm_d_epp_per_endpoint_queue_size",
            "Waiting-queue length per endpoint",
            m.pool_pod_queue.clone(),
        );
        registry.register(
            "llm_d_epp_scheduler_e2e_duration_seconds",
            "Scheduling latency, seconds",
            m.scheduler_e2e.clone(),
        );
        let info: Family<InfoLabels, Gauge> = Family::default();
        info.get_or_create(&InfoLabels {
            commit: env!("CARGO_PKG_VERSION").to_string(),
            build_ref: format!("igw-{}", env!("CARGO_PKG_VERSION")),
        })
        .set(1);
        registry.register(
            "inference_extension_info",
            "General information of the current build of Inference Extension",
            info.clone(),
        );
        registry.register(
            "llm_d_epp_info",
            "General information of the current build",
            info,
        );
        EppMetrics { registry, ..m }
    }

    /// A request was parsed and admitted for scheduling.
    pub fn request_received(&self, model: &str, target: &str, priority: i32, body_bytes: usize) {
        self.request_total
            .get_or_create(&RequestLabels {
                model_name: model.into(),
                target_model_name: target.into(),
                priority: priority.to_string(),
            })
            .inc();
        self.request_sizes
            .get_or_create(&labels(model, target))
            .observe(body_bytes as f64);
    }

    /// A request failed with GIE error code `code`.
    pub fn request_failed(&self, model: &str, target: &str, code: &str) {
        self.request_error_total
            .get_or_create(&ErrorLabels {
                model_name: model.into(),
                target_model_name: target.into(),
                error_code: code.into(),
            })
            .inc();
    }

    /// A forwarded request started (+1) or finished (−1).
    pub fn running_delta(&self, model: &str, delta: i64) {
        self.running_requests
            .get_or_create(&ModelNameLabel {
                model_name: model.into(),
            })
            .inc_by(delta);
    }

    /// A response ended; records latency, size, tokens and NTPOT (latency per output
    /// token, inference-perf's definition).
    pub fn response_completed(
        &self,
        model: &str,
        target: &str,
        elapsed: Duration,
        response_bytes: u64,
        usage: Option<TokenUsage>,
    ) {
        let l = labels(model, target);
        self.request_duration
            .get_or_create(&l)
            .observe(elapsed.as_secs_f64());
        self.response_sizes
            .get_or_create(&l)
            .observe(response_bytes as f64);
        if let Some(u) = usage {
            self.input_tokens
                .get_or_create(&l)
                .observe(u.prompt_tokens as f64);
            self.output_tokens
                .get_or_create(&l)
                .observe(u.completion_tokens as f64);
            self.cached_tokens
                .get_or_create(&l)
                .observe(u.cached_tokens as f64);
            if u.completion_tokens > 0 {
                self.ntpot
                    .get_or_create(&l)
                    .observe(elapsed.as_secs_f64() / u.completion_tokens as f64);
            }
        }
    }

    /// A request is sent again after a failure before any response.
    pub fn retried(&self, reason: &str) {
        self.retries
            .get_or_create(&ReasonLabels {
                name: self.pool_name.clone(),
                reason: reason.into(),
            })
            .inc();
    }

    /// A response broke off after its headers.
    pub fn response_broken(&self, reason: &str) {
        self.broken
            .get_or_create(&ReasonLabels {
                name: self.pool_name.clone(),
                reason: reason.into(),
            })
            .inc();
    }

    /// An endpoint was ejected by outlier detection.
    pub fn endpoint_ejected(&self) {
        self.ejections
            .get_or_create(&PoolLabel {
                name: self.pool_name.clone(),
            })
            .inc();
    }

    /// One scheduling decision took `d`.
    pub fn scheduled(&self, d: Duration) {
        self.scheduler_e2e.observe(d.as_secs_f64());
    }

    /// Refreshes the `inference_pool_*` gauges.
    pub fn set_pool(&self, stats: &PoolStats) {
        let pool = PoolLabel {
            name: self.pool_name.clone(),
        };
        self.pool_ready
            .get_or_create(&pool)
            .set(stats.ready_endpoints as i64);
        self.pool_kv
            .get_or_create(&pool)
            .set(stats.average_kv_cache_utilization);
        self.pool_queue
            .get_or_create(&pool)
            .set(stats.average_queue_size);
        self.pool_running
            .get_or_create(&pool)
            .set(stats.average_running_requests);
        self.pool_pod_queue.clear();
        for (endpoint, queue) in &stats.queue_by_endpoint {
            self.pool_pod_queue
                .get_or_create(&PodLabels {
                    name: self.pool_name.clone(),
                    model_server_pod: endpoint.clone(),
                })
                .set(*queue as i64);
        }
    }

    /// The text exposition (OpenMetrics text, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn labels(model: &str, target: &str) -> ModelLabels {
    ModelLabels {
        model_name: model.into(),
        target_model_name: target.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gies_names_and_labels() {
        let m = EppMetrics::new("vllm-pool");
        m.request_received("m", "m-lora", 2, 100);
        m.request_failed("m", "m", "BadRequest");
        m.running_delta("m", 1);
        m.response_completed(
            "m",
            "m-lora",
            Duration::from_millis(500),
            2048,
            Some(TokenUsage {
                prompt_tokens: 7,
                completion_tokens: 10,
                cached_tokens: 0,
            }),
        );
        m.set_pool(&PoolStats {
            ready_endpoints: 3,
            average_kv_cache_utilization: 0.25,
            average_queue_size: 1.5,
            average_running_requests: 4.0,
            queue_by_endpoint: vec![("pod-a".into(), 2)],
        });
        let text = m.render();
        for needle in [
            r#"inference_objective_request_total{model_name="m",target_model_name="m-lora",priority="2"} 1"#,
            r#"inference_objective_request_error_total{model_name="m",target_model_name="m",error_code="BadRequest"} 1"#,
            r#"inference_objective_running_requests{model_name="m"} 1"#,
            r#"inference_objective_input_tokens_sum{model_name="m",target_model_name="m-lora"} 7.0"#,
            r#"inference_objective_normalized_time_per_output_token_seconds_sum{model_name="m",target_model_name="m-lora"} 0.05"#,
            r#"inference_pool_ready_pods{name="vllm-pool"} 3"#,
            r#"inference_pool_average_kv_cache_utilization{name="vllm-pool"} 0.25"#,
            r#"inference_pool_per_pod_queue_size{name="vllm-pool",model_server_pod="pod-a"} 2"#,
            "inference_extension_info{",
            r#"llm_d_epp_request_total{model_name="m",target_model_name="m-lora",priority="2"} 1"#,
            r#"llm_d_epp_ready_endpoints{name="vllm-pool"} 3"#,
            r#"llm_d_epp_request_input_tokens_sum{model_name="m",target_model_name="m-lora"} 7.0"#,
            "llm_d_epp_info{",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}

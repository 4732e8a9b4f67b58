//! Renders one replica's metrics as the Prometheus text (format 0.0.4) that vLLM v0.26
//! serves through Python's `prometheus_client`, so any scraper that reads vLLM reads the
//! simulator unchanged (names, help texts, label sets and float spelling; sim-facts §2).
//!
//! It runs on every scrape (a gateway scrapes about every 50 ms), so it writes straight
//! into the caller's buffer and allocates nothing of its own. It must not read a clock:
//! the caller passes the wall-clock time that `vllm:lora_requests_info` reports.
//!
//! Shape, as `prometheus_client.exposition.generate_latest` writes it:
//! - per family `# HELP`, `# TYPE`, then samples; counters are named with `_total` in
//!   all three places; histograms give `_bucket` (cumulative, `le="+Inf"` last), then
//!   `_count`, then `_sum`. No `_created` series: vLLM v0.26's family list (sim-facts
//!   §2.1) has none.
//! - labels sorted by name (the client sorts them), so per-engine samples read
//!   `{engine="0",model_name="m"}` and `le` / `finished_reason` sit between the two.
//! - every value a float spelled as Python's `repr`, with the client's switch to
//!   exponents from 1e6 up (`floatToGoString`): `0.0`, `12.0`, `1e-05`, `1.7e+09`.

use std::fmt::Write;

mod float;
pub(crate) use float::write_float;

use super::{EngineGauges, EngineMetrics, FinishReason, Histogram};

/// The `Content-Type` of `GET /metrics` (what `prometheus_client` sends).
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Static facts about one replica, for labels and info gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// The served model name (`model_name` label).
    pub model_name: String,
    /// The engine index (`engine` label); vLLM numbers data-parallel engines from 0.
    pub engine: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// KV blocks in the cache.
    pub num_gpu_blocks: usize,
    pub enable_prefix_caching: bool,
    /// Adapters a batch may use at once (`max_lora` label).
    pub max_loras: usize,
}

/// What `vllm:cache_config_info` reports beyond [`ReplicaInfo`].
#[derive(Clone, Debug, PartialEq)]
pub struct CacheInfo {
    /// `--gpu-memory-utilization` (reported only).
    pub gpu_memory_utilization: f64,
    /// `--num-gpu-blocks-override` / `--kv-blocks`, when given.
    pub num_gpu_blocks_override: Option<usize>,
    /// Whether `--block-size` was given (vLLM's `user_specified_block_size`).
    pub user_specified_block_size: bool,
}

impl Default for CacheInfo {
    fn default() -> CacheInfo {
        CacheInfo {
            gpu_memory_utilization: 0.9,
            num_gpu_blocks_override: None,
            user_specified_block_size: false,
        }
    }
}

/// Appends vLLM's Prometheus text exposition (format 0.0.4) for one replica, with
/// [`CacheInfo::default`] in `vllm:cache_config_info`. See [`render_replica`].
pub fn render_prometheus(
    out: &mut String,
    info: &ReplicaInfo,
    metrics: &EngineMetrics,
    gauges: &EngineGauges,
    unix_time_secs: f64,
) {
    render_replica(
        out,
        info,
        &CacheInfo::default(),
        metrics,
        gauges,
        unix_time_secs,
    );
}

/// Appends vLLM's Prometheus text exposition (format 0.0.4) for one replica.
///
/// Families come in the order vLLM registers them (`PrometheusStatLogger.__init__`:
/// the MFU counters first, then scheduler state, caches, counters, histograms).
/// Families vLLM declares but the simulator has nothing to count for (MFU estimates,
/// KV-connector and multi-modal caches) are there at 0, as in a vLLM that has those
/// features off. `vllm:lora_requests_info` is always present (vLLM emits it only with
/// `--enable-lora`, but gateways read it and may count an endpoint without it as
/// unhealthy, sim-facts §2.5); its value is `unix_time_secs`.
pub fn render_replica(
    out: &mut String,
    info: &ReplicaInfo,
    cache: &CacheInfo,
    metrics: &EngineMetrics,
    gauges: &EngineGauges,
    unix_time_secs: f64,
) {
    let mut w = Writer { out, info };
    let m = metrics;

    // Help texts are vLLM's own (`vllm/v1/metrics/loggers.py`, `perf.py`).
    for (name, what) in [
        (
            "vllm:estimated_flops_per_gpu_total",
            "floating point operations",
        ),
        (
            "vllm:estimated_read_bytes_per_gpu_total",
            "bytes read from memory",
        ),
        (
            "vllm:estimated_write_bytes_per_gpu_total",
            "bytes written to memory",
        ),
    ] {
        w.header_parts(
            name,
            &["Estimated number of ", what, MFU_HELP_TAIL],
            "counter",
        );
        w.sample(name, "", Middle::None, 0.0);
    }
    w.gauge(
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        gauges.num_requests_running as f64,
    );
    w.gauge(
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        gauges.num_requests_waiting as f64,
    );
    let deferred = gauges
        .num_requests_waiting_deferred
        .min(gauges.num_requests_waiting);
    w.labelled(
        "vllm:num_requests_waiting_by_reason",
        "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for \
         scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, \
         KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
        "gauge",
        "reason",
        &[
            ("capacity", (gauges.num_requests_waiting - deferred) as f64),
            ("deferred", deferred as f64),
        ],
    );
    w.labelled(
        "vllm:engine_sleep_state",
        "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is \
         awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
        "gauge",
        "sleep_state",
        &[
            ("awake", 1.0),
            ("weights_offloaded", 0.0),
            ("discard_all", 0.0),
        ],
    );
    w.gauge(
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        gauges.kv_cache_usage_perc,
    );
    for (name, help, value) in [
        (
            "vllm:prefix_cache_queries_total",
            "Prefix cache queries, in terms of number of queried tokens.",
            m.prefix_cache_queries_total,
        ),
        (
            "vllm:prefix_cache_hits_total",
            "Prefix cache hits, in terms of number of cached tokens.",
            m.prefix_cache_hits_total,
        ),
        (
            "vllm:external_prefix_cache_queries_total",
            "External prefix cache queries from KV connector cross-instance cache sharing, \
             in terms of number of queried tokens.",
            0,
        ),
        (
            "vllm:external_prefix_cache_hits_total",
            "External prefix cache hits from KV connector cross-instance cache sharing, in \
             terms of number of cached tokens.",
            0,
        ),
        (
            "vllm:mm_cache_queries_total",
            "Multi-modal cache queries, in terms of number of queried items.",
            0,
        ),
        (
            "vllm:mm_cache_hits_total",
            "Multi-modal cache hits, in terms of number of cached items.",
            0,
        ),
        (
            "vllm:num_preemptions_total",
            "Cumulative number of preemption from the engine.",
            m.num_preemptions_total,
        ),
        (
            "vllm:prompt_tokens_total",
            "Number of prefill tokens processed.",
            m.prompt_tokens_total,
        ),
    ] {
        w.counter(name, help, value);
    }
    w.labelled(
        "vllm:prompt_tokens_by_source_total",
        "Number of prompt tokens by source.",
        "counter",
        "source",
        &[
            ("local_compute", m.prompt_tokens_local_compute_total as f64),
            ("local_cache_hit", m.prompt_tokens_cached_total as f64),
            ("external_kv_transfer", 0.0),
        ],
    );
    w.counter(
        "vllm:prompt_tokens_cached_total",
        "Number of cached prompt tokens (local + external).",
        m.prompt_tokens_cached_total,
    );
    w.counter(
        "vllm:generation_tokens_total",
        "Number of generation tokens processed.",
        m.generation_tokens_total,
    );
    w.request_success(&m.request_success_total);

    let histograms: [(&str, &str, &Histogram); 15] = [
        (
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            &m.request_prompt_tokens,
        ),
        (
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            &m.request_generation_tokens,
        ),
        (
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            &m.iteration_tokens_total,
        ),
        (
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            &m.request_max_num_generation_tokens,
        ),
        (
            "vllm:request_params_n",
            "Histogram of the n request parameter.",
            &m.request_params_n,
        ),
        (
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            &m.request_params_max_tokens,
        ),
        (
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            &m.time_to_first_token_seconds,
        ),
        (
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            &m.inter_token_latency_seconds,
        ),
        (
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            &m.request_time_per_output_token_seconds,
        ),
        (
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            &m.e2e_request_latency_seconds,
        ),
        (
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            &m.request_queue_time_seconds,
        ),
        (
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            &m.request_inference_time_seconds,
        ),
        (
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            &m.request_prefill_time_seconds,
        ),
        (
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            &m.request_decode_time_seconds,
        ),
        (
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            &m.request_prefill_kv_computed_tokens,
        ),
    ];
    for (name, help, h) in histograms {
        w.histogram(name, help, h);
    }

    w.lora_requests_info(gauges, unix_time_secs);
    // Registered when the engine reports its cache size, after everything above.
    w.cache_config_info(cache);
}

/// How vLLM's three MFU counters' help texts end.
const MFU_HELP_TAIL: &str = " per GPU (for Model Flops Utilization calculations).";

/// A label besides `engine` and `model_name`, where sorted order puts it: between
/// the two, or after `model_name`.
#[derive(Clone, Copy)]
enum Middle {
    None,
    FinishedReason(&'static str),
    Le(f64),
    /// A label named after `model_name` in sorted order (`reason`, `source`, …).
    After(&'static str, &'static str),
}

struct Writer<'a> {
    out: &'a mut String,
    info: &'a ReplicaInfo,
}

impl Writer<'_> {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        self.header_parts(name, &[help], kind);
    }

    /// A header whose help text is `help` concatenated.
    fn header_parts(&mut self, name: &str, help: &[&str], kind: &str) {
        // The help texts are constants without `\` or newlines, so need no escaping.
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for part in help {
            self.out.push_str(part);
        }
        for part in ["\n# TYPE ", name, " ", kind, "\n"] {
            self.out.push_str(part);
        }
    }

    /// A family with one sample per value of `label` (named after `model_name` in
    /// sorted order), in the order given.
    fn labelled(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        label: &'static str,
        values: &[(&'static str, f64)],
    ) {
        self.header(name, help, kind);
        for &(value, v) in values {
            self.sample(name, "", Middle::After(label, value), v);
        }
    }

    /// `name{engine="..",[middle,]model_name=".."} value\n`
    fn sample(&mut self, name: &str, suffix: &str, middle: Middle, value: f64) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        self.out.push_str("{engine=\"");
        let _ = write!(self.out, "{}", self.info.engine);
        self.out.push_str("\",");
        match middle {
            Middle::None => {}
            Middle::FinishedReason(reason) => {
                self.out.push_str("finished_reason=\"");
                self.out.push_str(reason);
                self.out.push_str("\",");
            }
            Middle::Le(bound) => {
                self.out.push_str("le=\"");
                write_float(self.out, bound);
                self.out.push_str("\",");
            }
            Middle::After(..) => {}
        }
        self.out.push_str("model_name=\"");
        write_escaped(self.out, &self.info.model_name);
        if let Middle::After(label, value) = middle {
            for part in ["\",", label, "=\"", value] {
                self.out.push_str(part);
            }
        }
        self.out.push_str("\"} ");
        write_float(self.out, value);
        self.out.push('\n');
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, "", Middle::None, value);
    }

    fn counter(&mut self, name_total: &str, help: &str, value: u64) {
        self.header(name_total, help, "counter");
        self.sample(name_total, "", Middle::None, value as f64);
    }

    fn request_success(&mut self, by_reason: &[u64; 3]) {
        const NAME: &str = "vllm:request_success_total";
        self.header(NAME, "Count of successfully processed requests.", "counter");
        // One sample per reason, zeros included, in vLLM's enum order.
        for (reason, count) in FinishReason::ALL.iter().zip(by_reason) {
            let middle = Middle::FinishedReason(reason.as_str());
            self.sample(NAME, "", middle, *count as f64);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, help, "histogram");
        for (&bound, cumulative) in h.bounds().iter().zip(h.cumulative()) {
            self.sample(name, "_bucket", Middle::Le(bound), cumulative as f64);
        }
        let count = h.count() as f64;
        self.sample(name, "_bucket", Middle::Le(f64::INFINITY), count);
        self.sample(name, "_count", Middle::None, count);
        self.sample(name, "_sum", Middle::None, h.sum());
    }

    /// vLLM's label set for this gauge is only these three (no `model_name`, no
    /// `engine`); adapter lists are comma-joined names, empty when none.
    fn lora_requests_info(&mut self, gauges: &EngineGauges, unix_time_secs: f64) {
        const NAME: &str = "vllm:lora_requests_info";
        self.header(NAME, "Running stats on lora requests.", "gauge");
        self.out.push_str(NAME);
        self.out.push_str("{max_lora=\"");
        let _ = write!(self.out, "{}", self.info.max_loras);
        self.out.push_str("\",running_lora_adapters=\"");
        write_joined(self.out, &gauges.running_lora_adapters);
        self.out.push_str("\",waiting_lora_adapters=\"");
        write_joined(self.out, &gauges.waiting_lora_adapters);
        self.out.push_str("\"} ");
        write_float(self.out, unix_time_secs);
        self.out.push('\n');
    }

    /// An info gauge fixed at 1 whose labels are vLLM's `CacheConfig` fields as Python
    /// `str()` gives them (`CacheConfig.metrics_info`), plus `engine` (no
    /// `model_name`). The field set is a v0.2x vLLM's, read off its `/metrics`;
    /// gateways read `block_size` and `num_gpu_blocks`. Fields of hybrid (Mamba)
    /// models carry a plain attention model's values.
    fn cache_config_info(&mut self, cache: &CacheInfo) {
        const NAME: &str = "vllm:cache_config_info";
        self.header(NAME, "Information of the LLMEngine CacheConfig", "gauge");
        let info = self.info;
        let py_bool = |b: bool| if b { "True" } else { "False" };
        let mut utilization = String::new();
        write_float(&mut utilization, cache.gpu_memory_utilization);
        let override_blocks = cache
            .num_gpu_blocks_override
            .map_or_else(|| "None".to_string(), |n| n.to_string());
        let _ = writeln!(
            self.out,
            "{NAME}{{_block_size_resolved=\"True\",block_size=\"{}\",cache_dtype=\"auto\",\
             calculate_kv_scales=\"False\",enable_prefix_caching=\"{}\",engine=\"{}\",\
             gpu_memory_utilization=\"{utilization}\",hash_block_size=\"None\",\
             is_attention_free=\"False\",kv_cache_dtype_skip_layers=\"[]\",\
             kv_cache_memory_bytes=\"None\",kv_offloading_backend=\"native\",\
             kv_offloading_size=\"None\",kv_sharing_fast_prefill=\"False\",\
             mamba_block_size=\"None\",mamba_cache_dtype=\"auto\",mamba_cache_mode=\"none\",\
             mamba_ssm_cache_dtype=\"auto\",num_cpu_blocks=\"None\",num_gpu_blocks=\"{}\",\
             num_gpu_blocks_override=\"{override_blocks}\",prefix_caching_hash_algo=\"sha256\",\
             sliding_window=\"None\",user_specified_block_size=\"{}\",\
             user_specified_mamba_block_size=\"False\"}} 1.0",
            info.block_size,
            py_bool(info.enable_prefix_caching),
            info.engine,
            info.num_gpu_blocks,
            py_bool(cache.user_specified_block_size),
        );
    }
}

/// A label value with the text format's escapes (`\\`, `\"`, `\n`).
fn write_escaped(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

fn write_joined(out: &mut String, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_escaped(out, name);
    }
}

#[cfg(test)]
mod tests;

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

use std::fmt::{self, Write};

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

/// Appends vLLM's Prometheus text exposition (format 0.0.4) for one replica.
///
/// Families come in the order vLLM registers them. `vllm:lora_requests_info` is always
/// present (vLLM emits it only with `--enable-lora`, but gateways read it and may count
/// an endpoint without it as unhealthy, sim-facts §2.5); its value is `unix_time_secs`.
pub fn render_prometheus(
    out: &mut String,
    info: &ReplicaInfo,
    metrics: &EngineMetrics,
    gauges: &EngineGauges,
    unix_time_secs: f64,
) {
    let mut w = Writer { out, info };
    let m = metrics;

    // Help texts are vLLM's own (`vllm/v1/metrics/loggers.py`).
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
    w.gauge(
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        gauges.kv_cache_usage_perc,
    );
    w.counter(
        "vllm:prefix_cache_queries_total",
        "Prefix cache queries, in terms of number of queried tokens.",
        m.prefix_cache_queries_total,
    );
    w.counter(
        "vllm:prefix_cache_hits_total",
        "Prefix cache hits, in terms of number of cached tokens.",
        m.prefix_cache_hits_total,
    );
    w.counter(
        "vllm:num_preemptions_total",
        "Cumulative number of preemption from the engine.",
        m.num_preemptions_total,
    );
    w.counter(
        "vllm:prompt_tokens_total",
        "Number of prefill tokens processed.",
        m.prompt_tokens_total,
    );
    w.counter(
        "vllm:generation_tokens_total",
        "Number of generation tokens processed.",
        m.generation_tokens_total,
    );
    w.request_success(&m.request_success_total);

    let histograms: [(&str, &str, &Histogram); 11] = [
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
    ];
    for (name, help, h) in histograms {
        w.histogram(name, help, h);
    }

    w.lora_requests_info(gauges, unix_time_secs);
    // Registered when the engine reports its cache size, after everything above.
    w.cache_config_info();
}

/// A label between `engine` and `model_name` in sorted order.
#[derive(Clone, Copy)]
enum Middle {
    None,
    FinishedReason(&'static str),
    Le(f64),
}

struct Writer<'a> {
    out: &'a mut String,
    info: &'a ReplicaInfo,
}

impl Writer<'_> {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        // The help texts are constants without `\` or newlines, so need no escaping.
        for part in [
            "# HELP ",
            name,
            " ",
            help,
            "\n# TYPE ",
            name,
            " ",
            kind,
            "\n",
        ] {
            self.out.push_str(part);
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
        }
        self.out.push_str("model_name=\"");
        write_escaped(self.out, &self.info.model_name);
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
    /// `str()` gives them, plus `engine` (no `model_name`). Only the fields a simulator
    /// can state truthfully; gateways read `block_size` and `num_gpu_blocks`.
    fn cache_config_info(&mut self) {
        const NAME: &str = "vllm:cache_config_info";
        self.header(NAME, "Information of the LLMEngine CacheConfig", "gauge");
        let info = self.info;
        let prefix_caching = if info.enable_prefix_caching {
            "True"
        } else {
            "False"
        };
        let _ = writeln!(
            self.out,
            "{NAME}{{block_size=\"{}\",cache_dtype=\"auto\",enable_prefix_caching=\"{}\",\
             engine=\"{}\",gpu_memory_utilization=\"0.9\",num_gpu_blocks=\"{}\"}} 1.0",
            info.block_size, prefix_caching, info.engine, info.num_gpu_blocks
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

/// Writes `v` as `prometheus_client.utils.floatToGoString` does: Python's `repr`
/// (shortest round-trip digits, `.0` on integers, exponent below 1e-4 and from 1e16),
/// except that positive values from 1e6 up switch to an exponent as Go would
/// (`1234567.0` → `1.234567e+06`).
pub(crate) fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let mut buf = StackStr::default();
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust writes `1e-5` / `1.5e16`; Python writes `1e-05` / `1.5e+16`.
        let _ = write!(buf, "{v:e}");
        let s = buf.as_str();
        let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push_str(mantissa);
        out.push('e');
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    // Rust's Display never uses an exponent and prints integers without a dot.
    let _ = write!(buf, "{v}");
    let s = buf.as_str();
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    if v > 0.0 && int.len() > 6 {
        // floatToGoString: `d.ddd…` from all digits, trailing '0' and '.' stripped,
        // then `e+` and the exponent in at least two digits.
        let mut mantissa = StackStr::default();
        let _ = write!(mantissa, "{}.{}{}", &int[..1], &int[1..], frac);
        out.push_str(mantissa.as_str().trim_end_matches(['0', '.']));
        let _ = write!(out, "e+{:02}", int.len() - 1);
        return;
    }
    out.push_str(int);
    out.push('.');
    out.push_str(frac);
}

/// A fixed buffer for formatting one float without allocating. Rust's shortest
/// round-trip output is at most ~25 bytes in the ranges used above.
struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackStr {
    fn default() -> StackStr {
        StackStr {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackStr {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

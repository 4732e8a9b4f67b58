//! GIE's `core-metrics-extractor`: which scraped series mean queue depth, running
//! requests, KV-cache use, LoRA state and cache geometry for each engine, and the
//! extraction of one [`EndpointMetrics`] from a scraped text (gie-facts §2.1–§2.2).
//!
//! An [`EngineMetricsSpec`] is the configuration form, field for field GIE's
//! `engineConfigs[]` entry (camelCase, so the EndpointPickerConfig loader can embed it);
//! [`MetricMapping`] is the same compiled once, selectors parsed, so a scrape (every
//! 50 ms per endpoint) only compares strings. Built-in engines: `vllm`, `sglang`,
//! `trtllm-serve`, `triton-tensorrt-llm`; an entry with the same name replaces a built-in
//! whole, and an empty spec string disables that metric.
//!
//! Selection rules are GIE's: among series matching a selector the one with the latest
//! timestamp wins (the first, on a tie or without timestamps); for LoRA the series with
//! the largest value (a Unix time) wins. vLLM's KV metric falls back to the pre-v0.10 name
//! `vllm:gpu_cache_usage_perc` when `vllm:kv_cache_usage_perc` is absent.
//!
//! It reads text and returns values; it does no I/O and reads no clock (`now` is
//! passed in). Scraped text is untrusted: garbage yields an [`ExtractError`], never a
//! panic.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::endpoint::EndpointMetrics;
use super::prom_text::{Format, ParseError, Sample, parse_selected};

mod selector;
pub use selector::Selector;

/// The engine assumed when an endpoint names none (GIE's `defaultEngine`).
pub const DEFAULT_ENGINE: &str = "vllm";
/// Engines with built-in specs (gie-facts §2.1).
pub const BUILTIN_ENGINES: [&str; 4] = ["vllm", "sglang", "trtllm-serve", "triton-tensorrt-llm"];
/// Default `cacheBlockSizeLabelName`.
pub const DEFAULT_BLOCK_SIZE_LABEL: &str = "block_size";
/// Default `cacheNumBlocksLabelName`.
pub const DEFAULT_NUM_BLOCKS_LABEL: &str = "num_gpu_blocks";

/// The label naming the served model on vLLM's and SGLang's gauges.
const SERVED_MODEL_LABEL: &str = "model_name";
const VLLM_KV: &str = "vllm:kv_cache_usage_perc";
/// vLLM's KV metric before v0.10, and the default of GIE ≤ v1.0 (gie-facts §2.3).
const VLLM_KV_LEGACY: &str = "vllm:gpu_cache_usage_perc";

/// One `engineConfigs[]` entry: a PromQL-style selector per semantic metric.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineMetricsSpec {
    pub name: String,
    #[serde(default)]
    pub queued_requests_spec: String,
    #[serde(default)]
    pub running_requests_spec: String,
    #[serde(default)]
    pub kv_usage_spec: String,
    #[serde(default)]
    pub lora_spec: String,
    /// An info gauge whose labels carry the block size and block count.
    #[serde(default)]
    pub cache_info_spec: String,
    /// Label of `cacheInfoSpec` holding tokens per block; empty means `block_size`.
    #[serde(default)]
    pub cache_block_size_label_name: String,
    /// Label of `cacheInfoSpec` holding the block count; empty means `num_gpu_blocks`.
    #[serde(default)]
    pub cache_num_blocks_label_name: String,
    /// A gauge whose value is tokens per block (engines without an info gauge).
    #[serde(default)]
    pub cache_block_size_spec: String,
    /// A gauge whose value is the block count.
    #[serde(default)]
    pub cache_num_blocks_spec: String,
}

impl EngineMetricsSpec {
    /// A built-in engine's spec, with the metric names of gie-facts §2.1.
    pub fn builtin(name: &str) -> Option<EngineMetricsSpec> {
        let spec = |queued: &str, running: &str, kv: &str| EngineMetricsSpec {
            name: name.to_string(),
            queued_requests_spec: queued.into(),
            running_requests_spec: running.into(),
            kv_usage_spec: kv.into(),
            ..EngineMetricsSpec::default()
        };
        Some(match name {
            "vllm" => EngineMetricsSpec {
                lora_spec: "vllm:lora_requests_info".into(),
                cache_info_spec: "vllm:cache_config_info".into(),
                ..spec(
                    "vllm:num_requests_waiting",
                    "vllm:num_requests_running",
                    VLLM_KV,
                )
            },
            "sglang" => EngineMetricsSpec {
                cache_info_spec: "sglang:cache_config_info".into(),
                cache_block_size_label_name: "page_size".into(),
                cache_num_blocks_label_name: "num_pages".into(),
                ..spec(
                    "sglang:num_queue_reqs",
                    "sglang:num_running_reqs",
                    "sglang:token_usage",
                )
            },
            "trtllm-serve" => EngineMetricsSpec {
                cache_block_size_spec: "trtllm_kv_cache_tokens_per_block".into(),
                cache_num_blocks_spec: "trtllm_kv_cache_max_blocks".into(),
                ..spec(
                    "trtllm_num_requests_waiting",
                    "trtllm_num_requests_running",
                    "trtllm_kv_cache_utilization",
                )
            },
            "triton-tensorrt-llm" => EngineMetricsSpec {
                cache_block_size_spec:
                    "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"tokens_per\"}".into(),
                cache_num_blocks_spec:
                    "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"max\"}".into(),
                ..spec(
                    "nv_trt_llm_request_metrics{request_type=\"waiting\"}",
                    "nv_trt_llm_request_metrics{request_type=\"scheduled\"}",
                    "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"fraction\"}",
                )
            },
            _ => return None,
        })
    }
}

/// A semantic metric, named by its spec field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    QueuedRequests,
    RunningRequests,
    KvUsage,
    Lora,
    CacheInfo,
    CacheBlockSize,
    CacheNumBlocks,
}

impl Family {
    /// The `engineConfigs` field that configures it.
    pub fn spec_field(self) -> &'static str {
        match self {
            Family::QueuedRequests => "queuedRequestsSpec",
            Family::RunningRequests => "runningRequestsSpec",
            Family::KvUsage => "kvUsageSpec",
            Family::Lora => "loraSpec",
            Family::CacheInfo => "cacheInfoSpec",
            Family::CacheBlockSize => "cacheBlockSizeSpec",
            Family::CacheNumBlocks => "cacheNumBlocksSpec",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec_field())
    }
}

/// A spec that cannot be used, found when it is compiled (at startup).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("engine `{engine}`: field `{field}`: {message}")]
    InvalidSelector {
        engine: String,
        field: &'static str,
        message: String,
    },
    #[error("engine config: {0}")]
    InvalidEngine(String),
}

/// Slots of [`MetricMapping::selectors`], in the order they are tried.
const QUEUED: usize = 0;
const RUNNING: usize = 1;
const KV: usize = 2;
const KV_FALLBACK: usize = 3;
const LORA: usize = 4;
const CACHE_INFO: usize = 5;
const BLOCK_SIZE: usize = 6;
const NUM_BLOCKS: usize = 7;
const SLOTS: usize = 8;

const SLOT_FAMILY: [Family; SLOTS] = [
    Family::QueuedRequests,
    Family::RunningRequests,
    Family::KvUsage,
    Family::KvUsage,
    Family::Lora,
    Family::CacheInfo,
    Family::CacheBlockSize,
    Family::CacheNumBlocks,
];

/// An [`EngineMetricsSpec`] compiled for extraction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricMapping {
    engine: String,
    /// One selector per slot (`QUEUED`…); `None` when the spec disables it.
    selectors: [Option<Selector>; SLOTS],
    block_size_label: String,
    num_blocks_label: String,
    /// The selectors' metric names, deduplicated: the only lines a scrape parses.
    names: Vec<String>,
}

impl MetricMapping {
    pub fn new(spec: &EngineMetricsSpec) -> Result<MetricMapping, SpecError> {
        let compile = |text: &str, family: Family| -> Result<Option<Selector>, SpecError> {
            if text.trim().is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|message| SpecError::InvalidSelector {
                    engine: spec.name.clone(),
                    field: family.spec_field(),
                    message,
                })
        };
        let kv = compile(&spec.kv_usage_spec, Family::KvUsage)?;
        // Any spec that names vLLM's current KV metric also accepts the older name.
        let kv_fallback = kv.as_ref().filter(|s| s.name == VLLM_KV).map(|s| Selector {
            name: VLLM_KV_LEGACY.to_string(),
            labels: s.labels.clone(),
        });
        let or_default =
            |label: &str, default: &str| if label.is_empty() { default } else { label }.to_string();
        let selectors = [
            compile(&spec.queued_requests_spec, Family::QueuedRequests)?,
            compile(&spec.running_requests_spec, Family::RunningRequests)?,
            kv,
            kv_fallback,
            compile(&spec.lora_spec, Family::Lora)?,
            compile(&spec.cache_info_spec, Family::CacheInfo)?,
            compile(&spec.cache_block_size_spec, Family::CacheBlockSize)?,
            compile(&spec.cache_num_blocks_spec, Family::CacheNumBlocks)?,
        ];
        let mut names: Vec<String> = selectors.iter().flatten().map(|s| s.name.clone()).collect();
        names.sort();
        names.dedup();
        Ok(MetricMapping {
            engine: spec.name.clone(),
            selectors,
            names,
            block_size_label: or_default(
                &spec.cache_block_size_label_name,
                DEFAULT_BLOCK_SIZE_LABEL,
            ),
            num_blocks_label: or_default(
                &spec.cache_num_blocks_label_name,
                DEFAULT_NUM_BLOCKS_LABEL,
            ),
        })
    }

    /// A built-in engine's mapping.
    pub fn builtin(engine: &str) -> Option<MetricMapping> {
        EngineMetricsSpec::builtin(engine).and_then(|spec| MetricMapping::new(&spec).ok())
    }

    pub fn engine(&self) -> &str {
        &self.engine
    }
}

/// The built-in mappings with a configuration's entries applied, and the engine to use
/// for endpoints that name none or an unknown one.
#[derive(Clone, Debug)]
pub struct EngineMappings {
    by_name: BTreeMap<String, Arc<MetricMapping>>,
    default_engine: Arc<MetricMapping>,
}

impl EngineMappings {
    /// Built-ins, each replaced whole by an entry of the same name (GIE does not merge
    /// fields). `default` is a reserved name; names must be unique.
    pub fn new(
        entries: &[EngineMetricsSpec],
        default_engine: &str,
    ) -> Result<EngineMappings, SpecError> {
        let mut by_name = BTreeMap::new();
        for name in BUILTIN_ENGINES {
            if let Some(spec) = EngineMetricsSpec::builtin(name) {
                by_name.insert(name.to_string(), Arc::new(MetricMapping::new(&spec)?));
            }
        }
        let mut seen = Vec::new();
        for entry in entries {
            let name = entry.name.as_str();
            if name.is_empty() || name == "default" {
                return Err(SpecError::InvalidEngine(format!(
                    "engine name {name:?} is reserved or empty"
                )));
            }
            if seen.contains(&name) {
                return Err(SpecError::InvalidEngine(format!(
                    "engine `{name}` is configured twice"
                )));
            }
            seen.push(name);
            by_name.insert(name.to_string(), Arc::new(MetricMapping::new(entry)?));
        }
        let default_engine = by_name.get(default_engine).cloned().ok_or_else(|| {
            SpecError::InvalidEngine(format!(
                "default engine `{default_engine}` is not configured"
            ))
        })?;
        Ok(EngineMappings {
            by_name,
            default_engine,
        })
    }

    /// The mapping for an endpoint's engine label; missing or unknown engines get the
    /// default engine's.
    pub fn get(&self, engine: Option<&str>) -> &Arc<MetricMapping> {
        engine
            .and_then(|e| self.by_name.get(e))
            .unwrap_or(&self.default_engine)
    }
}

/// Malformed lines seen while extracting, for error messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Malformed {
    pub lines: usize,
    pub first: Option<ParseError>,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first {
            Some(first) if self.lines > 0 => {
                write!(f, " ({} malformed lines; first at {first})", self.lines)
            }
            _ => Ok(()),
        }
    }
}

/// Why a scraped text gave no usable metrics.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExtractError {
    /// No series with the metric's name (or any text at all that parses).
    #[error("metric family `{metric}` ({family}) not found{malformed}")]
    MissingFamily {
        family: Family,
        metric: String,
        malformed: Malformed,
    },
    /// The family is there but no series carries the selector's labels.
    #[error("no series of `{selector}` ({family})")]
    NoMatchingSeries { family: Family, selector: String },
    /// A count that is negative, fractional beyond rounding or not finite.
    #[error("`{metric}` ({family}): unusable value {value}")]
    InvalidValue {
        family: Family,
        metric: String,
        value: f64,
    },
    /// A label that must hold a number does not.
    #[error("`{metric}` ({family}): label `{label}` is not a number: {value:?}")]
    InvalidLabel {
        family: Family,
        metric: String,
        label: String,
        value: String,
    },
}

/// [`extract_format`] for 0.0.4 text.
pub fn extract(
    text: &str,
    mapping: &MetricMapping,
    now: Duration,
) -> Result<EndpointMetrics, ExtractError> {
    extract_format(text, Format::Prometheus, mapping, now)
}

/// Reads one endpoint's metrics out of a scraped text in one pass. `now` becomes
/// `updated_at`. Queue, running and KV are required when their spec is enabled; LoRA and
/// cache geometry are optional and left at their defaults when absent.
pub fn extract_format(
    text: &str,
    format: Format,
    mapping: &MetricMapping,
    now: Duration,
) -> Result<EndpointMetrics, ExtractError> {
    let mut best: [Option<Sample<'_>>; SLOTS] = [None; SLOTS];
    let mut name_seen = [false; SLOTS];
    let mut malformed = Malformed::default();
    for item in parse_selected(text, format, &mapping.names) {
        let sample = match item {
            Ok(sample) => sample,
            Err(e) => {
                malformed.lines += 1;
                malformed.first.get_or_insert(e);
                continue;
            }
        };
        for (slot, selector) in mapping.selectors.iter().enumerate() {
            let Some(selector) = selector.as_ref().filter(|s| s.name == sample.name) else {
                continue;
            };
            name_seen[slot] = true;
            if !selector.matches(&sample.labels) {
                continue;
            }
            let better = match &best[slot] {
                None => slot != LORA || !sample.value.is_nan(),
                // LoRA's value is a Unix time: the newest report wins.
                Some(b) if slot == LORA => sample.value > b.value,
                Some(b) => sample.timestamp_ms.unwrap_or(0) > b.timestamp_ms.unwrap_or(0),
            };
            if better {
                best[slot] = Some(sample);
            }
        }
    }
    if best[KV].is_none() && best[KV_FALLBACK].is_some() {
        best[KV] = best[KV_FALLBACK];
        name_seen[KV] = true;
    }

    let required = |slot: usize| -> Result<Option<Sample<'_>>, ExtractError> {
        let Some(selector) = &mapping.selectors[slot] else {
            return Ok(None);
        };
        match best[slot] {
            Some(sample) => Ok(Some(sample)),
            None if name_seen[slot] => Err(ExtractError::NoMatchingSeries {
                family: SLOT_FAMILY[slot],
                selector: selector.to_string(),
            }),
            None => Err(ExtractError::MissingFamily {
                family: SLOT_FAMILY[slot],
                metric: selector.name.clone(),
                malformed,
            }),
        }
    };
    let queued = required(QUEUED)?;
    let running = required(RUNNING)?;
    let kv = required(KV)?;

    let mut m = EndpointMetrics {
        updated_at: now,
        ..EndpointMetrics::default()
    };
    if let Some(s) = queued {
        m.waiting_queue_size = count(&s, Family::QueuedRequests)?;
    }
    if let Some(s) = running {
        m.running_requests = count(&s, Family::RunningRequests)?;
        m.served_model = s
            .labels
            .get(SERVED_MODEL_LABEL)
            .map(|v| v.get())
            .filter(|name| !name.is_empty())
            .map(Arc::from);
    }
    if let Some(s) = kv {
        if !(s.value.is_finite() && s.value >= 0.0) {
            return Err(invalid_value(&s, Family::KvUsage));
        }
        // A fraction by contract; a server overshooting it means "full".
        m.kv_cache_usage = s.value.min(1.0);
    }
    if let Some(s) = &best[LORA] {
        m.active_adapters = adapters(s, "running_lora_adapters");
        m.waiting_adapters = adapters(s, "waiting_lora_adapters");
        m.max_active_adapters = label_number(s, Family::Lora, "max_lora")?.unwrap_or(0);
    }
    if let Some(s) = &best[CACHE_INFO] {
        m.cache_block_size = label_number(s, Family::CacheInfo, &mapping.block_size_label)?;
        m.cache_num_blocks = label_number(s, Family::CacheInfo, &mapping.num_blocks_label)?;
    }
    if let Some(s) = &best[BLOCK_SIZE] {
        let v = count(s, Family::CacheBlockSize)?;
        m.cache_block_size =
            Some(u32::try_from(v).map_err(|_| invalid_value(s, Family::CacheBlockSize))?);
    }
    if let Some(s) = &best[NUM_BLOCKS] {
        m.cache_num_blocks = Some(count(s, Family::CacheNumBlocks)?);
    }
    Ok(m)
}

fn invalid_value(s: &Sample<'_>, family: Family) -> ExtractError {
    ExtractError::InvalidValue {
        family,
        metric: s.name.to_string(),
        value: s.value,
    }
}

/// A gauge holding a count: finite and not negative; rounded, since exporters write
/// counts as floats.
fn count(s: &Sample<'_>, family: Family) -> Result<u64, ExtractError> {
    let v = s.value;
    if !(v.is_finite() && v >= 0.0 && v < u64::MAX as f64) {
        return Err(invalid_value(s, family));
    }
    Ok(v.round() as u64)
}

/// A comma-separated adapter list; empty when the label is absent or empty.
fn adapters(s: &Sample<'_>, label: &str) -> Vec<String> {
    let Some(value) = s.labels.get(label) else {
        return Vec::new();
    };
    value
        .get()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// A label holding an integer. Absent, empty and Python's `None` (vLLM writes
/// `num_gpu_blocks="None"` before its cache is profiled) mean unknown.
fn label_number<T: FromStr>(
    s: &Sample<'_>,
    family: Family,
    label: &str,
) -> Result<Option<T>, ExtractError> {
    let Some(value) = s.labels.get(label) else {
        return Ok(None);
    };
    let text = value.get();
    let text = text.trim();
    if text.is_empty() || text == "None" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| ExtractError::InvalidLabel {
            family,
            metric: s.name.to_string(),
            label: label.to_string(),
            value: text.to_string(),
        })
}

#[cfg(test)]
mod tests;

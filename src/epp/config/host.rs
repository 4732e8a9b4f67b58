//! The parts of an `EndpointPickerConfig` the scheduler does not use but the host
//! does, as typed data: the metrics data source and extractor (`dataLayer`), the
//! request parser, and the `flowControl` section (gie-facts §2.2, §3.1, §5.2).
//!
//! Parsed and validated here, acted on elsewhere (the scraper, the admission step);
//! this module does no I/O.

use std::path::PathBuf;

use serde::Deserialize;

use crate::epp::scheduler::plugins::{GoDuration, ParamError, Params};

/// llm-d Router's `file-discovery` parameters (its `docs/discovery.md`): the endpoints
/// file, and whether to re-read it when it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FileDiscoveryParams {
    pub path: PathBuf,
    pub watch_file: bool,
}

impl Params for FileDiscoveryParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.path.as_os_str().is_empty() {
            return Err(ParamError::new("path", "the endpoints file is required"));
        }
        Ok(())
    }
}

/// `metrics-data-source` parameters (gie-facts §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsSourceParams {
    /// `http` or `https`.
    pub scheme: String,
    pub path: String,
    pub insecure_skip_verify: bool,
}

impl Default for MetricsSourceParams {
    fn default() -> Self {
        MetricsSourceParams {
            scheme: "http".into(),
            path: "/metrics".into(),
            insecure_skip_verify: true,
        }
    }
}

impl Params for MetricsSourceParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.scheme != "http" && self.scheme != "https" {
            return Err(ParamError::new(
                "scheme",
                format!("must be `http` or `https`, got `{}`", self.scheme),
            ));
        }
        if !self.path.starts_with('/') {
            return Err(ParamError::new("path", "must start with `/`"));
        }
        Ok(())
    }
}

/// `core-metrics-extractor` parameters (gie-facts §2.2): which metric names each
/// engine type exposes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CoreMetricsParams {
    /// The pod label naming an endpoint's engine.
    pub engine_label_key: String,
    /// The engine of pods without (or with an unknown) label.
    pub default_engine: String,
    /// Per engine, replacing the built-in entry of the same name entirely.
    pub engine_configs: Vec<EngineMetricsConfig>,
}

impl Default for CoreMetricsParams {
    fn default() -> Self {
        CoreMetricsParams {
            engine_label_key: "inference.networking.k8s.io/engine-type".into(),
            default_engine: "vllm".into(),
            engine_configs: Vec::new(),
        }
    }
}

impl Params for CoreMetricsParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.default_engine.is_empty() {
            return Err(ParamError::new("defaultEngine", "must not be empty"));
        }
        for (i, e) in self.engine_configs.iter().enumerate() {
            let field = format!("engineConfigs[{i}].name");
            if e.name.is_empty() || e.name == "default" {
                return Err(ParamError::new(field, "must be set and not `default`"));
            }
            if self.engine_configs[..i].iter().any(|o| o.name == e.name) {
                return Err(ParamError::new(
                    field,
                    format!("duplicate engine `{}`", e.name),
                ));
            }
        }
        Ok(())
    }
}

/// One engine's metric selectors (`engineConfigs[]`): the data layer's own type, so
/// what the file says is what the scraper compiles.
pub use crate::epp::metric_mapping::EngineMetricsSpec as EngineMetricsConfig;

/// One metrics source and the extractors fed by it (`dataLayer.sources[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSource {
    pub name: String,
    pub params: MetricsSourceParams,
    pub extractors: Vec<(String, CoreMetricsParams)>,
}

/// The request parser (`parser.pluginRef`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ParserKind {
    /// `openai-parser`, the default.
    #[default]
    OpenAi,
    /// `passthrough-parser`: the body is not interpreted.
    Passthrough,
}

/// A Kubernetes quantity as written (`1Gi`, `500M`, `1000000`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Number(u64),
    Text(String),
}

impl Quantity {
    /// The value in units (bytes, for byte limits); `None` if it does not parse.
    pub fn value(&self) -> Option<u64> {
        let text = match self {
            Quantity::Number(n) => return Some(*n),
            Quantity::Text(t) => t.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, suffix) = text.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let scale: u64 = match suffix {
            "" => 1,
            "k" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return None,
        };
        n.checked_mul(scale)
    }
}

/// The `flowControl` section (gie-facts §5.2), kept for the host's queueing layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlowControlSpec {
    pub max_bytes: Option<Quantity>,
    pub max_requests: Option<u64>,
    #[serde(rename = "defaultRequestTTL")]
    pub default_request_ttl: Option<GoDuration>,
    pub default_priority_band: Option<PriorityBandSpec>,
    #[serde(default)]
    pub priority_bands: Vec<PriorityBandSpec>,
    pub usage_limit_policy_plugin_ref: Option<String>,
}

/// One `flowControl.priorityBands[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PriorityBandSpec {
    pub priority: Option<i32>,
    pub max_bytes: Option<Quantity>,
    pub max_requests: Option<u64>,
    pub fairness_policy_ref: Option<String>,
    pub ordering_policy_ref: Option<String>,
}

impl FlowControlSpec {
    /// Checks quantities and band priorities; the error is `(field, message)`.
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad_quantity = |q: &Option<Quantity>| q.as_ref().is_some_and(|q| q.value().is_none());
        if bad_quantity(&self.max_bytes) {
            return Err(ParamError::new("maxBytes", "is not a quantity like `1Gi`"));
        }
        for (i, band) in self.priority_bands.iter().enumerate() {
            if bad_quantity(&band.max_bytes) {
                return Err(ParamError::new(
                    format!("priorityBands[{i}].maxBytes"),
                    "is not a quantity like `1Gi`",
                ));
            }
            if band.priority.is_none() {
                return Err(ParamError::new(
                    format!("priorityBands[{i}].priority"),
                    "is required",
                ));
            }
            let dup = self.priority_bands[..i]
                .iter()
                .any(|b| b.priority == band.priority);
            if dup {
                return Err(ParamError::new(
                    format!("priorityBands[{i}].priority"),
                    "duplicate priority",
                ));
            }
        }
        Ok(())
    }
}

//! GIE's `EndpointPickerConfig` (gie-facts §3.1–§3.3): the YAML file that names the
//! plugins and scheduling profiles, read strictly (an unknown field is an error),
//! defaulted as GIE defaults it, validated, and turned into a ready [`Scheduler`] plus
//! the typed settings the host needs (saturation detector, data layer, parser, flow
//! control).
//!
//! Loading is the only place a configuration can fail, and every error names the file
//! and, as applicable, the plugin (name and type), profile, section and field. Nothing
//! here panics on any input. Apart from [`load`] reading the one file, no I/O.
//!
//! Also here: the two ready-made configurations ([`gie_default`], [`igw_default`]) and
//! the small [`objectives`] file the CLI reads for request priorities.

mod assemble;
mod error;
pub mod factory;
pub mod host;
#[cfg(test)]
mod llm_d_tests;
pub mod objectives;
mod presets;
#[cfg(test)]
mod tests;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::ConfigError;
pub use host::{
    CoreMetricsParams, DataSource, EngineMetricsConfig, FileDiscoveryParams, FlowControlSpec,
    MetricsSourceParams, ParserKind, PriorityBandSpec, Quantity,
};
pub use presets::{GIE_DEFAULT_YAML, IGW_DEFAULT_YAML, gie_default, igw_default};

use crate::epp::saturation::Detector;
use crate::epp::scheduler::Scheduler;

/// GIE's `apiVersion` (other spellings in its docs are doc errors).
pub const API_VERSION: &str = "inference.networking.x-k8s.io/v1alpha1";
/// llm-d Router's group for the same file (llm-d-facts §1.3); both load.
pub const LLMD_API_VERSION: &str = "llm-d.ai/v1alpha1";
pub const KIND: &str = "EndpointPickerConfig";
/// The feature gates GIE v1.5 and llm-d Router register; any other is an error. A gate
/// may be written `name=false` to turn it off (llm-d-facts §1.3).
pub const FEATURE_GATES: [&str; 4] = [
    "flowControl",
    "dataLayer",
    "enableLegacyMetrics",
    "haPopulateNonLeaderDatastore",
];

/// The file as written; after [`load`], as defaulted (see [`LoadedConfig::spec`]).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointPickerConfig {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_gates: Vec<String>,
    pub plugins: Vec<PluginSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduling_profiles: Vec<ProfileSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation_detector: Option<PluginRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_layer: Option<DataLayerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<PluginRef>,
    /// llm-d Router's home of the parsers (the top-level `parser` is its deprecated
    /// form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_handler: Option<RequestHandlerSpec>,
    /// Kept as written; see [`LoadedConfig::flow_control`] for the typed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_control: Option<Value>,
}

/// `plugins[]`: one plugin instance.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Defaults to the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

impl PluginSpec {
    /// The name, or the type when unnamed (GIE's rule).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.type_name)
    }
}

/// `schedulingProfiles[]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    pub name: String,
    #[serde(default)]
    pub plugins: Vec<ProfilePluginSpec>,
}

/// `schedulingProfiles[].plugins[]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfilePluginSpec {
    pub plugin_ref: String,
    /// Scorers only; 1.0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// `{pluginRef}` sections: `saturationDetector`, `parser`, extractors.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginRef {
    pub plugin_ref: String,
}

/// `dataLayer`: an explicit empty `sources` disables metrics collection. The other
/// fields are llm-d Router's (llm-d-facts §1.3); igw reads them and says at load what
/// it does not act on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataLayerSpec {
    #[serde(default)]
    pub sources: Vec<DataSourceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_defaults: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoverySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_discovery: Option<PluginRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_replica_syncer_plugin_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_replica_sync_interval: Option<String>,
}

/// `dataLayer.discovery`: where endpoints come from instead of Kubernetes. llm-d
/// Router's `{endpoints: {pluginRef}}` (its `docs/discovery.md`), or the earlier
/// `{pluginRef}`; the plugin is a `file-discovery`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoverySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<PluginRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_ref: Option<String>,
}

/// llm-d Router's `requestHandler`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHandlerSpec {
    #[serde(default)]
    pub parsers: Vec<PluginRef>,
}

/// `dataLayer.sources[]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataSourceSpec {
    pub plugin_ref: String,
    #[serde(default)]
    pub extractors: Vec<PluginRef>,
}

/// Which feature gates are on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureGates {
    pub flow_control: bool,
    pub data_layer: bool,
    pub enable_legacy_metrics: bool,
}

/// A loaded, defaulted and validated configuration.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The file name (or the origin given to [`from_yaml_str`]), for messages.
    pub origin: String,
    /// The configuration after GIE's defaulting: every plugin named, the default
    /// profile, handler, pickers, weights, parser and detector filled in.
    pub spec: EndpointPickerConfig,
    pub feature_gates: FeatureGates,
    pub scheduler: Scheduler,
    /// The saturation detector (`utilization-detector` or `concurrency-detector`,
    /// §5.1), which the host's admission step asks.
    pub saturation: Detector,
    /// Metrics sources and their extractors; empty when collection is disabled.
    pub data_layer: Vec<DataSource>,
    pub parser: ParserKind,
    pub flow_control: Option<FlowControlSpec>,
    /// The endpoints file `dataLayer.discovery` names (a `file-discovery` plugin's
    /// parameters), when the config gives the pool's endpoints itself.
    pub discovery: Option<FileDiscoveryParams>,
    /// What loading accepted but igw does not act on, and what defaulting added, one
    /// sentence each, for the host to log.
    pub notes: Vec<String>,
}

/// Reads and loads the file at `path`; messages name it.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        origin: origin.clone(),
        error,
    })?;
    from_yaml_str(&text, &origin)
}

/// Loads a configuration from YAML text; `origin` names it in messages (a file name,
/// `--config-text`, …).
pub fn from_yaml_str(text: &str, origin: &str) -> Result<LoadedConfig, ConfigError> {
    if crate::yaml::is_blank(text) {
        return Err(ConfigError::Syntax {
            origin: origin.to_string(),
            message: "the file is empty: an EndpointPickerConfig needs `apiVersion`, `kind` \
                      and `plugins` (leave out --config for GIE's default profile)"
                .into(),
        });
    }
    let spec: EndpointPickerConfig =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            message: crate::yaml::error_text(&e),
        })?;
    assemble::assemble(spec, origin).map_err(|e| e.at_line(text))
}

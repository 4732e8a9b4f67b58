//! InferencePool, `inference.networking.k8s.io/v1` (GIE v1.5 `api/v1`, gie-facts §6.1).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pool of model-server pods and the endpoint picker that routes to them.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "inference.networking.k8s.io",
    version = "v1",
    kind = "InferencePool",
    plural = "inferencepools",
    shortname = "infpool",
    namespaced,
    status = "InferencePoolStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct InferencePoolSpec {
    /// The pods of the pool, in the pool's namespace (a Service-style selector).
    pub selector: LabelSelector,
    /// Each port is an endpoint of every selected pod (`podIP:port`), for
    /// data-parallel ranks; 1 to 8, distinct.
    #[schemars(length(min = 1, max = 8))]
    pub target_ports: Vec<Port>,
    /// `http` (HTTP/1.1, the default) or `kubernetes.io/h2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// The endpoint picker's Service (optional since GIE's June 2026 revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_picker_ref: Option<EndpointPickerRef>,
}

/// Label match only (`matchLabels`, at most 64 entries).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[schemars(length(max = 64))]
    pub match_labels: BTreeMap<String, String>,
}

/// `{number: 8000}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct Port {
    #[schemars(range(min = 1, max = 65535))]
    pub number: i32,
}

/// The endpoint picker a gateway calls for this pool.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPickerRef {
    /// `""` (the core group) by default.
    #[serde(default)]
    pub group: String,
    /// `Service` by default.
    #[serde(default = "service")]
    pub kind: String,
    pub name: String,
    /// The Service port; required when `kind` is Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn service() -> String {
    "Service".to_string()
}

/// What a gateway does when the picker cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum FailureMode {
    FailOpen,
    #[default]
    FailClose,
}

/// What each parent Gateway says of the pool (at most 32 parents).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct InferencePoolStatus {
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub parents: Vec<ParentStatus>,
}

/// One parent's conditions (`Accepted`, `ResolvedRefs`, `Exported`; at most 8).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    pub parent_ref: ParentGatewayReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_name: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
}

/// The Gateway a status entry is about.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ParentGatewayReference {
    /// `gateway.networking.k8s.io` by default.
    #[serde(default = "gateway_group")]
    pub group: String,
    /// `Gateway` by default.
    #[serde(default = "gateway_kind")]
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

fn gateway_group() -> String {
    "gateway.networking.k8s.io".to_string()
}

fn gateway_kind() -> String {
    "Gateway".to_string()
}

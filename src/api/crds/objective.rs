//! InferenceObjective and InferenceModelRewrite (gie-facts §6.2–6.3, llm-d-facts
//! §1.6), the same fields under two API groups: GIE's `inference.networking.x-k8s.io`
//! ([`gie`]) and llm-d's `llm-d.ai` ([`llmd`]), both `v1alpha2`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pool an objective or a rewrite is for, in its own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct PoolObjectReference {
    /// `inference.networking.k8s.io` by default.
    #[serde(default = "pool_group")]
    pub group: String,
    /// `InferencePool` by default.
    #[serde(default = "pool_kind")]
    pub kind: String,
    pub name: String,
}

fn pool_group() -> String {
    "inference.networking.k8s.io".to_string()
}

fn pool_kind() -> String {
    "InferencePool".to_string()
}

/// `status.conditions` (`Accepted`: `Accepted` or `Pending`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ObjectiveStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One rule: requests whose model any `matches` entry names (all when empty) go to
/// one of `targets`, chosen by weight.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ModelRewriteRule {
    #[serde(default)]
    pub matches: Vec<ModelMatch>,
    pub targets: Vec<ModelRewriteTarget>,
}

/// `{model: {type: Exact, value: NAME}}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ModelMatch {
    pub model: ModelMatchValue,
}

/// An exact model name (`Exact` is the only type).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ModelMatchValue {
    #[serde(rename = "type", default = "exact")]
    pub match_type: String,
    pub value: String,
}

fn exact() -> String {
    "Exact".to_string()
}

/// A model to send matching requests to, and its weight (1 to 1,000,000).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRewriteTarget {
    pub model_rewrite: String,
    #[schemars(range(min = 1, max = 1_000_000))]
    pub weight: i32,
}

/// The two kinds under one API group.
macro_rules! objective_kinds {
    ($group:literal) => {
        use kube::CustomResource;
        use schemars::JsonSchema;
        use serde::{Deserialize, Serialize};

        use super::{ModelRewriteRule, ObjectiveStatus, PoolObjectReference};

        /// A request's objective, named by the `x-gateway-inference-objective` header.
        #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
        #[kube(
                                                            group = $group,
                                                            version = "v1alpha2",
                                                            kind = "InferenceObjective",
                                                            plural = "inferenceobjectives",
                                                            namespaced,
                                                            status = "ObjectiveStatus"
                                                        )]
        #[serde(rename_all = "camelCase")]
        pub struct InferenceObjectiveSpec {
            /// Higher is more important; negative is sheddable; unset is 0.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub priority: Option<i32>,
            pub pool_ref: PoolObjectReference,
        }

        /// Weighted renames of the requested model, for canaries and splits.
        #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
        #[kube(
                                                            group = $group,
                                                            version = "v1alpha2",
                                                            kind = "InferenceModelRewrite",
                                                            plural = "inferencemodelrewrites",
                                                            namespaced,
                                                            status = "ObjectiveStatus"
                                                        )]
        #[serde(rename_all = "camelCase")]
        pub struct InferenceModelRewriteSpec {
            pub pool_ref: PoolObjectReference,
            #[serde(default)]
            pub rules: Vec<ModelRewriteRule>,
        }
    };
}

/// GIE's `inference.networking.x-k8s.io/v1alpha2`.
pub mod gie {
    objective_kinds!("inference.networking.x-k8s.io");
}

/// llm-d's `llm-d.ai/v1alpha2`.
pub mod llmd {
    objective_kinds!("llm-d.ai");
}

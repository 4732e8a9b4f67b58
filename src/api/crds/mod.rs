//! The Kubernetes custom resources igw reads, field for field as GIE and llm-d Router
//! define them (gie-facts §6, llm-d-facts §1.6), with kube's derive:
//!
//! - [`InferencePool`], `inference.networking.k8s.io/v1`: which pods serve a model and
//!   which endpoint picker routes to them;
//! - `InferenceObjective` (a request's priority) and `InferenceModelRewrite` (weighted
//!   model renames), each under GIE's `inference.networking.x-k8s.io/v1alpha2` and
//!   llm-d's `llm-d.ai/v1alpha2` ([`gie`] and [`llmd`]); when both are installed,
//!   llm-d's win, as in llm-d Router.
//!
//! [`all`] gives every CRD's manifest; `deploy/crds/` holds them as YAML, kept in step
//! by a test. Data only: no I/O.

mod objective;
mod pool;

pub use objective::{
    ModelMatch, ModelMatchValue, ModelRewriteRule, ModelRewriteTarget, ObjectiveStatus,
    PoolObjectReference, gie, llmd,
};
pub use pool::{
    EndpointPickerRef, FailureMode, InferencePool, InferencePoolSpec, InferencePoolStatus,
    LabelSelector, ParentGatewayReference, ParentStatus, Port,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD igw reads, in a fixed order: its file name under `deploy/crds/`
/// (`<plural>.<group>.yaml`) and its manifest.
pub fn all() -> Vec<(String, CustomResourceDefinition)> {
    let crds = [
        InferencePool::crd(),
        gie::InferenceObjective::crd(),
        gie::InferenceModelRewrite::crd(),
        llmd::InferenceObjective::crd(),
        llmd::InferenceModelRewrite::crd(),
    ];
    crds.into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            (format!("{name}.yaml"), crd)
        })
        .collect()
}

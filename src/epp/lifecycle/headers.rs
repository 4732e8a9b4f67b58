//! The wire names the lifecycle reads and writes: request headers of both generations
//! of the picker (GIE's `x-gateway-*` and llm-d Router's `x-llm-d-*`, llm-d-facts
//! §1.10), and the destination keys of the Endpoint Picker Protocol, which both keep
//! (gie-facts §1.1, §1.4).
//!
//! Where llm-d renamed a header, the new name is listed first and wins when a request
//! carries both; the old one is still read, as llm-d Router reads it.

/// The chosen endpoint(s), `ip:port[,ip:port…]`: a request header and a key under the
/// [`LB_NAMESPACE`] dynamic metadata.
pub const DESTINATION: &str = "x-gateway-destination-endpoint";
/// The endpoint that actually served, `ip:port` (response path, [`LB_NAMESPACE`]).
pub const SERVED: &str = "x-gateway-destination-endpoint-served";
/// The endpoints a request may go to (key under [`SUBSET_NAMESPACE`]).
pub const SUBSET: &str = "x-gateway-destination-endpoint-subset";
/// Envoy's namespace for load-balancer metadata.
pub const LB_NAMESPACE: &str = "envoy.lb";
/// The namespace of the subset hint.
pub const SUBSET_NAMESPACE: &str = "envoy.lb.subset_hint";

/// Request id; generated when absent.
pub const REQUEST_ID: &str = "x-request-id";
/// The InferenceObjective whose priority the request gets.
pub const OBJECTIVE: [&str; 2] = [
    "x-llm-d-inference-objective",
    "x-gateway-inference-objective",
];
/// The flow-control fairness key.
pub const FAIRNESS_ID: [&str; 2] = [
    "x-llm-d-inference-fairness-id",
    "x-gateway-inference-fairness-id",
];
/// Overrides the model the endpoint must serve.
pub const MODEL_REWRITE: [&str; 2] = ["x-llm-d-model-name-rewrite", "x-gateway-model-name-rewrite"];
/// The fairness id of a request that names none (gie-facts §1.3).
pub const DEFAULT_FAIRNESS_ID: &str = "default-flow";
/// Why a request was refused before it reached an endpoint (llm-d-facts §1.5).
pub const DROPPED_REASON: &str = "x-llm-d-request-dropped-reason";

/// The input control headers a client sends to steer the picker (every name of both
/// generations). GIE never re-emits them to the model server (gie-facts §1.3).
pub const CONTROL: [&str; 7] = [
    OBJECTIVE[0],
    OBJECTIVE[1],
    FAIRNESS_ID[0],
    FAIRNESS_ID[1],
    MODEL_REWRITE[0],
    MODEL_REWRITE[1],
    SUBSET,
];

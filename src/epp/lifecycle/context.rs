//! One request as the lifecycle sees it before its body is parsed: what the transport
//! received (method, path, headers, and from Envoy the subset hint) and the picker's
//! controls read out of it (request id, objective, fairness id, model rewrite).
//!
//! Every transport builds one the same way, so a header means the same thing behind
//! Envoy as in the standalone gateway. Pure: no I/O.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, Method};

use super::headers;
use super::subset::SubsetHint;

/// What the picker knows of a request besides its body.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// From `x-request-id`, or generated.
    pub request_id: String,
    pub method: Method,
    /// Path and query, as the client sent them.
    pub path: String,
    /// The request's headers as received.
    pub headers: HeaderMap,
    /// The InferenceObjective named by the request, if any.
    pub objective: Option<String>,
    /// The flow-control fairness key (`default-flow` when the request names none).
    pub fairness_id: String,
    /// The model the endpoint must serve instead of the body's, if the request says.
    pub model_rewrite: Option<String>,
    /// The endpoints the data plane allows (Envoy's subset hint); `None` = all.
    pub subset: Option<SubsetHint>,
}

impl RequestContext {
    /// Reads the picker's controls out of `headers`, both header generations (the
    /// newer name wins); generates a request id from `ids` when the request has none.
    pub fn new(method: Method, path: String, headers: HeaderMap, ids: &RequestIds) -> Self {
        let first = |names: &[&str]| -> Option<String> {
            names.iter().find_map(|name| {
                let value = headers.get(*name)?.to_str().ok()?.trim();
                (!value.is_empty()).then(|| value.to_string())
            })
        };
        let request_id = first(&[headers::REQUEST_ID]).unwrap_or_else(|| ids.next());
        let objective = first(&headers::OBJECTIVE);
        let fairness_id =
            first(&headers::FAIRNESS_ID).unwrap_or_else(|| headers::DEFAULT_FAIRNESS_ID.into());
        let model_rewrite = first(&headers::MODEL_REWRITE);
        RequestContext {
            request_id,
            method,
            path,
            headers,
            objective,
            fairness_id,
            model_rewrite,
            subset: None,
        }
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// Makes request ids for requests that arrive without one: `igw-` and 16 hex digits,
/// unique within the process.
#[derive(Debug, Default)]
pub struct RequestIds {
    next: AtomicU64,
}

impl RequestIds {
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        format!("igw-{n:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(pairs: &[(&'static str, &'static str)]) -> RequestContext {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        RequestContext::new(
            Method::POST,
            "/v1/completions?x=1".into(),
            headers,
            &RequestIds::default(),
        )
    }

    #[test]
    fn reads_both_header_generations_the_newer_first() {
        let c = context(&[
            ("x-gateway-inference-objective", "old"),
            ("x-llm-d-inference-objective", "new"),
            ("x-gateway-model-name-rewrite", "lora-a"),
            ("x-request-id", "r-1"),
        ]);
        assert_eq!(c.objective.as_deref(), Some("new"));
        assert_eq!(c.model_rewrite.as_deref(), Some("lora-a"));
        assert_eq!(c.fairness_id, "default-flow");
        assert_eq!(c.request_id, "r-1");
        assert_eq!(c.path_only(), "/v1/completions");
        let c = context(&[("x-gateway-inference-fairness-id", "tenant-a")]);
        assert_eq!(c.fairness_id, "tenant-a");
        assert_eq!(c.objective, None);
    }

    #[test]
    fn generates_distinct_ids_when_absent() {
        let ids = RequestIds::default();
        let a = RequestContext::new(Method::GET, "/".into(), HeaderMap::new(), &ids);
        let b = RequestContext::new(Method::GET, "/".into(), HeaderMap::new(), &ids);
        assert!(a.request_id.starts_with("igw-"));
        assert_ne!(a.request_id, b.request_id);
    }
}

//! Request-path errors of the endpoint picker and the HTTP status each maps to.
//!
//! Codes and texts follow GIE's EPP (gie-facts §1.5): the response body is
//! `inference error: <Code> - <message>`, so dashboards and clients that match on
//! GIE's errors keep working. Each variant says whose fault it is and whether a retry
//! may help.

/// Why the picker could not route a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EppError {
    /// The client's request is wrong (bad JSON, missing `model`, wrong shape). 400;
    /// retrying the same request cannot help.
    #[error("inference error: BadRequest - {0}")]
    BadRequest(String),
    /// The path is not one the gateway forwards (model servers' admin routes are not
    /// reachable through it). 404; GIE's `NotFound` code.
    #[error("inference error: NotFound - {0}")]
    NotFound(String),
    /// The client did not send its body in time. 408; igw's own code.
    #[error("inference error: RequestTimeout - {0}")]
    RequestTimeout(String),
    /// The gateway is buffering as many request bytes as it may: 503, and a retry
    /// later may succeed. Not a routing refusal, so no dropped reason.
    #[error("inference error: ServiceUnavailable - {0}")]
    Busy(String),
    /// The body is over the configured limit. 413; igw's own code (GIE has no limit).
    #[error("inference error: PayloadTooLarge - {0}")]
    PayloadTooLarge(String),
    /// No endpoint can take the request now (all filtered out, or a sheddable
    /// request while the pool is saturated). 429; a retry later may succeed.
    #[error("inference error: ResourceExhausted - {0}")]
    ResourceExhausted(String),
    /// No candidate matched the request's subset, or every endpoint tried failed.
    /// 503; a retry later may succeed.
    #[error("inference error: ServiceUnavailable - {0}")]
    ServiceUnavailable(String),
    /// The pool has no endpoints, or the picker itself failed. 500.
    #[error("inference error: Internal - {0}")]
    Internal(String),
}

impl EppError {
    /// The HTTP status GIE's EPP answers with.
    pub fn status(&self) -> u16 {
        match self {
            EppError::BadRequest(_) => 400,
            EppError::NotFound(_) => 404,
            EppError::RequestTimeout(_) => 408,
            EppError::Busy(_) => 503,
            EppError::PayloadTooLarge(_) => 413,
            EppError::ResourceExhausted(_) => 429,
            EppError::ServiceUnavailable(_) => 503,
            EppError::Internal(_) => 500,
        }
    }

    /// GIE's code name, used as the `error_code` metric label.
    pub fn code(&self) -> &'static str {
        match self {
            EppError::BadRequest(_) => "BadRequest",
            EppError::NotFound(_) => "NotFound",
            EppError::RequestTimeout(_) => "RequestTimeout",
            EppError::Busy(_) => "ServiceUnavailable",
            EppError::PayloadTooLarge(_) => "PayloadTooLarge",
            EppError::ResourceExhausted(_) => "ResourceExhausted",
            EppError::ServiceUnavailable(_) => "ServiceUnavailable",
            EppError::Internal(_) => "Internal",
        }
    }

    /// No endpoint has metrics fresh enough to route on (GIE's wording, 503).
    pub fn no_fresh_candidates() -> EppError {
        EppError::ServiceUnavailable(
            "failed to find endpoint candidates for serving the request: no endpoint has fresh \
             metrics"
                .into(),
        )
    }

    /// llm-d Router's `x-llm-d-request-dropped-reason` value (llm-d-facts §1.5) for a
    /// request refused before it reached any endpoint; `None` for the client's own
    /// mistakes and for the picker's internal faults.
    pub fn dropped_reason(&self) -> Option<&'static str> {
        match self {
            EppError::ResourceExhausted(_) => Some("rejected-saturated"),
            EppError::ServiceUnavailable(_) => Some("rejected-no-endpoints"),
            EppError::Internal(m) if m.starts_with("no pods") => Some("rejected-no-endpoints"),
            _ => None,
        }
    }

    /// A request body the serving layer refused or cut off, as the client hears it.
    pub fn from_body(e: &crate::serve::BodyError) -> EppError {
        use crate::serve::BodyError as B;
        match e {
            B::TimedOut(_) => EppError::RequestTimeout(e.to_string()),
            B::OverBudget { .. } => EppError::Busy(e.to_string()),
            B::TooLarge { .. } => EppError::PayloadTooLarge(e.to_string()),
            B::Transport(_) => EppError::BadRequest(e.to_string()),
        }
    }

    /// Whether the same request may succeed if sent again later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            EppError::ResourceExhausted(_) | EppError::ServiceUnavailable(_) | EppError::Busy(_)
        )
    }
}

/// `error: cause: cause`, since hyper's top-level errors say little ("client error
/// (Connect)") and the useful part ("Connection refused") is a source.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_codes_match_gie() {
        let cases = [
            (
                EppError::BadRequest("model not found in request body".into()),
                400,
                "inference error: BadRequest - model not found in request body",
            ),
            (
                EppError::ResourceExhausted("system saturated, sheddable request dropped".into()),
                429,
                "inference error: ResourceExhausted - system saturated, sheddable request dropped",
            ),
            (
                EppError::ServiceUnavailable(
                    "failed to find endpoint candidates for serving the request".into(),
                ),
                503,
                "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request",
            ),
            (
                EppError::Internal("no pods available in datastore".into()),
                500,
                "inference error: Internal - no pods available in datastore",
            ),
        ];
        for (err, status, body) in cases {
            assert_eq!(err.status(), status);
            assert_eq!(err.to_string(), body);
        }
        assert!(!EppError::BadRequest(String::new()).retryable());
        assert!(EppError::ResourceExhausted(String::new()).retryable());
    }
}

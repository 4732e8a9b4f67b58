//! Errors as vLLM reports them over HTTP, and the JSON body extractor that turns every
//! bad body into one of them.
//!
//! Every failure a client can cause ends here as `{"error": {"message", "type",
//! "param", "code"}}` with the matching status (sim-facts §2.6); nothing on the
//! request path may panic or fall back to axum's plain-text rejections.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::prompt::{INLINE_BYTES, off_thread};
use crate::api::openai::{ErrorInfo, ErrorResponse};
use crate::serve::{BodyError, body_error};

/// An error response: status, OpenAI error type, message and the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's error class name, e.g. `BadRequestError`.
    pub kind: String,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    /// An error whose type is derived from the status, as the OpenAI clients name them.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind: type_for_status(status).to_string(),
            message: message.into(),
            param: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 413: the body is past `--max-body-bytes`.
    pub fn body_too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request body is larger than the server accepts.",
        )
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    /// Overrides the error type (vLLM uses e.g. `InvalidUserInput` for adapter calls).
    pub fn with_kind(mut self, kind: impl Into<String>) -> ApiError {
        self.kind = kind.into();
        self
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorInfo {
                message: self.message.clone(),
                kind: self.kind.clone(),
                param: self.param.clone(),
                code: self.status.as_u16(),
            },
        }
    }
}

impl From<&BodyError> for ApiError {
    /// A body the serving layer refused or cut off: 408, 503 or 413 with its reason.
    fn from(e: &BodyError) -> ApiError {
        ApiError::new(e.status(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// OpenAI's client error class for `status`.
fn type_for_status(status: StatusCode) -> &'static str {
    crate::api::openai::error_type(status.as_u16())
}

/// A JSON body parsed into `T`. Unlike `axum::Json` it accepts any content type (vLLM
/// parses the body whatever the header says) and rejects with an [`ApiError`]: 413
/// over the body limit, 408 or 503 when the serving layer cut the body off
/// ([`BodyError`]), 400 for malformed JSON or a field of the wrong type, with
/// `param` naming the top-level field when the parser knows it.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if let Some(e) = body_error(&rejection) {
                return ApiError::from(e);
            }
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large()
            } else {
                ApiError::new(status, rejection.body_text())
            }
        })?;
        if bytes.len() <= INLINE_BYTES {
            return parse_json(&bytes).map(ApiJson);
        }
        // Parsing megabytes of JSON takes milliseconds to seconds: not on the runtime.
        off_thread(move || parse_json(&bytes)).await?.map(ApiJson)
    }
}

/// Parses a request body, mapping failures to vLLM-style 400s.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let param = e.path().iter().find_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        let inner = e.inner();
        if inner.is_data() {
            let mut err = ApiError::bad_request(match &param {
                Some(_) => format!("{}: {inner}", e.path()),
                None => inner.to_string(),
            });
            err.param = param;
            err
        } else {
            ApiError::bad_request(format!("The request body is not valid JSON: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::CompletionRequest;

    #[test]
    fn malformed_json_is_a_bad_request_without_param() {
        let e = parse_json::<CompletionRequest>(b"{\"prompt\": ").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.kind, "BadRequestError");
        assert_eq!(e.param, None);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert!(parse_json::<CompletionRequest>(b"{} x").is_err());
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let e =
            parse_json::<CompletionRequest>(br#"{"prompt":"a","max_tokens":"ten"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e = parse_json::<CompletionRequest>(br#"{"prompt":{"a":1}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    #[test]
    fn body_has_vllm_shape() {
        let e = ApiError::not_found("gone").with_param("model");
        let v = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"gone","type":"NotFoundError","param":"model","code":404}})
        );
    }
}

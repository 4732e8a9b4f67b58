//! GIE's `openai-parser`: turn a request path and body into an [`LlmRequest`]
//! (gie-facts §1.5, §1.7, §4.2).
//!
//! The API is chosen by path suffix; the body must be a JSON object with a string
//! `model`; the bytes that prefix affinity hashes are the completion prompt text or the
//! JSON of the chat `messages` as the client sent it. Large fields are borrowed as
//! raw JSON, never built into a tree. The parser reads; it never rewrites the body.
//! Pure: no I/O.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::EppError;
use super::request::{ApiKind, LlmRequest};

/// GIE's text for a body without a usable `model` (gie-facts §1.5).
pub const MODEL_NOT_FOUND: &str = "model not found in request body";

/// The API a path targets, matched by suffix as GIE does; unknown paths are treated
/// as completions (GIE's default path is `/v1/completions`).
pub fn api_from_path(path: &str) -> ApiKind {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    if path.ends_with("/chat/completions") {
        ApiKind::ChatCompletions
    } else if path.ends_with("/completions") {
        ApiKind::Completions
    } else if path.ends_with("/embeddings") {
        ApiKind::Embeddings
    } else if path.ends_with("/responses") {
        ApiKind::Responses
    } else {
        ApiKind::Completions
    }
}

/// Inputs besides the body that shape the parsed request.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta<'a> {
    pub path: &'a str,
    pub request_id: String,
    /// The model-name rewrite header, if present
    /// ([`RequestContext::model_rewrite`](crate::epp::lifecycle::RequestContext::model_rewrite)).
    pub model_rewrite: Option<&'a str>,
}

/// The fields the picker reads, borrowed from the body: large fields (`prompt`,
/// `messages`, `input`) stay raw JSON text, neither copied into a tree nor written out
/// again, so a 200 KB prompt costs one validating scan.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    cache_salt: Option<Value>,
}

/// Parses an OpenAI-style body. Errors carry GIE's texts.
pub fn parse_openai(meta: RequestMeta<'_>, body: &[u8]) -> Result<LlmRequest, EppError> {
    let unmarshal =
        |e: String| EppError::BadRequest(format!("error unmarshaling request bodyMap: {e}"));
    let text = std::str::from_utf8(body).map_err(|e| unmarshal(e.to_string()))?;
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        // Validate first so garbage gets a JSON error, then name the shape.
        serde_json::from_str::<&RawValue>(text).map_err(|e| unmarshal(e.to_string()))?;
        return Err(unmarshal("the body is not a JSON object".into()));
    }
    let probe: Probe<'_> = serde_json::from_str(text).map_err(|e| unmarshal(e.to_string()))?;
    let incoming_model = match probe.model.map(|m| serde_json::from_str::<Value>(m.get())) {
        Some(Ok(Value::String(m))) if !m.is_empty() => m,
        _ => return Err(EppError::BadRequest(MODEL_NOT_FOUND.into())),
    };
    let api = api_from_path(meta.path);
    let prefix_bytes = prefix_bytes(api, &probe)?;
    let target_model = meta
        .model_rewrite
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| incoming_model.clone());
    Ok(LlmRequest {
        request_id: meta.request_id,
        incoming_model,
        target_model,
        api,
        prefix_bytes,
        cache_salt: match probe.cache_salt {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        },
        priority: 0,
        stream: matches!(probe.stream, Some(Value::Bool(true))),
        body_len: body.len(),
    })
}

/// A passthrough request (GIE's `passthrough-parser`): nothing is interpreted, so no
/// model is required and prefix affinity has nothing to hash.
pub fn parse_passthrough(meta: RequestMeta<'_>, body: &[u8]) -> LlmRequest {
    let model = meta.model_rewrite.unwrap_or_default().to_string();
    LlmRequest {
        request_id: meta.request_id,
        incoming_model: model.clone(),
        target_model: model,
        api: ApiKind::Passthrough,
        prefix_bytes: Vec::new(),
        cache_salt: None,
        priority: 0,
        stream: false,
        body_len: body.len(),
    }
}

/// The bytes prefix affinity hashes, after checking the API's required field: a
/// completion prompt's text, otherwise the field's JSON as the client wrote it (the
/// index lives in this process, so byte-compatibility with Go's re-serialisation is
/// not needed; gie-facts §4.3).
fn prefix_bytes(api: ApiKind, probe: &Probe<'_>) -> Result<Vec<u8>, EppError> {
    let missing = |field: &str| {
        EppError::BadRequest(format!(
            "invalid request body: missing required field `{field}`"
        ))
    };
    let raw = |v: &RawValue| v.get().as_bytes().to_vec();
    Ok(match api {
        ApiKind::Completions => {
            let prompt = probe.prompt.ok_or_else(|| missing("prompt"))?;
            match serde_json::from_str::<&str>(prompt.get()) {
                // Borrowing fails on escapes; decode those the slow way.
                Ok(text) => text.as_bytes().to_vec(),
                Err(_) => match serde_json::from_str::<String>(prompt.get()) {
                    Ok(text) => text.into_bytes(),
                    Err(_) => raw(prompt),
                },
            }
        }
        ApiKind::ChatCompletions => {
            let messages = probe.messages.ok_or_else(|| missing("messages"))?;
            let text = messages.get().trim();
            let empty = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
            if !text.starts_with('[') || empty.is_some_and(|inner| inner.trim().is_empty()) {
                return Err(EppError::BadRequest(
                    "invalid request body: `messages` must be a non-empty array".into(),
                ));
            }
            raw(messages)
        }
        ApiKind::Embeddings => raw(probe.input.ok_or_else(|| missing("input"))?),
        ApiKind::Responses => {
            let input = probe.input.ok_or_else(|| missing("input"))?;
            let mut out = b"[".to_vec();
            for (key, value) in [("instructions", probe.instructions), ("tools", probe.tools)] {
                if let Some(v) = value {
                    out.extend_from_slice(format!("{{\"{key}\":").as_bytes());
                    out.extend_from_slice(v.get().as_bytes());
                    out.extend_from_slice(b"},");
                }
            }
            out.extend_from_slice(b"{\"input\":");
            out.extend_from_slice(input.get().as_bytes());
            out.extend_from_slice(b"}]");
            out
        }
        ApiKind::Passthrough => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str, body: &str) -> Result<LlmRequest, EppError> {
        parse_openai(
            RequestMeta {
                path,
                request_id: "r1".into(),
                model_rewrite: None,
            },
            body.as_bytes(),
        )
    }

    #[test]
    fn paths_select_the_api_by_suffix() {
        let cases = [
            ("/v1/chat/completions", ApiKind::ChatCompletions),
            ("/v1/completions", ApiKind::Completions),
            ("/v1/completions?x=1", ApiKind::Completions),
            ("/openai/v1/embeddings", ApiKind::Embeddings),
            ("/v1/responses", ApiKind::Responses),
            ("/anything", ApiKind::Completions),
        ];
        for (path, api) in cases {
            assert_eq!(api_from_path(path), api, "{path}");
        }
    }

    #[test]
    fn completions_hash_the_prompt_text() {
        let r = parse(
            "/v1/completions",
            r#"{"model":"m","prompt":"hello","stream":true}"#,
        )
        .unwrap();
        assert_eq!(r.prefix_bytes, b"hello");
        assert_eq!(
            (r.incoming_model.as_str(), r.target_model.as_str()),
            ("m", "m")
        );
        assert!(r.stream);
        assert_eq!(r.api, ApiKind::Completions);
    }

    #[test]
    fn chat_hashes_the_messages_json_as_sent() {
        let r = parse(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"cache_salt":"s"}"#,
        )
        .unwrap();
        assert_eq!(r.prefix_bytes, br#"[{"role":"user","content":"hi"}]"#);
        assert_eq!(r.cache_salt.as_deref(), Some("s"));
    }

    #[test]
    fn the_rewrite_header_sets_the_target_model() {
        let r = parse_openai(
            RequestMeta {
                path: "/v1/completions",
                request_id: String::new(),
                model_rewrite: Some("sql-lora"),
            },
            br#"{"model":"base","prompt":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.incoming_model.as_str(), r.target_model.as_str()),
            ("base", "sql-lora")
        );
    }

    #[test]
    fn bad_bodies_get_gies_errors() {
        let cases = [
            (
                "/v1/completions",
                "{not json",
                "error unmarshaling request bodyMap",
            ),
            (
                "/v1/completions",
                "[1,2]",
                "error unmarshaling request bodyMap",
            ),
            (
                "/v1/completions",
                r#"{"prompt":"x"}"#,
                "model not found in request body",
            ),
            (
                "/v1/completions",
                r#"{"model":7,"prompt":"x"}"#,
                "model not found in request body",
            ),
            ("/v1/completions", r#"{"model":"m"}"#, "`prompt`"),
            (
                "/v1/chat/completions",
                r#"{"model":"m","messages":[]}"#,
                "`messages`",
            ),
            ("/v1/embeddings", r#"{"model":"m"}"#, "`input`"),
        ];
        for (path, body, needle) in cases {
            let err = parse(path, body).unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
            assert!(err.to_string().contains(needle), "{body}: {err}");
        }
        // Invalid UTF-8 inside a JSON string is a JSON error, not a panic.
        let err = parse_openai(
            RequestMeta::default(),
            b"{\"model\":\"m\",\"prompt\":\"\xff\"}",
        )
        .unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn passthrough_needs_no_model() {
        let r = parse_passthrough(RequestMeta::default(), b"\x00\x01 anything");
        assert_eq!(r.api, ApiKind::Passthrough);
        assert!(r.prefix_bytes.is_empty());
    }
}

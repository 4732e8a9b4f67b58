//! Reading the `model` field out of a request body, as GIE's `body-field-to-header`
//! plugin does (gie-facts §7): only the top level is looked at, the rest of the body is
//! checked for JSON syntax but never copied.
//!
//! Pure: bytes in, a [`ModelField`] out; no allocation beyond the top-level keys and the
//! value found, and no panic on any input.

use std::collections::HashMap;

use serde_json::value::RawValue;

/// The JSON field BBR reads.
pub const MODEL_FIELD: &str = "model";
/// The longest model value put in a header, bytes. Envoy refuses a request whose
/// headers pass 60 KiB, and no model name is anywhere near this long, so a longer value
/// is treated as unusable rather than allowed to fail the request.
pub const MAX_MODEL_HEADER_BYTES: usize = 4096;

/// What a body says about its model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelField {
    /// The value to route on. A string as written; any other JSON value as its compact
    /// JSON text (`7`, `true`, `["a"]`). GIE stringifies with Go's `%v`, which agrees
    /// for strings, integers and booleans.
    Found(String),
    /// A JSON object without a `model` key.
    Missing,
    /// `""` or `null`.
    Empty,
    /// Not a JSON object (not JSON at all, or an array or scalar at the top).
    Unparsable,
    /// A value that cannot be a header value: control characters, or longer than
    /// [`MAX_MODEL_HEADER_BYTES`].
    Unusable,
}

/// Reads [`MODEL_FIELD`] from `body`. A key given twice counts by its last value, as in
/// Go's `json.Unmarshal` into a map.
pub fn model_field(body: &[u8]) -> ModelField {
    let Ok(top) = serde_json::from_slice::<HashMap<String, &RawValue>>(body) else {
        return ModelField::Unparsable;
    };
    let Some(raw) = top.get(MODEL_FIELD) else {
        return ModelField::Missing;
    };
    let text = match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::Null) => return ModelField::Empty,
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        // RawValue already holds valid JSON; this arm only keeps the function total.
        Err(_) => return ModelField::Unparsable,
    };
    if text.is_empty() {
        return ModelField::Empty;
    }
    if text.len() > MAX_MODEL_HEADER_BYTES
        || http::HeaderValue::from_bytes(text.as_bytes()).is_err()
    {
        return ModelField::Unusable;
    }
    ModelField::Found(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, want: ModelField) {
        assert_eq!(model_field(body.as_bytes()), want, "{body}");
    }

    fn found(s: &str) -> ModelField {
        ModelField::Found(s.into())
    }

    #[test]
    fn reads_the_top_level_model() {
        check(r#"{"model":"llama","prompt":"hi"}"#, found("llama"));
        check(
            r#"{"prompt":{"model":"inner"},"model":"outer"}"#,
            found("outer"),
        );
        check(r#"{"model":"a","model":"b"}"#, found("b"));
        check(r#" {"model" : "sp ace\t"} "#, found("sp ace\t"));
        check(r#"{"model":"caf\u00e9"}"#, found("café"));
    }

    #[test]
    fn stringifies_non_strings() {
        check(r#"{"model":7}"#, found("7"));
        check(r#"{"model":1.5}"#, found("1.5"));
        check(r#"{"model":true}"#, found("true"));
        check(r#"{"model":["a",1]}"#, found(r#"["a",1]"#));
        check(r#"{"model":{"k":"v"}}"#, found(r#"{"k":"v"}"#));
    }

    #[test]
    fn missing_empty_and_broken_bodies() {
        check(r#"{"prompt":"hi"}"#, ModelField::Missing);
        check("{}", ModelField::Missing);
        check(r#"{"model":""}"#, ModelField::Empty);
        check(r#"{"model":null}"#, ModelField::Empty);
        check("", ModelField::Unparsable);
        check("not json", ModelField::Unparsable);
        check(r#"{"model":"x""#, ModelField::Unparsable);
        check(r#"{"model":"x"} trailing"#, ModelField::Unparsable);
        check(r#"["model","x"]"#, ModelField::Unparsable);
        check(r#""model""#, ModelField::Unparsable);
        check(r#"{"model":"a\nb"}"#, ModelField::Unusable);
        let long = format!(
            r#"{{"model":"{}"}}"#,
            "m".repeat(MAX_MODEL_HEADER_BYTES + 1)
        );
        check(&long, ModelField::Unusable);
        assert_eq!(model_field(&[0xff, 0xfe, b'{']), ModelField::Unparsable);
    }
}

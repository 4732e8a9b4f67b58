//! The model name inside bodies, as the lifecycle rewrites it: into the request body
//! when a rewrite chose another target model (GIE does this before forwarding), and
//! back in the response body, so the client always reads the model name it sent
//! (gie-facts §1.3: GIE replaces `"model":"<target>"`, with or without a space after
//! the colon, by bytes, not by parsing).
//!
//! Pure: bytes in, bytes out; a body that needs no change is returned as it came.

use bytes::Bytes;

use crate::epp::request::LlmRequest;

/// The request body with `model` set to the request's target model, when a rewrite
/// changed it. Bodies that need no change (or are not a JSON object) go through byte
/// for byte.
pub fn rewrite_model(request: &LlmRequest, body: Bytes) -> Bytes {
    if request.target_model == request.incoming_model {
        return body;
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    if !value.is_object() {
        return body;
    }
    value["model"] = serde_json::Value::String(request.target_model.clone());
    serde_json::to_vec(&value).map(Bytes::from).unwrap_or(body)
}

/// Response bytes with every `"model":"<target>"` (and `"model": "<target>"`) turned
/// back into the model the client sent. Unchanged when the two are the same or the
/// bytes never name the target.
pub fn restore_model(bytes: &[u8], target: &str, incoming: &str) -> Option<Vec<u8>> {
    if target == incoming || target.is_empty() {
        return None;
    }
    let quote = |s: &str| serde_json::to_string(s).ok();
    let (target, incoming) = (quote(target)?, quote(incoming)?);
    let mut out: Option<Vec<u8>> = None;
    for sep in [&b"\"model\":"[..], b"\"model\": "] {
        let mut needle = sep.to_vec();
        needle.extend_from_slice(target.as_bytes());
        let mut with = sep.to_vec();
        with.extend_from_slice(incoming.as_bytes());
        let source = out.as_deref().unwrap_or(bytes);
        if let Some(replaced) = replace_all(source, &needle, &with) {
            out = Some(replaced);
        }
    }
    out
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut at, mut found) = (0, false);
    while let Some(pos) = hay[at..].windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&hay[at..at + pos]);
        out.extend_from_slice(with);
        at += pos + needle.len();
        found = true;
    }
    if !found {
        return None;
    }
    out.extend_from_slice(&hay[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_gets_the_model_name_the_client_sent() {
        let body = br#"{"model":"lora-v2","x":1,"choices":[{"model": "lora-v2"}]}"#;
        let back = restore_model(body, "lora-v2", "public").unwrap();
        assert_eq!(
            back,
            br#"{"model":"public","x":1,"choices":[{"model": "public"}]}"#
        );
        assert_eq!(restore_model(body, "other", "public"), None);
        assert_eq!(restore_model(body, "same", "same"), None);
    }
}

//! Why requests failed, labelled and grouped as inference-perf does it (its
//! `reportgen/base.py`: `make_concise_label`, `build_error_counts`), so the
//! `failures.by_label` of a lifecycle file reads the same from either tool and a
//! script keyed on inference-perf's labels (`"429 - Rate Limit"`, `"Timeout"`, …)
//! works on igw's reports.
//!
//! - An HTTP error is labelled `"<code> - <label>"`: the label comes from the status
//!   code for 429, 500, 502, 503 and 504, else from the message (context window,
//!   invalid JSON, timeout, model not found), else `other`.
//! - Any other failure is `Timeout` or `Connection Error` when its message says so,
//!   else its kind in lower case (`stream error`, `unfinished`).
//! - Under each label: the number of failures and up to [`MAX_MESSAGES`] distinct
//!   messages, labels by descending count.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// Distinct messages kept per label: inference-perf's `max_error_messages` default.
pub const MAX_MESSAGES: usize = 100;

/// What failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The server (or the gateway in front of it) answered with this status.
    Http(u16),
    /// No complete answer within the client's timeout.
    Timeout,
    /// No connection, or the connection broke.
    Connection,
    /// Anything else, named in lower case: `"stream error"`, `"unfinished"`,
    /// `"invalid response"` (a 200 whose body is no event stream).
    Other(&'static str),
}

/// One failed request: what failed and what the server or the client said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The human-readable message: the `error.message` (or `message`) of a JSON error
    /// body, the body itself when it is not JSON, or the client's own words.
    pub message: String,
}

impl Failure {
    /// An HTTP error answer with `body` as the server sent it.
    pub fn http(status: u16, body: &[u8]) -> Failure {
        Failure {
            kind: FailureKind::Http(status),
            message: error_message(&String::from_utf8_lossy(body)),
        }
    }

    pub fn timeout() -> Failure {
        Failure {
            kind: FailureKind::Timeout,
            message: "Request timed out".into(),
        }
    }

    pub fn connection(message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Connection,
            message: message.into(),
        }
    }

    pub fn other(kind: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Other(kind),
            message: message.into(),
        }
    }

    /// inference-perf's concise label for this failure.
    pub fn label(&self) -> String {
        match &self.kind {
            FailureKind::Http(code) => {
                let label = code_label(*code)
                    .or_else(|| first_match(&HTTP_MESSAGE_LABELS, &self.message))
                    .unwrap_or("other");
                format!("{code} - {label}")
            }
            FailureKind::Timeout => "Timeout".into(),
            kind => match first_match(&TRANSPORT_MESSAGE_LABELS, &self.message) {
                Some(label) => label.into(),
                None if *kind == FailureKind::Connection => "Connection Error".into(),
                None => match kind {
                    FailureKind::Other(name) => name.to_lowercase(),
                    _ => unreachable!("HTTP and timeout failures are labelled above"),
                },
            },
        }
    }
}

/// Labels the status code alone decides.
fn code_label(code: u16) -> Option<&'static str> {
    Some(match code {
        429 => "Rate Limit",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

type Patterns = LazyLock<Vec<(Regex, &'static str)>>;

fn patterns(list: &[(&str, &'static str)]) -> Vec<(Regex, &'static str)> {
    list.iter()
        .map(|(p, label)| {
            let re = Regex::new(&format!("(?i){p}")).expect("static pattern is valid");
            (re, *label)
        })
        .collect()
}

/// Labels read from an HTTP error's message, in order, as inference-perf's.
static HTTP_MESSAGE_LABELS: Patterns = LazyLock::new(|| {
    patterns(&[
        (
            r"context.window|context length|maximum context|max.?tokens|token.?limit",
            "Context Window",
        ),
        (
            r"invalid.?json|json.?parse|malformed.?json|unexpected.?token|expecting value|unterminated string|expecting ',' delimiter",
            "Invalid JSON",
        ),
        (r"timeout|timed.?out", "Timeout"),
        (r"model.?not.?found|no such model", "Model Not Found"),
    ])
});

/// Labels read from a non-HTTP failure's message.
static TRANSPORT_MESSAGE_LABELS: Patterns = LazyLock::new(|| {
    patterns(&[
        (r"timeout|timed.?out", "Timeout"),
        (r"connection.?refused|connect", "Connection Error"),
    ])
});

fn first_match(patterns: &Patterns, message: &str) -> Option<&'static str> {
    patterns
        .iter()
        .find(|(re, _)| re.is_match(message))
        .map(|(_, label)| *label)
}

/// The message inside an error body: `error.message` of OpenAI's and vLLM's JSON
/// errors, `message` of the older `{"object": "error", "message": …}` shape, else the
/// body as it is (GIE's gateway answers in plain text).
pub fn error_message(body: &str) -> String {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    let error = match top.get("error") {
        Some(serde_json::Value::Object(inner)) => inner,
        Some(v) if !v.is_null() && v.as_bool() != Some(false) => return body.to_string(),
        _ => &top,
    };
    match error.get("message") {
        Some(serde_json::Value::String(m)) => m.clone(),
        Some(other) => other.to_string(),
        None => body.to_string(),
    }
}

/// Failures grouped by label.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FailureCounts {
    labels: BTreeMap<String, LabelCount>,
}

/// One label's failures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LabelCount {
    /// Every failure with this label, however many messages were kept.
    pub count: u64,
    /// Distinct messages in the order first seen, at most `MAX_MESSAGES` (100).
    pub messages: Vec<FailureMessage>,
}

/// One distinct message (inference-perf adds `session_ids` for session workloads;
/// igw's samples carry none, and inference-perf omits the field when it has none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureMessage {
    pub message: String,
}

impl FailureCounts {
    pub fn add(&mut self, failure: &Failure) {
        let entry = self.labels.entry(failure.label()).or_default();
        entry.count += 1;
        entry.keep(&failure.message);
    }

    /// Adds another set's failures, its messages after this one's.
    pub fn merge(&mut self, other: &FailureCounts) {
        for (label, theirs) in &other.labels {
            let ours = self.labels.entry(label.clone()).or_default();
            ours.count += theirs.count;
            for m in &theirs.messages {
                ours.keep(&m.message);
            }
        }
    }

    /// Failures in all labels.
    pub fn total(&self) -> u64 {
        self.labels.values().map(|l| l.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Labels by descending count (ties in label order), as inference-perf lists them.
    pub fn by_count(&self) -> Vec<(&str, &LabelCount)> {
        let mut labels: Vec<_> = self.labels.iter().map(|(l, c)| (l.as_str(), c)).collect();
        labels.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        labels
    }

    /// The count under `label` (0 if none).
    pub fn count(&self, label: &str) -> u64 {
        self.labels.get(label).map_or(0, |l| l.count)
    }
}

impl LabelCount {
    fn keep(&mut self, message: &str) {
        if self.messages.len() < MAX_MESSAGES && !self.messages.iter().any(|m| m.message == message)
        {
            self.messages.push(FailureMessage {
                message: message.to_string(),
            });
        }
    }
}

/// `{"<label>": {"count": n, "messages": [{"message": …}]}}`, labels by descending
/// count.
impl Serialize for FailureCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let labels = self.by_count();
        let mut map = serializer.serialize_map(Some(labels.len()))?;
        for (label, count) in labels {
            map.serialize_entry(label, count)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_labels_come_from_the_code_then_the_message() {
        let label = |code, body: &str| Failure::http(code, body.as_bytes()).label();
        assert_eq!(
            label(429, "inference error: ResourceExhausted - system saturated"),
            "429 - Rate Limit"
        );
        assert_eq!(label(503, "anything"), "503 - Service Unavailable");
        assert_eq!(label(500, "{}"), "500 - Internal Server Error");
        // The code wins over a misleading message.
        assert_eq!(label(502, "timed out upstream"), "502 - Bad Gateway");
        let vllm = r#"{"error":{"message":"This model's maximum context length is 2048 tokens","type":"BadRequestError","code":400}}"#;
        assert_eq!(label(400, vllm), "400 - Context Window");
        assert_eq!(
            label(
                400,
                r#"{"object":"error","message":"Expecting value: line 1"}"#
            ),
            "400 - Invalid JSON"
        );
        assert_eq!(
            label(
                404,
                r#"{"error":{"message":"The model `x` does not exist; model not found"}}"#
            ),
            "404 - Model Not Found"
        );
        assert_eq!(label(408, "request timeout"), "408 - Timeout");
        assert_eq!(
            label(413, "inference error: PayloadTooLarge - body over 8 MiB"),
            "413 - other"
        );
    }

    #[test]
    fn transport_labels_read_the_message_then_the_kind() {
        assert_eq!(Failure::timeout().label(), "Timeout");
        assert_eq!(
            Failure::connection("connection refused").label(),
            "Connection Error"
        );
        assert_eq!(
            Failure::connection("reset by peer").label(),
            "Connection Error"
        );
        assert_eq!(
            Failure::other("stream error", "bad event").label(),
            "stream error"
        );
        assert_eq!(
            Failure::other("unfinished", "still running").label(),
            "unfinished"
        );
        assert_eq!(
            Failure::other("stream error", "read timed out").label(),
            "Timeout"
        );
    }

    #[test]
    fn messages_are_unwrapped_from_json_error_bodies() {
        assert_eq!(error_message(r#"{"error":{"message":"m1"}}"#), "m1");
        assert_eq!(error_message(r#"{"object":"error","message":"m2"}"#), "m2");
        assert_eq!(error_message("plain text"), "plain text");
        assert_eq!(error_message(r#"{"detail":"x"}"#), r#"{"detail":"x"}"#);
        assert_eq!(error_message(r#"{"error":"flat"}"#), r#"{"error":"flat"}"#);
        assert_eq!(error_message(r#"[1,2]"#), "[1,2]");
    }

    #[test]
    fn counts_group_by_label_keep_distinct_messages_and_sort_by_count() {
        let mut c = FailureCounts::default();
        c.add(&Failure::timeout());
        for i in 0..(MAX_MESSAGES + 5) {
            c.add(&Failure::http(503, format!("busy {i}").as_bytes()));
        }
        c.add(&Failure::http(503, b"busy 0"));
        assert_eq!(c.total(), MAX_MESSAGES as u64 + 7);
        assert_eq!(
            c.count("503 - Service Unavailable"),
            MAX_MESSAGES as u64 + 6
        );
        let json = serde_json::to_value(&c).unwrap();
        let labels: Vec<&String> = json.as_object().unwrap().keys().collect();
        // serde_json's map sorts keys; the order is checked on the text below.
        assert_eq!(labels.len(), 2);
        let text = serde_json::to_string(&c).unwrap();
        assert!(
            text.starts_with(
                r#"{"503 - Service Unavailable":{"count":106,"messages":[{"message":"busy 0"}"#
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                r#""Timeout":{"count":1,"messages":[{"message":"Request timed out"}]}}"#
            ),
            "{text}"
        );
        let busy = &json["503 - Service Unavailable"]["messages"];
        assert_eq!(busy.as_array().unwrap().len(), MAX_MESSAGES);

        let mut merged = FailureCounts::default();
        merged.add(&Failure::timeout());
        merged.merge(&c);
        assert_eq!(merged.count("Timeout"), 2);
        assert_eq!(merged.total(), c.total() + 1);
        let timeouts = &serde_json::to_value(&merged).unwrap()["Timeout"]["messages"];
        assert_eq!(
            timeouts.as_array().unwrap().len(),
            1,
            "one distinct message"
        );
    }
}

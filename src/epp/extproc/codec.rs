//! Pure helpers over Envoy's ext_proc messages (envoy-types): headers in, header
//! mutations, streamed body chunks, immediate responses and `google.protobuf.Struct`
//! metadata out.
//!
//! No I/O and no state: every function maps values to values, so the EPP and BBR share
//! one reading of the wire and test it without a server. Nothing here panics on any
//! input; malformed header names or values are skipped, never trusted.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, Metadata, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, BodyResponse, CommonResponse, HeaderMutation, HeadersResponse, HttpHeaders,
    ImmediateResponse, ProcessingResponse, StreamedBodyResponse, TrailersResponse, body_mutation,
    processing_response,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use http::{HeaderMap, HeaderName, HeaderValue as HttpHeaderValue};

/// Largest body chunk sent back in one streamed response, bytes: GIE's `BodyByteLimit`,
/// chosen because some Envoy builds cap a chunk at 64 KiB (gie-facts §1.3).
pub const BODY_BYTE_LIMIT: usize = 62_000;

// The Endpoint Picker Protocol's names (gie-facts §1.1, §1.4), one definition shared
// with the lifecycle.
pub use crate::epp::lifecycle::headers::{
    DESTINATION as DESTINATION_ENDPOINT, LB_NAMESPACE, SERVED as DESTINATION_SERVED,
    SUBSET as DESTINATION_SUBSET, SUBSET_NAMESPACE as SUBSET_HINT_NAMESPACE,
};

/// Which half of the HTTP exchange a reply belongs to: ext_proc answers a request
/// message with the matching request variant, a response message with the response one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// The headers of a `request_headers` or `response_headers` message as an
/// [`http::HeaderMap`]. `raw_value` is preferred over `value` (Envoy fills one or the
/// other, gie-facts §1.3); names are lower-cased by `HeaderMap`, so lookups are
/// case-insensitive. Pseudo-headers (`:path`, `:method`) are not HTTP header names:
/// read them with [`pseudo_header`]. Entries whose name or value is not valid HTTP are
/// dropped.
pub fn header_map(headers: &HttpHeaders) -> HeaderMap {
    let mut map = HeaderMap::new();
    let Some(list) = &headers.headers else {
        return map;
    };
    for h in &list.headers {
        let Ok(name) = HeaderName::from_bytes(h.key.as_bytes()) else {
            continue;
        };
        let bytes = if h.raw_value.is_empty() {
            h.value.as_bytes()
        } else {
            &h.raw_value
        };
        if let Ok(value) = HttpHeaderValue::from_bytes(bytes) {
            map.append(name, value);
        }
    }
    map
}

/// The value of pseudo-header `name` (for example `:path`), raw bytes preferred.
pub fn pseudo_header<'a>(headers: &'a HttpHeaders, name: &str) -> Option<&'a [u8]> {
    let list = headers.headers.as_ref()?;
    list.headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .map(|h| {
            if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                h.raw_value.as_slice()
            }
        })
}

/// One header to set, overwriting any value the client sent: a routing header that
/// appended to a client's copy would let the client choose its own route.
pub fn set_header(name: &str, value: impl Into<Vec<u8>>) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: String::new(),
            raw_value: value.into(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// What a headers or body reply changes: headers to set and remove, and whether Envoy
/// must recompute the route (needed whenever a set header feeds a route match).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mutation {
    pub set: Vec<HeaderValueOption>,
    pub remove: Vec<String>,
    pub clear_route_cache: bool,
}

impl Mutation {
    /// Sets `name` to `value` (overwriting).
    pub fn set(mut self, name: &str, value: impl Into<Vec<u8>>) -> Mutation {
        self.set.push(set_header(name, value));
        self
    }

    /// Removes `name` before the request goes on.
    pub fn remove(mut self, name: &str) -> Mutation {
        self.remove.push(name.to_string());
        self
    }

    /// Asks Envoy to pick the route again after this reply.
    pub fn clear_route_cache(mut self) -> Mutation {
        self.clear_route_cache = true;
        self
    }

    /// The `CommonResponse` carrying this mutation; no `header_mutation` at all when
    /// nothing is set or removed.
    pub fn into_common(self) -> CommonResponse {
        let header_mutation =
            (!self.set.is_empty() || !self.remove.is_empty()).then_some(HeaderMutation {
                set_headers: self.set,
                remove_headers: self.remove,
            });
        CommonResponse {
            header_mutation,
            clear_route_cache: self.clear_route_cache,
            ..Default::default()
        }
    }
}

/// A headers reply for `direction` carrying `mutation`.
pub fn headers_response(direction: Direction, mutation: Mutation) -> ProcessingResponse {
    let reply = HeadersResponse {
        response: Some(mutation.into_common()),
    };
    ProcessingResponse {
        response: Some(match direction {
            Direction::Request => processing_response::Response::RequestHeaders(reply),
            Direction::Response => processing_response::Response::ResponseHeaders(reply),
        }),
        ..Default::default()
    }
}

/// The empty headers reply: Envoy goes on with the headers unchanged.
pub fn pass_headers(direction: Direction) -> ProcessingResponse {
    headers_response(direction, Mutation::default())
}

/// `body` as streamed chunks of at most [`BODY_BYTE_LIMIT`] bytes. Only the last chunk
/// carries `end_of_stream` (and only when `end_of_stream` is true: a body followed by
/// trailers ends without it); an empty body is still one chunk (gie-facts §1.3).
pub fn body_chunks(body: &[u8], end_of_stream: bool) -> Vec<StreamedBodyResponse> {
    let count = body.len().div_ceil(BODY_BYTE_LIMIT).max(1);
    (0..count)
        .map(|i| {
            let start = (i * BODY_BYTE_LIMIT).min(body.len());
            let end = ((i + 1) * BODY_BYTE_LIMIT).min(body.len());
            StreamedBodyResponse {
                body: body[start..end].to_vec(),
                end_of_stream: end_of_stream && i + 1 == count,
                ..Default::default()
            }
        })
        .collect()
}

/// One body reply for `direction` that sends `chunk` on in FULL_DUPLEX_STREAMED mode.
pub fn body_response(direction: Direction, chunk: StreamedBodyResponse) -> ProcessingResponse {
    let reply = BodyResponse {
        response: Some(CommonResponse {
            body_mutation: Some(BodyMutation {
                mutation: Some(body_mutation::Mutation::StreamedResponse(chunk)),
            }),
            ..Default::default()
        }),
    };
    ProcessingResponse {
        response: Some(match direction {
            Direction::Request => processing_response::Response::RequestBody(reply),
            Direction::Response => processing_response::Response::ResponseBody(reply),
        }),
        ..Default::default()
    }
}

/// `body` as body replies for `direction`, split by [`body_chunks`].
pub fn body_responses(
    direction: Direction,
    body: &[u8],
    end_of_stream: bool,
) -> Vec<ProcessingResponse> {
    body_chunks(body, end_of_stream)
        .into_iter()
        .map(|chunk| body_response(direction, chunk))
        .collect()
}

/// The empty trailers reply for `direction`.
pub fn pass_trailers(direction: Direction) -> ProcessingResponse {
    let reply = TrailersResponse::default();
    ProcessingResponse {
        response: Some(match direction {
            Direction::Request => processing_response::Response::RequestTrailers(reply),
            Direction::Response => processing_response::Response::ResponseTrailers(reply),
        }),
        ..Default::default()
    }
}

/// An immediate HTTP answer to the client: Envoy stops processing and replies with
/// `status`, the plain-text `body` and `headers` (which overwrite Envoy's own).
pub fn immediate_response(status: u16, body: &str, headers: &[(&str, &str)]) -> ProcessingResponse {
    let mutation = headers
        .iter()
        .fold(Mutation::default(), |m, (name, value)| {
            m.set(name, value.as_bytes())
        })
        .into_common()
        .header_mutation;
    ProcessingResponse {
        response: Some(processing_response::Response::ImmediateResponse(
            ImmediateResponse {
                status: Some(HttpStatus {
                    code: i32::from(status),
                }),
                headers: mutation,
                body: body.as_bytes().to_vec(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn string_value(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// `{namespace: {key: value}}` as dynamic metadata.
pub fn metadata_string(namespace: &str, key: &str, value: impl Into<String>) -> Struct {
    let inner = Struct {
        fields: [(key.to_string(), string_value(value))].into(),
    };
    Struct {
        fields: [(
            namespace.to_string(),
            Value {
                kind: Some(Kind::StructValue(inner)),
            },
        )]
        .into(),
    }
}

/// The destination's dynamic metadata, `{"envoy.lb": {"x-gateway-destination-endpoint":
/// "ip:port,ip:port"}}` (gie-facts §1.1). `endpoints` are joined in order, the first
/// being the one Envoy tries first.
pub fn destination_metadata<S: AsRef<str>>(endpoints: &[S]) -> Struct {
    let joined = endpoints
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(",");
    metadata_string(LB_NAMESPACE, DESTINATION_ENDPOINT, joined)
}

/// `{namespace: {key: value}}` as the `metadata_context` Envoy sends with a request
/// (the reader of [`metadata_strings`]): for clients and tests that play Envoy.
pub fn request_metadata(namespace: &str, key: &str, value: Kind) -> Metadata {
    Metadata {
        filter_metadata: [(
            namespace.to_string(),
            Struct {
                fields: [(key.to_string(), Value { kind: Some(value) })].into(),
            },
        )]
        .into(),
        ..Default::default()
    }
}

/// The strings at `namespace`/`key` of the request's `metadata_context`: a list of
/// strings, or one string split at commas (Envoy's header-to-metadata rules produce
/// flat strings, gie-facts §1.6). Items are trimmed; empty items and non-string list
/// elements are skipped. `None` when the namespace or key is absent, so a present but
/// empty list (`Some(vec![])`) stays distinguishable from no hint at all.
pub fn metadata_strings(
    metadata: Option<&Metadata>,
    namespace: &str,
    key: &str,
) -> Option<Vec<String>> {
    let value = metadata?.filter_metadata.get(namespace)?.fields.get(key)?;
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(match &value.kind {
        Some(Kind::StringValue(s)) => split(s),
        Some(Kind::ListValue(ListValue { values })) => values
            .iter()
            .filter_map(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.trim()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    })
}

/// The single string at `namespace`/`key` (for example the served endpoint under
/// `envoy.lb`/[`DESTINATION_SERVED`]); the first item when a list was sent.
pub fn metadata_string_value(
    metadata: Option<&Metadata>,
    namespace: &str,
    key: &str,
) -> Option<String> {
    metadata_strings(metadata, namespace, key)?
        .into_iter()
        .next()
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

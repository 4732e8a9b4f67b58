//! `extproc`: the picker's and BBR's ext_proc stream handlers over arbitrary sequences
//! of Envoy's messages, as a misbehaving or hostile data plane could send them.
//!
//! The input is a list of operations, each a kind byte and its operands (see
//! [`Op::next`]): request and response headers (a path, a few headers from a list
//! that matter to the picker, values from the input, an optional subset hint or served
//! endpoint in the metadata), body chunks of any length, trailers and empty messages,
//! in any order. Each message goes to a fresh [`PickerStream`] and [`BbrStream`]; a
//! stream that answers with `close` gets nothing more, as the real reply stream stops
//! reading. Nothing may panic; every reply carries a response; a stream never books
//! more than one request; and once a stream is dropped, whatever the messages were, no
//! endpoint has anything in flight: the decision and its booking went with the stream.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, HttpTrailers, ProcessingRequest, processing_request,
};
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{ListValue, Value};
use igw::epp::bbr::base_model::BaseModels;
use igw::epp::bbr::metrics::BbrMetrics;
use igw::epp::bbr::stream::{BbrShared, BbrStream};
use igw::epp::clock::ManualClock;
use igw::epp::config::gie_default;
use igw::epp::datastore::ScrapeOutcome;
use igw::epp::endpoint::{Endpoint, EndpointMetrics};
use igw::epp::envoy::{PickerStream, Shared};
use igw::epp::extproc::Step;
use igw::epp::extproc::codec::request_metadata;
use igw::epp::lifecycle::RequestIds;
use igw::epp::lifecycle::outlier::OutlierPolicy;
use igw::epp::pool::{Pool, PoolParts};
use libfuzzer_sys::fuzz_target;

/// The request body cap, bytes: small, so inputs reach the 413 path.
const MAX_BODY: usize = 4096;
/// Messages per input at most: enough for any lifecycle, and each input stays fast.
const MAX_OPS: usize = 64;

const ENDPOINTS: [&str; 3] = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"];

const PATHS: [&str; 8] = [
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/models",
    "/v1/embeddings",
    "/v1/responses",
    "/health",
    "",
    "*",
];

/// Headers the picker or BBR read; the value comes from the input.
const HEADERS: [&str; 8] = [
    "x-gateway-inference-objective",
    "x-gateway-model-name-rewrite",
    "x-request-id",
    "content-type",
    "x-gateway-inference-fairness-id",
    "x-original-path",
    ":method",
    "content-length",
];

/// Bodies worth starting from: the fuzzer mutates inside them.
const BODIES: [&[u8]; 4] = [
    br#"{"model":"food-review","prompt":"hi","max_tokens":4}"#,
    br#"{"model":"food-review-1","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    b"data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n",
    br#"{"model":"food-review","usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
];

fn pool() -> &'static Arc<Pool> {
    static POOL: OnceLock<Arc<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let clock = Arc::new(ManualClock::new(Duration::from_secs(1)));
        let endpoints = ENDPOINTS
            .iter()
            .enumerate()
            .map(|(i, a)| Endpoint {
                name: format!("pod-{i}"),
                address: a.parse::<SocketAddr>().unwrap(),
            })
            .collect();
        let pool = Arc::new(
            Pool::new(PoolParts {
                name: "fuzz".into(),
                endpoints,
                config: gie_default(),
                objectives: Default::default(),
                refresh_interval: Duration::from_millis(50),
                staleness_threshold: Duration::from_secs(2),
                clock,
                seed: 0,
                // Off: the clock never moves, so an ejection would outlive the input
                // that caused it and make every later input depend on it.
                outlier: OutlierPolicy {
                    consecutive_failures: 0,
                    ..OutlierPolicy::default()
                },
            })
            .expect("the pool builds"),
        );
        let now = pool.now();
        let outcomes = pool
            .snapshot()
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, state)| ScrapeOutcome {
                endpoint: state.endpoint.clone(),
                result: Ok(EndpointMetrics {
                    updated_at: now,
                    waiting_queue_size: i as u64,
                    kv_cache_usage: 0.1 * i as f64,
                    active_adapters: vec!["food-review-1".into()],
                    max_active_adapters: 2,
                    ..EndpointMetrics::default()
                }),
                timed_out: false,
            })
            .collect();
        pool.datastore().publish(outcomes, now);
        pool
    })
}

fn picker_shared() -> Arc<Shared> {
    Arc::new(Shared {
        pool: pool().clone(),
        ids: RequestIds::default(),
        max_body_bytes: MAX_BODY,
        ignore_subset: false,
    })
}

fn bbr_shared() -> Arc<BbrShared> {
    static SHARED: OnceLock<Arc<BbrShared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            Arc::new(BbrShared {
                base_models: BaseModels::from_yaml("food-review-1: food-review\n", "map.yaml")
                    .expect("the map loads"),
                metrics: Arc::new(BbrMetrics::new()),
                max_body_bytes: MAX_BODY,
            })
        })
        .clone()
}

/// Reads the input front to back; past its end every read is 0 or empty.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn header_map(pairs: Vec<(String, Vec<u8>)>) -> HeaderMap {
    HeaderMap {
        headers: pairs
            .into_iter()
            .map(|(key, raw_value)| HeaderValue {
                key,
                raw_value,
                ..Default::default()
            })
            .collect(),
    }
}


/// One message from Envoy, built from the input.
struct Op;

impl Op {
    /// The kind byte: bits 0–2 the message, bit 3 end of stream, bits 4–7 operands.
    fn next(input: &mut Input) -> ProcessingRequest {
        use processing_request::Request as R;
        let kind = input.byte();
        let end_of_stream = kind & 0x08 != 0;
        let arg = kind >> 4;
        let mut metadata_context = None;
        let request = match kind & 0x07 {
            0 => {
                let mut pairs = vec![(
                    ":path".to_string(),
                    PATHS[usize::from(arg & 0x07)].as_bytes().to_vec(),
                )];
                for _ in 0..usize::from(input.byte() % 4) {
                    let name = HEADERS[usize::from(input.byte() % 8)];
                    let len = usize::from(input.byte() % 32);
                    pairs.push((name.to_string(), input.bytes(len).to_vec()));
                }
                if arg & 0x08 != 0 {
                    let count = usize::from(input.byte() % 4);
                    let values = (0..count)
                        .map(|_| {
                            let pick = input.byte();
                            let text = match ENDPOINTS.get(usize::from(pick % 4)) {
                                Some(e) => e.to_string(),
                                None => String::from_utf8_lossy(input.bytes(16)).into_owned(),
                            };
                            Value {
                                kind: Some(Kind::StringValue(text)),
                            }
                        })
                        .collect();
                    metadata_context = Some(request_metadata(
                        "envoy.lb.subset_hint",
                        "x-gateway-destination-endpoint-subset",
                        Kind::ListValue(ListValue { values }),
                    ));
                }
                Some(R::RequestHeaders(HttpHeaders {
                    headers: Some(header_map(pairs)),
                    end_of_stream,
                    ..Default::default()
                }))
            }
            1 => Some(R::RequestBody(body(input, arg, end_of_stream))),
            2 => Some(R::RequestTrailers(HttpTrailers::default())),
            3 => {
                let status = [200u16, 200, 400, 429, 500, 503, 0, 999][usize::from(arg & 0x07)];
                let content_type: &[u8] = if arg & 0x08 != 0 {
                    b"text/event-stream"
                } else {
                    b"application/json"
                };
                let pairs = vec![
                    (":status".to_string(), status.to_string().into_bytes()),
                    ("content-type".to_string(), content_type.to_vec()),
                ];
                let served = input.byte();
                if let Some(e) = ENDPOINTS.get(usize::from(served % 4)) {
                    metadata_context = Some(request_metadata(
                        "envoy.lb",
                        "x-gateway-destination-endpoint-served",
                        Kind::StringValue(e.to_string()),
                    ));
                }
                Some(R::ResponseHeaders(HttpHeaders {
                    headers: Some(header_map(pairs)),
                    end_of_stream,
                    ..Default::default()
                }))
            }
            4 => Some(R::ResponseBody(body(input, arg, end_of_stream))),
            5 => Some(R::ResponseTrailers(HttpTrailers::default())),
            _ => None,
        };
        ProcessingRequest {
            request,
            metadata_context,
            ..Default::default()
        }
    }
}

/// A body chunk: one of [`BODIES`] (possibly cut short), or bytes from the input.
fn body(input: &mut Input, arg: u8, end_of_stream: bool) -> HttpBody {
    let len = usize::from(input.byte());
    let body = match BODIES.get(usize::from(arg & 0x07)) {
        Some(b) if arg & 0x08 == 0 => {
            // 0 is the whole body; else its first `len` bytes.
            let cut = if len == 0 { b.len() } else { len.min(b.len()) };
            b[..cut].to_vec()
        }
        _ => input.bytes(len * 32).to_vec(),
    };
    HttpBody {
        body,
        end_of_stream,
        ..Default::default()
    }
}

fn in_flight() -> u64 {
    pool()
        .snapshot()
        .endpoints
        .iter()
        .map(|e| e.load.in_flight())
        .sum()
}

fn check(step: &Step) {
    for reply in &step.replies {
        assert!(
            reply.response.is_some(),
            "a reply without a response: {reply:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut picker = Some(PickerStream::new(picker_shared()));
    let mut bbr = Some(BbrStream::new(bbr_shared()));
    for _ in 0..MAX_OPS {
        if input.is_empty() || (picker.is_none() && bbr.is_none()) {
            break;
        }
        let msg = Op::next(&mut input);
        if let Some(stream) = &mut bbr {
            let step = stream.handle(msg.clone());
            check(&step);
            if step.close {
                bbr = None;
            }
        }
        if let Some(stream) = &mut picker {
            let step = stream.handle(msg);
            check(&step);
            if step.close {
                picker = None;
            }
        }
        assert!(
            in_flight() <= 1,
            "one stream booked {} requests",
            in_flight()
        );
    }
    drop(picker);
    assert_eq!(in_flight(), 0, "a dropped stream left its booking behind");
});

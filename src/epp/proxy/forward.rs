//! One request through the gateway: check the target, read the body, build the
//! context, parse, route, forward, and stream the response back.
//!
//! Forwarding walks the decision's targets in order. A target that fails before any
//! response (no connection, or the connection closed before the response began: a
//! replica that just died, or a pooled connection it had closed) is reported and the
//! request is sent to the next; when every target failed, the pool picks again
//! without them. At most [`GatewayConfig::max_retries`] re-sends, each counted in
//! `igw_epp_request_retries`. Nothing of the response has reached the client at that
//! point, so a re-send loses nothing; once response headers arrive, the request is
//! never sent again.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use super::metered::MeteredBody;
use super::target::origin_form;
use super::{Gateway, error_response, models, target};
use crate::epp::error::{EppError, error_chain};
use crate::epp::lifecycle::body::rewrite_model;
use crate::epp::lifecycle::headers::{DESTINATION, REQUEST_ID, SERVED};
use crate::epp::lifecycle::{Decision, RequestContext, ResponseMeter};
use crate::epp::parser::MODEL_NOT_FOUND;

pub(super) async fn forward(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let gw: &Gateway = &gw;
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && parts.uri.path() == "/v1/models" && origin_form(&parts.uri) {
        return models::list(gw).await;
    }
    let path_and_query = match target::check(&parts.uri, &gw.config.forward_paths) {
        Ok(p) => p,
        Err(err) => {
            gw.pool.reject(None, &err);
            return error_response(&err);
        }
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > gw.config.max_body_bytes as u64) {
        // Refused from its head: nothing of a body that can never fit is read.
        let err = EppError::PayloadTooLarge(format!(
            "request body exceeds {} bytes",
            gw.config.max_body_bytes
        ));
        gw.pool.reject(None, &err);
        return error_response(&err);
    }
    let body = match Limited::new(body, gw.config.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let err = if let Some(refused) = crate::serve::body_error(e.as_ref()) {
                EppError::from_body(refused)
            } else if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                EppError::PayloadTooLarge(format!(
                    "request body exceeds {} bytes",
                    gw.config.max_body_bytes
                ))
            } else {
                EppError::BadRequest(format!("cannot read request body: {e}"))
            };
            gw.pool.reject(None, &err);
            return error_response(&err);
        }
    };
    let ctx = RequestContext::new(parts.method, path_and_query, parts.headers, &gw.ids);
    let request = match gw.pool.parse(&ctx, &body) {
        Ok(r) => r,
        // A body without `model` is what an OpenAI server takes for its one model: a
        // pool that serves one model routes it as GIE's passthrough parser would
        // (the model server fills in its model), any other pool refuses it.
        Err(EppError::BadRequest(m))
            if m == MODEL_NOT_FOUND && gw.pool.single_served_model().is_some() =>
        {
            gw.pool.parse_passthrough(&ctx, &body)
        }
        Err(err) => {
            gw.pool.reject(None, &err);
            return error_response(&err);
        }
    };
    let body = rewrite_model(&request, body);
    let decision = match gw.pool.route(&ctx, request) {
        Ok(d) => d,
        Err(err) => return error_response(&err),
    };
    send(gw, &ctx, decision, body).await
}

/// Sends the request to its targets until one answers; see the module docs.
async fn send(gw: &Gateway, ctx: &RequestContext, mut decision: Decision, body: Bytes) -> Response {
    let mut failures: Vec<String> = Vec::new();
    // Why the last send failed, for the retry metric.
    let mut last_failure = "";
    let max_sends = gw.config.max_retries.saturating_add(1);
    let mut sends = 0;
    let mut index = 0;
    loop {
        if sends == max_sends {
            break;
        }
        if index == decision.targets().len() {
            // Every target failed before responding: pick again without them.
            if let Err(err) = gw.pool.reroute(ctx, &mut decision) {
                let err = EppError::ServiceUnavailable(format!(
                    "every endpoint tried failed before responding ({}) and no other is \
                     routable: {err}",
                    failures.join("; ")
                ));
                return error_response(&err);
            }
            index = 0;
        }
        if sends > 0 {
            gw.pool.retried(last_failure);
        }
        sends += 1;
        let addr = decision.targets()[index].endpoint.address.to_string();
        let upstream = match build_upstream(ctx, &addr, body.clone()) {
            Ok(r) => r,
            Err(e) => {
                let err = EppError::BadRequest(format!("cannot forward request: {e}"));
                decision.fail(&err);
                return error_response(&err);
            }
        };
        decision.reserve(index);
        let result =
            tokio::time::timeout(gw.config.response_timeout, gw.client.request(upstream)).await;
        let resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                let Some(reason) = nothing_received(&e) else {
                    let err = EppError::ServiceUnavailable(format!(
                        "endpoint {addr} failed before responding: {}",
                        error_chain(&e)
                    ));
                    decision.endpoint_timed_out();
                    decision.fail(&err);
                    return error_response(&err);
                };
                let msg = format!("{addr}: {}", error_chain(&e));
                decision.endpoint_failed(index, &msg);
                failures.push(msg);
                last_failure = reason;
                index += 1;
                continue;
            }
            Err(_) => {
                let err = EppError::ServiceUnavailable(format!(
                    "endpoint {addr} sent no response within {:?}",
                    gw.config.response_timeout
                ));
                decision.endpoint_timed_out();
                decision.fail(&err);
                return error_response(&err);
            }
        };
        let (mut resp_parts, incoming) = resp.into_parts();
        let streaming = resp_parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/event-stream"));
        let meter = ResponseMeter::start(decision, resp_parts.status.as_u16(), streaming);
        if let Ok(v) = HeaderValue::from_str(&addr) {
            resp_parts
                .headers
                .insert(HeaderName::from_static(SERVED), v);
        }
        strip_hop_by_hop(&mut resp_parts.headers);
        let body = MeteredBody::new(incoming, meter, gw.config.stall_timeout);
        return Response::from_parts(resp_parts, Body::new(body));
    }
    let err = EppError::ServiceUnavailable(format!(
        "every endpoint tried failed before responding: {}",
        failures.join("; ")
    ));
    decision.fail(&err);
    error_response(&err)
}

/// Why nothing of a request reached a model server, when that is certain enough to
/// send it elsewhere: no connection was made (`connect`), or the connection closed
/// before any response byte (`closed`: the server died, or it had closed the pooled
/// connection). `None` for every other error.
fn nothing_received(e: &hyper_util::client::legacy::Error) -> Option<&'static str> {
    if e.is_connect() {
        return Some("connect");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(h) = cause.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled() || h.is_closed())
        {
            return Some("closed");
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        {
            return Some("closed");
        }
        source = cause.source();
    }
    None
}

/// The request for the endpoint at `addr`. The URL is built from its parts, so a path
/// that cannot be part of one is an error here, never a failed connection.
fn build_upstream(
    ctx: &RequestContext,
    addr: &str,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, axum::http::Error> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(addr)
        .path_and_query(ctx.path.as_str())
        .build()?;
    let mut builder = hyper::Request::builder()
        .method(ctx.method.clone())
        .uri(uri);
    if let Some(h) = builder.headers_mut() {
        for (name, value) in &ctx.headers {
            if !is_hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
                h.append(name.clone(), value.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(addr) {
            h.insert(HeaderName::from_static(DESTINATION), v);
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            h.insert(HeaderName::from_static(REQUEST_ID), v);
        }
    }
    builder.body(Full::new(body))
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

//! A routing decision as the transport carries it out: the ordered targets, and the
//! in-flight load booked on the one the request went to, held until the response ends
//! or is abandoned.
//!
//! The host reserves after the pick ([`Decision::reserve`] before it sends to a
//! target; [`Decision::served`] when the data plane reports that a fallback served
//! instead), so the load is counted on exactly one endpoint at a time, and whatever
//! way the request ends (finished, failed, client gone, transport dropped), the guard
//! goes with the decision: no path can leak load. Each decision reports its end to
//! its director exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::director::{Director, Labels};
use super::outlier::OutlierState;
use crate::epp::endpoint::{Endpoint, EndpointLoad, InFlightGuard};
use crate::epp::error::EppError;
use crate::epp::request::{Completion, LlmRequest};

/// One place a request may go.
#[derive(Clone, Debug)]
pub struct Target {
    pub endpoint: Arc<Endpoint>,
    /// The endpoint's shared load counters.
    pub load: Arc<EndpointLoad>,
    /// Its failure streak, for outlier detection.
    pub outlier: Arc<OutlierState>,
}

/// The booking on the target the request was sent to.
struct Reserved {
    /// Index into the targets.
    target: usize,
    /// When the request was sent there.
    sent_at: Instant,
    _guard: InFlightGuard,
}

/// Where one request goes, and its load while it is there.
pub struct Decision {
    director: Arc<Director>,
    request: Arc<LlmRequest>,
    /// The request's metric label values.
    labels: Labels,
    /// Never empty: the primary first, then fallbacks in order.
    targets: Vec<Target>,
    reserved: Option<Reserved>,
    /// Endpoints this request failed on before any response; a re-pick leaves them out.
    failed: Vec<SocketAddr>,
    /// The response status, once response headers arrived.
    status: Option<u16>,
    ended: bool,
}

impl Decision {
    pub(super) fn new(
        director: Arc<Director>,
        request: Arc<LlmRequest>,
        labels: Labels,
        targets: Vec<Target>,
    ) -> Decision {
        debug_assert!(!targets.is_empty(), "the scheduler never picks nothing");
        Decision {
            director,
            request,
            labels,
            targets,
            reserved: None,
            failed: Vec::new(),
            status: None,
            ended: false,
        }
    }

    /// New targets from a re-pick ([`Director::reroute`]).
    pub(super) fn retarget(&mut self, targets: Vec<Target>) {
        debug_assert!(!targets.is_empty(), "the scheduler never picks nothing");
        self.reserved = None;
        self.targets = targets;
    }

    /// The endpoints this request failed on before any response.
    pub fn failed_addresses(&self) -> &[SocketAddr] {
        &self.failed
    }

    pub fn request(&self) -> &Arc<LlmRequest> {
        &self.request
    }

    /// The primary first, then fallbacks in order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The targets as the Endpoint Picker Protocol writes them: `ip:port,ip:port`.
    pub fn destinations(&self) -> String {
        let mut out = String::new();
        for (i, t) in self.targets.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&t.endpoint.address.to_string());
        }
        out
    }

    /// The request is being sent to target `index` now: its load is booked there (one
    /// request plus its estimated tokens), and released from any target booked before.
    pub fn reserve(&mut self, index: usize) {
        let Some(target) = self.targets.get(index) else {
            return;
        };
        // Release the previous booking first, so the load is never on two endpoints.
        self.reserved = None;
        self.reserved = Some(Reserved {
            target: index,
            sent_at: Instant::now(),
            _guard: target.load.start_request(self.request.estimated_tokens()),
        });
    }

    /// The data plane reports that the endpoint at `addr` served the request (Envoy's
    /// `x-gateway-destination-endpoint-served`): the booking moves there if that is
    /// another of the targets. Returns whether `addr` is one of them.
    pub fn served(&mut self, addr: SocketAddr) -> bool {
        let Some(index) = self.targets.iter().position(|t| t.endpoint.address == addr) else {
            return false;
        };
        if self.reserved.as_ref().is_none_or(|r| r.target != index) {
            let sent_at = self.sent_at();
            self.reserve(index);
            if let (Some(r), Some(at)) = (self.reserved.as_mut(), sent_at) {
                r.sent_at = at;
            }
        }
        true
    }

    /// When the request was sent to the endpoint now booked, if any.
    pub fn sent_at(&self) -> Option<Instant> {
        self.reserved.as_ref().map(|r| r.sent_at)
    }

    /// The endpoint now booked.
    pub fn reserved_endpoint(&self) -> Option<&Arc<Endpoint>> {
        self.reserved
            .as_ref()
            .map(|r| &self.targets[r.target].endpoint)
    }

    /// Sending to target `index` failed before any response (refused, unreachable, or
    /// the connection closed first): its booking is released, the endpoint is
    /// reported, and a re-pick will leave it out.
    pub fn endpoint_failed(&mut self, index: usize, error: &str) {
        if self.reserved.as_ref().is_some_and(|r| r.target == index) {
            self.reserved = None;
        }
        if let Some(target) = self.targets.get(index) {
            self.failed.push(target.endpoint.address);
            self.director.endpoint_failed(target, error);
        }
    }

    /// Response headers arrived with `status`.
    pub fn response_started(&mut self, status: u16) {
        if self.status.is_none() {
            self.status = Some(status);
            let index = self.reserved.as_ref().map_or(0, |r| r.target);
            self.director
                .response_started(&self.labels, &self.targets[index], status);
        }
    }

    /// The booked endpoint never answered in time: a failure for outlier detection.
    pub fn endpoint_timed_out(&self) {
        if let Some(r) = &self.reserved {
            self.director.outlier_failure(&self.targets[r.target]);
        }
    }

    /// The booked endpoint's response broke off after its headers (`reason`, a metric
    /// label): counted, and a failure for outlier detection.
    pub fn broke_off(&self, reason: &str) {
        self.director.response_broken(reason);
        self.endpoint_timed_out();
    }

    /// The response ended (`done.complete`) or was abandoned; releases the booking.
    /// Only the first end counts.
    pub fn finish(&mut self, done: Completion) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let index = self.reserved.as_ref().map_or(0, |r| r.target);
        let endpoint = self.targets[index].endpoint.clone();
        self.reserved = None;
        self.director.completed(
            &self.request,
            &self.labels,
            &endpoint,
            self.status.is_some(),
            &done,
        );
    }

    /// The request could not be delivered after all (every target failed, or none
    /// answered in time): the client gets `error`.
    pub fn fail(&mut self, error: &EppError) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.reserved = None;
        self.director.decision_failed(&self.labels, error);
    }
}

impl Drop for Decision {
    fn drop(&mut self) {
        if !self.ended {
            let elapsed = self.sent_at().map(|t| t.elapsed()).unwrap_or_default();
            self.finish(Completion {
                status: self.status.unwrap_or(0),
                complete: false,
                usage: None,
                first_byte: None,
                elapsed,
                bytes: 0,
            });
        }
    }
}

//! The response side of a decision, whatever carries the bytes: the status and
//! streaming mode from the response headers, each body chunk as it passes (usage
//! sniffed, bytes and first-byte time counted), and one [`Completion`] when the body
//! ends or is abandoned.
//!
//! The standalone gateway feeds it from the upstream body it streams back; the ext_proc
//! server from the response body messages Envoy sends. It never holds bytes back.

use super::decision::Decision;
use super::usage::UsageSniffer;
use crate::epp::request::Completion;

/// Meters one response; owns the decision (and so its in-flight booking) until the
/// response ends.
pub struct ResponseMeter {
    decision: Decision,
    status: u16,
    sniffer: UsageSniffer,
    first_byte: Option<std::time::Duration>,
    bytes: u64,
    done: bool,
}

impl ResponseMeter {
    /// Response headers arrived: `status`, and `streaming` when the content type is
    /// `text/event-stream`.
    pub fn start(mut decision: Decision, status: u16, streaming: bool) -> ResponseMeter {
        decision.response_started(status);
        ResponseMeter {
            decision,
            status,
            sniffer: UsageSniffer::new(streaming),
            first_byte: None,
            bytes: 0,
            done: false,
        }
    }

    /// Whether the response is server-sent events.
    pub fn streaming(&self) -> bool {
        self.sniffer.streaming()
    }

    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// A chunk of the body passed on to the client.
    pub fn chunk(&mut self, data: &[u8]) {
        if self.first_byte.is_none() {
            self.first_byte = Some(self.elapsed());
        }
        self.bytes += data.len() as u64;
        self.sniffer.feed(data);
    }

    /// The model server's body broke off after the headers (`reason`: `upstream` when
    /// it failed, `stall` when it sent nothing in time): counted, and a failure of the
    /// endpoint for outlier detection.
    pub fn broke_off(&self, reason: &str) {
        self.decision.broke_off(reason);
    }

    /// The body ended (`complete`) or was abandoned. Only the first call counts.
    pub fn finish(&mut self, complete: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let done = Completion {
            status: self.status,
            complete,
            usage: self.sniffer.finish(),
            first_byte: self.first_byte,
            elapsed: self.elapsed(),
            bytes: self.bytes,
        };
        self.decision.finish(done);
    }

    fn elapsed(&self) -> std::time::Duration {
        self.decision
            .sent_at()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
}

impl Drop for ResponseMeter {
    fn drop(&mut self) {
        self.finish(false);
    }
}

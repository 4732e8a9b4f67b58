//! What the picker knows about one endpoint: who it is, what it last reported, and
//! the load the picker itself has put on it since.
//!
//! Metrics arrive by scraping and are up to one scrape interval old; [`EndpointLoad`]
//! counts what the picker has done in the meantime (requests in flight, requests sent
//! since the last scrape), so load-aware scorers need not herd onto the endpoint that
//! looked idlest at the last scrape. Requests are also counted in estimated tokens
//! (GIE's `inflight-load-producer`), for `token-load-scorer` and the concurrency
//! detector's tokens mode. Times are [`Duration`]s since a driver-chosen epoch
//! (process start when live, zero in virtual time), never wall-clock reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The identity of one endpoint: one model-server rank on one address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// A stable name (GIE names data-parallel ranks `<pod>-rank-<idx>`).
    pub name: String,
    /// Where requests and scrapes go.
    pub address: SocketAddr,
}

/// The model-server state the picker routes on, mapped from vLLM, SGLang or Triton
/// metric names to one shape (GIE's model-server protocol, gie-facts §2.1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointMetrics {
    /// Requests queued on the server (`vllm:num_requests_waiting`).
    pub waiting_queue_size: u64,
    /// Requests in the running batch (`vllm:num_requests_running`).
    pub running_requests: u64,
    /// Fraction of KV cache in use, 0..=1 (`vllm:kv_cache_usage_perc`).
    pub kv_cache_usage: f64,
    /// LoRA adapters in the running batch (`running_lora_adapters`).
    pub active_adapters: Vec<String>,
    /// LoRA adapters of waiting requests (`waiting_lora_adapters`).
    pub waiting_adapters: Vec<String>,
    /// Adapters the server can run at once (`max_lora`); 0 when unknown.
    pub max_active_adapters: u32,
    /// KV block size in tokens (`vllm:cache_config_info{block_size}`), if reported.
    pub cache_block_size: Option<u32>,
    /// KV capacity in blocks (`vllm:cache_config_info{num_gpu_blocks}`), if reported.
    pub cache_num_blocks: Option<u64>,
    /// The model the server serves under its own name, not as an adapter: the
    /// `model_name` label of its running-requests gauge (vLLM and SGLang label every
    /// metric with it), if reported. A request for it needs no adapter slot.
    pub served_model: Option<Arc<str>>,
    /// When these values were scraped.
    pub updated_at: Duration,
}

/// The picker's own count of what it has sent to an endpoint. Shared between the
/// request path (which updates it) and snapshots (which read it); lock-free.
///
/// "Sent since scrape" must count exactly the requests the current metrics cannot
/// reflect. A scrape that starts at count *n* sees at most the first *n* requests, so
/// the scraper marks *n* when it starts ([`EndpointLoad::scrape_started`]) and the
/// datastore makes that mark the baseline when the scrape's metrics are published
/// ([`EndpointLoad::metrics_refreshed`]). Requests sent while the scrape was in flight
/// stay counted.
#[derive(Debug, Default)]
pub struct EndpointLoad {
    /// Requests forwarded whose response has not finished.
    in_flight: AtomicU64,
    /// The estimated tokens (prompt + expected output) of those requests.
    in_flight_tokens: AtomicU64,
    /// Requests forwarded, ever.
    sent_total: AtomicU64,
    /// `sent_total` when the scrape now in flight started.
    scrape_mark: AtomicU64,
    /// `sent_total` when the scrape behind the current metrics started.
    baseline: AtomicU64,
}

impl EndpointLoad {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The estimated tokens of the requests in flight.
    pub fn in_flight_tokens(&self) -> u64 {
        self.in_flight_tokens.load(Ordering::Relaxed)
    }

    /// Requests sent that the current metrics cannot include yet.
    pub fn sent_since_scrape(&self) -> u64 {
        self.sent_total
            .load(Ordering::Relaxed)
            .saturating_sub(self.baseline.load(Ordering::Relaxed))
    }

    /// Counts a request of an estimated `tokens` ([`LlmRequest::estimated_tokens`])
    /// sent now; the guard un-counts it when dropped (response done, client gone or
    /// error), so no path can leak load.
    ///
    /// [`LlmRequest::estimated_tokens`]: crate::epp::request::LlmRequest::estimated_tokens
    pub fn start_request(self: &Arc<Self>, tokens: u64) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.in_flight_tokens.fetch_add(tokens, Ordering::Relaxed);
        self.sent_total.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            load: self.clone(),
            tokens,
        }
    }

    /// A scrape of this endpoint starts now.
    pub fn scrape_started(&self) {
        let now = self.sent_total.load(Ordering::Relaxed);
        self.scrape_mark.store(now, Ordering::Relaxed);
    }

    /// The metrics of the scrape last started were published: what was sent before it
    /// started is in them. Never moves the baseline backwards.
    pub fn metrics_refreshed(&self) {
        let mark = self.scrape_mark.load(Ordering::Relaxed);
        self.baseline.fetch_max(mark, Ordering::Relaxed);
    }
}

/// Holds one unit of in-flight load on an endpoint until dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    load: Arc<EndpointLoad>,
    /// What this request added to `in_flight_tokens`.
    tokens: u64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.load
            .in_flight_tokens
            .fetch_sub(self.tokens, Ordering::Relaxed);
    }
}

/// One endpoint as the scheduler sees it for one decision: values copied out of the
/// shared state, so the decision is a pure function of this table.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub endpoint: Arc<Endpoint>,
    /// Last scraped metrics; `None` if never scraped successfully.
    pub metrics: Option<EndpointMetrics>,
    /// Requests in flight from this picker.
    pub in_flight: u64,
    /// Their estimated tokens (prompt + expected output).
    pub in_flight_tokens: u64,
    /// Requests sent since `metrics` were scraped.
    pub sent_since_scrape: u64,
}

impl Candidate {
    /// Age of the metrics at `now`; `None` if there are none.
    pub fn metrics_age(&self, now: Duration) -> Option<Duration> {
        self.metrics
            .as_ref()
            .map(|m| now.saturating_sub(m.updated_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_in_flight_until_dropped() {
        let load = Arc::new(EndpointLoad::default());
        let a = load.start_request(100);
        let b = load.start_request(30);
        assert_eq!((load.in_flight(), load.sent_since_scrape()), (2, 2));
        assert_eq!(load.in_flight_tokens(), 130);
        drop(a);
        load.scrape_started();
        load.metrics_refreshed();
        assert_eq!((load.in_flight(), load.sent_since_scrape()), (1, 0));
        assert_eq!(load.in_flight_tokens(), 30, "a's tokens go with a");
        drop(b);
        assert_eq!((load.in_flight(), load.in_flight_tokens()), (0, 0));
    }

    #[test]
    fn requests_sent_during_a_scrape_stay_counted() {
        let load = Arc::new(EndpointLoad::default());
        let _a = load.start_request(1);
        load.scrape_started(); // the scrape can see request a
        let _b = load.start_request(1); // sent while the scrape is in flight
        load.metrics_refreshed();
        assert_eq!(load.sent_since_scrape(), 1, "b is not in the metrics yet");
        // A publish without a new scrape never rewinds the baseline.
        load.metrics_refreshed();
        assert_eq!(load.sent_since_scrape(), 1);
    }
}

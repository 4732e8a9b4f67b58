//! The background task that keeps the datastore current: every
//! `--refresh-metrics-interval` (50 ms, gie-facts §2.2) it GETs each endpoint's
//! `/metrics`, extracts [`EndpointMetrics`] with the engine's [`MetricMapping`], and
//! publishes one new snapshot for the whole round (DESIGN invariant 3).
//!
//! A round waits for its scrapes until the next tick at most: a slow endpoint's scrape
//! keeps running (up to the per-scrape timeout) and is published in a later round, so
//! it never delays everyone else's metrics. An endpoint is not scraped again while its
//! previous scrape is still running. Failures (refused, timeout, non-200, body that
//! yields no metrics) mark the endpoint unhealthy with the error recorded; they are
//! logged once per health change, not every 50 ms.
//!
//! The HTTP client is hyper's pooled client, so connections are reused across rounds.
//! Bodies are capped ([`ScrapeConfig::max_body_bytes`]). Time comes from the [`Clock`]
//! passed in. The task owns no state the request path reads except through the
//! datastore, and it stops when its shutdown future completes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::clock::Clock;
use super::datastore::{Datastore, Health, ScrapeOutcome, Transition};
use super::endpoint::{Endpoint, EndpointMetrics};
use super::error::error_chain;
use super::metric_mapping::{MetricMapping, extract_format};
use super::prom_text::Format;

/// GIE's `--refresh-metrics-interval` default.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_millis(50);
/// How long one scrape may take before it counts as failed: 20 intervals, well under
/// the 2 s staleness threshold so a hung server is reported as such, not as stale.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
/// vLLM's exposition is ~60 KiB; anything far larger is not a model server's metrics.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;
/// GIE's metrics client keeps idle connections this long (gie-facts §2.2).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How and how often to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeConfig {
    /// Time between rounds (`--refresh-metrics-interval`).
    pub interval: Duration,
    /// Budget of one scrape, connect to last body byte.
    pub timeout: Duration,
    /// The metrics path (GIE's `metrics-data-source` `path`).
    pub path: String,
    /// Larger bodies are a failed scrape.
    pub max_body_bytes: usize,
}

impl Default for ScrapeConfig {
    fn default() -> ScrapeConfig {
        ScrapeConfig {
            interval: DEFAULT_REFRESH_INTERVAL,
            timeout: DEFAULT_SCRAPE_TIMEOUT,
            path: "/metrics".to_string(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Scrape outcomes published this round.
    pub published: usize,
    /// Scrapes still running, to be published in a later round.
    pub pending: usize,
    /// Endpoints whose health changed.
    pub transitions: Vec<Transition>,
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Scrapes a [`Datastore`]'s endpoints; see the module docs.
pub struct Scraper {
    datastore: Arc<Datastore>,
    mapping: Arc<MetricMapping>,
    clock: Arc<dyn Clock>,
    config: ScrapeConfig,
    client: HttpClient,
    /// Scrapes started and not yet published, by task.
    running: JoinSet<ScrapeOutcome>,
    running_for: HashMap<Id, Arc<Endpoint>>,
    busy: HashSet<Arc<Endpoint>>,
    rounds: watch::Sender<u64>,
}

impl Scraper {
    pub fn new(
        datastore: Arc<Datastore>,
        mapping: Arc<MetricMapping>,
        clock: Arc<dyn Clock>,
        config: ScrapeConfig,
    ) -> Scraper {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(2)
            .build(connector);
        Scraper {
            datastore,
            mapping,
            clock,
            config,
            client,
            running: JoinSet::new(),
            running_for: HashMap::new(),
            busy: HashSet::new(),
            rounds: watch::Sender::new(0),
        }
    }

    /// Counts completed rounds; lets a caller wait for the first one (readiness).
    pub fn subscribe_rounds(&self) -> watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// Runs rounds every interval until `shutdown` completes, then stops the scrapes
    /// still running.
    pub async fn run<F: Future<Output = ()>>(mut self, shutdown: F) {
        let mut ticker = tokio::time::interval(self.config.interval);
        // After a slow round, wait a full interval rather than bursting to catch up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = self.scrape_once() => {}
            }
        }
        self.running.abort_all();
    }

    /// One round: start a scrape for every endpoint not already being scraped, wait for
    /// them until one interval has passed, publish what finished as one snapshot and
    /// log health changes.
    pub async fn scrape_once(&mut self) -> RoundReport {
        let deadline = Instant::now() + self.config.interval;
        let snapshot = self.datastore.snapshot();
        for state in &snapshot.endpoints {
            if self.busy.contains(&state.endpoint) {
                continue;
            }
            // What this scrape can reflect; the publish makes it the load baseline.
            state.load.scrape_started();
            let job = ScrapeJob {
                client: self.client.clone(),
                endpoint: state.endpoint.clone(),
                mapping: self.mapping.clone(),
                clock: self.clock.clone(),
                path: self.config.path.clone(),
                timeout: self.config.timeout,
                max_body_bytes: self.config.max_body_bytes,
            };
            let handle = self.running.spawn(job.run());
            self.running_for.insert(handle.id(), state.endpoint.clone());
            self.busy.insert(state.endpoint.clone());
        }
        drop(snapshot);

        let mut outcomes = Vec::new();
        let collect = async {
            while let Some(joined) = self.running.join_next_with_id().await {
                let id = match &joined {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                if let Some(endpoint) = self.running_for.remove(&id) {
                    self.busy.remove(&endpoint);
                }
                // A scrape task cannot panic; if one were aborted, its endpoint is
                // simply scraped again next round.
                if let Ok((_, outcome)) = joined {
                    outcomes.push(outcome);
                }
            }
        };
        // `join_next_with_id` is cancel-safe: unfinished scrapes stay in the set.
        let _ = tokio::time::timeout_at(deadline, collect).await;

        let published = outcomes.len();
        let transitions = self.datastore.publish(outcomes, self.clock.now());
        for t in &transitions {
            log_transition(t);
        }
        self.rounds.send_modify(|n| *n += 1);
        RoundReport {
            published,
            pending: self.running.len(),
            transitions,
        }
    }
}

fn log_transition(t: &Transition) {
    let name = &t.endpoint.name;
    let address = t.endpoint.address;
    match t.to {
        Health::Unhealthy => tracing::warn!(
            endpoint = %name,
            %address,
            error = t.error.as_deref().unwrap_or(""),
            "endpoint unhealthy: not routing to it until its metrics return"
        ),
        Health::Healthy => tracing::info!(endpoint = %name, %address, "endpoint healthy"),
        Health::Pending => {}
    }
}

/// Everything one scrape needs, moved into its task.
struct ScrapeJob {
    client: HttpClient,
    endpoint: Arc<Endpoint>,
    mapping: Arc<MetricMapping>,
    clock: Arc<dyn Clock>,
    path: String,
    timeout: Duration,
    max_body_bytes: usize,
}

impl ScrapeJob {
    async fn run(self) -> ScrapeOutcome {
        let (result, timed_out) = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Err(_) => (
                Err(format!("scrape timed out after {:?}", self.timeout)),
                true,
            ),
            Ok(result) => (result, false),
        };
        ScrapeOutcome {
            endpoint: self.endpoint,
            result,
            timed_out,
        }
    }

    async fn fetch(&self) -> Result<EndpointMetrics, String> {
        let uri: Uri = format!("http://{}{}", self.endpoint.address, self.path)
            .parse()
            .map_err(|e| format!("bad metrics URL: {e}"))?;
        let request = Request::get(uri.clone())
            .header(ACCEPT, "text/plain;version=0.0.4;q=1,*/*;q=0.1")
            .body(Empty::new())
            .map_err(|e| format!("GET {uri}: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("GET {uri}: {}", error_chain(&e)))?;
        if response.status() != StatusCode::OK {
            return Err(format!("GET {uri}: HTTP {}", response.status()));
        }
        let format = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(Format::Prometheus, Format::from_content_type);
        let body = Limited::new(response.into_body(), self.max_body_bytes)
            .collect()
            .await
            .map_err(|e| format!("GET {uri}: reading the body: {}", error_chain(e.as_ref())))?
            .to_bytes();
        // Invalid UTF-8 spoils only the lines it is on.
        let text = String::from_utf8_lossy(&body);
        extract_format(&text, format, &self.mapping, self.clock.now())
            .map_err(|e| format!("GET {uri}: {e}"))
    }
}

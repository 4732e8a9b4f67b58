//! One inference pool as the picker runs it: its datastore (endpoints, their metrics
//! and load), the scraper that keeps it current, the director that routes its
//! requests, and the metric mapping and parser its configuration chose. Every
//! transport and every discovery source talks to a pool through this one value.
//!
//! Built from a [`PoolParts`]; [`Pool::set_endpoints`] is the seam every discovery
//! source calls, and it also tells the scheduler's plugins which endpoints left (the
//! prefix index forgets them). No I/O here: the host spawns [`Pool::scraper`].

use std::sync::Arc;
use std::time::Duration;

use super::clock::Clock;
use super::config::objectives::Objectives;
use super::config::{LoadedConfig, ParserKind};
use super::datastore::{Datastore, PoolSnapshot};
use super::endpoint::Endpoint;
use super::error::EppError;
use super::lifecycle::explain::Explanation;
use super::lifecycle::outlier::OutlierPolicy;
use super::lifecycle::{Decision, DecisionCore, Director, DirectorParts, RequestContext};
use super::metric_mapping::{DEFAULT_ENGINE, EngineMappings, MetricMapping, SpecError};
use super::metrics::{EppMetrics, PoolStats};
use super::parser::{RequestMeta, parse_openai, parse_passthrough};
use super::request::LlmRequest;
use super::scrape::{ScrapeConfig, Scraper};

/// What a pool is made of.
pub struct PoolParts {
    /// The pool's name (labels `inference_pool_*` metrics).
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    /// The EndpointPickerConfig: scheduler, saturation detector, data layer, parser.
    pub config: LoadedConfig,
    pub objectives: Objectives,
    /// How often each endpoint's metrics are scraped (`--refresh-metrics-interval`).
    pub refresh_interval: Duration,
    /// Metrics older than this make an endpoint unhealthy.
    pub staleness_threshold: Duration,
    pub clock: Arc<dyn Clock>,
    /// Seeds the picker's random tie-breaks.
    pub seed: u64,
    /// When failing endpoints are taken out of rotation.
    pub outlier: OutlierPolicy,
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{origin}: core-metrics-extractor engineConfigs: {error}")]
    MetricMapping { origin: String, error: SpecError },
}

/// A running pool's state; see the module docs.
pub struct Pool {
    name: String,
    datastore: Arc<Datastore>,
    director: Arc<Director>,
    mapping: Arc<MetricMapping>,
    scrape: ScrapeConfig,
    parser: ParserKind,
    clock: Arc<dyn Clock>,
}

impl Pool {
    pub fn new(parts: PoolParts) -> Result<Pool, PoolError> {
        let config = parts.config;
        let (mapping, path) = metric_mapping(&config)?;
        let parser = config.parser;
        let datastore = Arc::new(Datastore::new(
            &parts.name,
            parts.endpoints,
            parts.staleness_threshold,
        ));
        let director = Arc::new(Director::new(DirectorParts {
            datastore: datastore.clone(),
            core: DecisionCore::from_config(config),
            objectives: parts.objectives,
            metrics: Arc::new(EppMetrics::new(&parts.name)),
            clock: parts.clock.clone(),
            seed: parts.seed,
            outlier: parts.outlier,
        }));
        Ok(Pool {
            name: parts.name,
            datastore,
            director,
            mapping,
            scrape: ScrapeConfig {
                interval: parts.refresh_interval,
                path,
                ..ScrapeConfig::default()
            },
            parser,
            clock: parts.clock,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task that keeps the datastore current; the host runs it.
    pub fn scraper(&self) -> Scraper {
        Scraper::new(
            self.datastore.clone(),
            self.mapping.clone(),
            self.clock.clone(),
            self.scrape.clone(),
        )
    }

    /// What the pool would decide for `request`, and why; nothing sent or booked.
    pub fn explain(&self, ctx: &RequestContext, request: LlmRequest) -> Explanation {
        self.director.explain(ctx, request)
    }

    /// Replaces the pool's endpoints (discovery). Endpoints that stay keep their
    /// state; the scheduler's plugins forget those that left.
    pub fn set_endpoints(&self, endpoints: Vec<Endpoint>) {
        for gone in self.datastore.set_endpoints(endpoints) {
            self.director
                .core()
                .scheduler
                .on_endpoint_removed(&gone.name);
        }
    }

    /// Parses a request body with the pool's parser (GIE's `openai-parser` or
    /// `passthrough-parser`). A request without a body has nothing to parse and is
    /// routed like a passthrough request, as GIE routes header-only requests.
    pub fn parse(&self, ctx: &RequestContext, body: &[u8]) -> Result<LlmRequest, EppError> {
        if self.parser == ParserKind::Passthrough || body.is_empty() {
            Ok(self.parse_passthrough(ctx, body))
        } else {
            parse_openai(meta(ctx), body)
        }
    }

    /// The one model every endpoint reports serving, if they agree on one (adapters
    /// aside); `None` while any endpoint has not reported or two differ.
    pub fn single_served_model(&self) -> Option<Arc<str>> {
        let snap = self.datastore.snapshot();
        let mut models = snap
            .endpoints
            .iter()
            .map(|e| e.metrics.as_ref().and_then(|m| m.served_model.clone()));
        let first = models.next()??;
        models
            .all(|m| m.as_deref() == Some(&*first))
            .then_some(first)
    }

    /// `body` routed without being read (GIE's `passthrough-parser`).
    pub fn parse_passthrough(&self, ctx: &RequestContext, body: &[u8]) -> LlmRequest {
        parse_passthrough(meta(ctx), body)
    }

    /// Chooses where `request` goes; a refusal is already counted in the metrics.
    pub fn route(&self, ctx: &RequestContext, request: LlmRequest) -> Result<Decision, EppError> {
        self.director.route(ctx, request)
    }

    /// New targets for a decision whose targets all failed before any response,
    /// without them. On an error the decision has failed with it.
    pub fn reroute(&self, ctx: &RequestContext, decision: &mut Decision) -> Result<(), EppError> {
        self.director.reroute(ctx, decision)
    }

    /// Counts a request sent again after failing before any response (`reason`:
    /// `connect` or `closed`).
    pub fn retried(&self, reason: &str) {
        self.director.retried(reason);
    }

    /// Counts a request refused before routing (`request` is `None` when it could
    /// not be parsed).
    pub fn reject(&self, request: Option<&LlmRequest>, error: &EppError) {
        self.director.rejected(request, error);
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<PoolSnapshot> {
        self.datastore.snapshot()
    }

    pub fn datastore(&self) -> &Arc<Datastore> {
        &self.datastore
    }

    /// Every endpoint of the pool, whatever its health.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.director.endpoints()
    }

    /// Pool-level figures from the current snapshot (`inference_pool_*`).
    pub fn pool_stats(&self) -> PoolStats {
        self.director.pool_stats()
    }

    pub fn metrics(&self) -> &Arc<EppMetrics> {
        self.director.metrics()
    }

    /// The pool's clock now (what metric ages are measured against).
    pub fn now(&self) -> Duration {
        self.clock.now()
    }
}

/// What the parsers take from the context besides the body.
fn meta(ctx: &RequestContext) -> RequestMeta<'_> {
    RequestMeta {
        path: ctx.path_only(),
        request_id: ctx.request_id.clone(),
        model_rewrite: ctx.model_rewrite.as_deref(),
    }
}

/// The metric names to read and the path to scrape, from the config's data layer
/// (GIE's defaults when it has none).
fn metric_mapping(config: &LoadedConfig) -> Result<(Arc<MetricMapping>, String), PoolError> {
    let source = config.data_layer.first();
    let path = source
        .map(|s| s.params.path.clone())
        .unwrap_or_else(|| "/metrics".into());
    let extractor = source.and_then(|s| s.extractors.first().map(|(_, p)| p.clone()));
    let (entries, default_engine) = match &extractor {
        Some(p) => (p.engine_configs.clone(), p.default_engine.clone()),
        None => (Vec::new(), DEFAULT_ENGINE.to_string()),
    };
    let mappings = EngineMappings::new(&entries, &default_engine).map_err(|error| {
        PoolError::MetricMapping {
            origin: config.origin.clone(),
            error,
        }
    })?;
    // A static pool carries no engine labels: every endpoint uses the default engine.
    Ok((mappings.get(None).clone(), path))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::epp::clock::ManualClock;
    use crate::epp::config::gie_default;
    use crate::epp::endpoint::Candidate;
    use crate::epp::scheduler::plugins::NoParams;
    use crate::epp::scheduler::plugins::single_profile::SingleProfileHandler;
    use crate::epp::scheduler::{
        Picker, Plugin, Scheduler, SchedulingContext, SchedulingProfile, Scored,
    };

    /// Picks the first candidate; remembers which endpoints it was told left.
    #[derive(Default)]
    struct Forgetful {
        removed: Mutex<Vec<String>>,
    }

    impl Plugin for Forgetful {
        fn on_endpoint_removed(&self, name: &str) {
            self.removed.lock().unwrap().push(name.to_string());
        }
    }

    impl Picker for Forgetful {
        fn pick(
            &self,
            _: &[Candidate],
            scored: &mut [Scored],
            _: &mut SchedulingContext<'_>,
            picked: &mut Vec<usize>,
        ) {
            picked.push(scored[0].index);
        }
    }

    fn endpoint(i: u16) -> Endpoint {
        Endpoint {
            name: format!("e{i}"),
            address: ([10, 0, 0, 1], 8000 + i).into(),
        }
    }

    #[test]
    fn set_endpoints_tells_the_plugins_who_left() {
        let plugin = Arc::new(Forgetful::default());
        let mut config = gie_default();
        config.scheduler = Scheduler::new(
            Arc::new(SingleProfileHandler::new(NoParams {})),
            vec![SchedulingProfile::new("p", plugin.clone())],
        );
        let pool = Pool::new(PoolParts {
            name: "p".into(),
            endpoints: vec![endpoint(1), endpoint(2), endpoint(3)],
            config,
            objectives: Objectives::default(),
            refresh_interval: Duration::from_millis(50),
            staleness_threshold: Duration::from_secs(2),
            clock: Arc::new(ManualClock::default()),
            seed: 0,
            outlier: OutlierPolicy::default(),
        })
        .unwrap();
        let kept = pool.snapshot().get("e2").unwrap().load.clone();
        pool.set_endpoints(vec![endpoint(2), endpoint(4)]);
        assert_eq!(*plugin.removed.lock().unwrap(), vec!["e1", "e3"]);
        let names: Vec<String> = pool.endpoints().iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, vec!["e2", "e4"]);
        assert!(
            Arc::ptr_eq(&kept, &pool.snapshot().get("e2").unwrap().load),
            "an endpoint that stays keeps its load counters"
        );
    }
}

//! The one factory: plugin `type` + `parameters` → a built plugin. Each type's
//! parameters decode into its typed, `deny_unknown_fields` struct and pass its
//! `validate()`; a missing or `null` `parameters` means the defaults.
//!
//! GIE types that are not scheduling plugins (data sources, parsers, flow-control
//! policies, the prefix producer) are accepted so that GIE users' files load; the
//! loader keeps their typed parameters for the host or notes that igw ignores them.
//! GIE types igw does not implement are refused with the reason.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::host::{CoreMetricsParams, FileDiscoveryParams, MetricsSourceParams, ParserKind};
use crate::epp::saturation::Detector as SaturationDetector;
use crate::epp::scheduler::plugins::concurrency::{self, ConcurrencyDetector};
use crate::epp::scheduler::plugins::inflight_load::{self, InflightLoadScorer};
use crate::epp::scheduler::plugins::kv_cache::{self, KvCacheScorer};
use crate::epp::scheduler::plugins::least_request::{self, LeastRequestPicker};
use crate::epp::scheduler::plugins::load_aware_prefix::{self, LoadAwarePrefixScorer};
use crate::epp::scheduler::plugins::lora_affinity::{self, LoraAffinityScorer};
use crate::epp::scheduler::plugins::max_score::{self, MaxScorePicker};
use crate::epp::scheduler::plugins::prefix_cache::{self, PrefixCacheScorer};
use crate::epp::scheduler::plugins::queue::{self, QueueScorer};
use crate::epp::scheduler::plugins::random::{self, RandomPicker};
use crate::epp::scheduler::plugins::round_robin::{self, RoundRobinPicker};
use crate::epp::scheduler::plugins::running_requests::{self, RunningRequestsScorer};
use crate::epp::scheduler::plugins::single_profile::{self, SingleProfileHandler};
use crate::epp::scheduler::plugins::token_load::{self, TokenLoadScorer};
use crate::epp::scheduler::plugins::utilization::{self, UtilizationDetector};
use crate::epp::scheduler::plugins::weighted_random::{self, WeightedRandomPicker};
use crate::epp::scheduler::plugins::weighted_round_robin::{self, WeightedRoundRobinPicker};
use crate::epp::scheduler::plugins::{NoParams, ParamError, Params};
use crate::epp::scheduler::prefix::PrefixParams;
use crate::epp::scheduler::{Filter, Picker, ProfileHandler, Scorer};

pub const METRICS_DATA_SOURCE: &str = "metrics-data-source";
pub const FILE_DISCOVERY: &str = "file-discovery";
pub const CORE_METRICS_EXTRACTOR: &str = "core-metrics-extractor";
pub const OPENAI_PARSER: &str = "openai-parser";
pub const PASSTHROUGH_PARSER: &str = "passthrough-parser";
pub const PREFIX_PRODUCER: &str = "approx-prefix-cache-producer";

/// GIE's flow-control policies (gie-facts §3.4): accepted, not used by igw's scheduler.
const FLOW_CONTROL_POLICIES: [&str; 6] = [
    "global-strict-fairness-policy",
    "round-robin-fairness-policy",
    "fcfs-ordering-policy",
    "edf-ordering-policy",
    "slo-deadline-ordering-policy",
    "static-usage-limit-policy",
];

/// Other GIE data-layer and request-control types igw accepts and ignores.
const IGNORED: [(&str, &str); 3] = [
    (
        "inflight-load-producer",
        "igw counts in-flight requests and their estimated tokens itself",
    ),
    (
        "k8s-notification-source",
        "igw's discovery watches endpoints itself",
    ),
    (
        "endpoint-notification-source",
        "igw's discovery watches endpoints itself",
    ),
];

/// GIE (and llm-d) types igw refuses, with the reason.
const UNSUPPORTED: [(&str, &str); 12] = [
    ("vllmgrpc-parser", "igw parses OpenAI HTTP bodies only"),
    (
        "request-attribute-reporter",
        "igw does not evaluate CEL expressions",
    ),
    (
        "predicted-latency-scorer",
        "latency prediction is not implemented",
    ),
    (
        "predicted-latency-producer",
        "latency prediction is not implemented",
    ),
    (
        "latency-slo-admitter",
        "latency prediction is not implemented",
    ),
    ("latency-scorer", "latency prediction is not implemented"),
    (
        "prefix-cache-affinity-filter",
        "latency prediction is not implemented",
    ),
    (
        "slo-headroom-tier-filter",
        "latency prediction is not implemented",
    ),
    (
        "header-based-testing-filter",
        "it is a GIE conformance-test plugin",
    ),
    (
        "destination-endpoint-served-verifier",
        "it is a GIE conformance-test plugin",
    ),
    (
        "precise-prefix-cache-scorer",
        "it is an llm-d plugin that needs KV events",
    ),
    (
        "pd-profile-handler",
        "prefill/decode disaggregation is an llm-d feature",
    ),
];

/// Every type the factory builds or accepts, for "did you mean" hints.
pub fn known_types() -> Vec<&'static str> {
    let mut all = vec![
        queue::TYPE,
        kv_cache::TYPE,
        running_requests::TYPE,
        lora_affinity::TYPE,
        prefix_cache::TYPE,
        max_score::TYPE,
        random::TYPE,
        weighted_random::TYPE,
        single_profile::TYPE,
        utilization::TYPE,
        concurrency::TYPE,
        round_robin::TYPE,
        least_request::TYPE,
        weighted_round_robin::TYPE,
        load_aware_prefix::TYPE,
        inflight_load::TYPE,
        token_load::TYPE,
        METRICS_DATA_SOURCE,
        CORE_METRICS_EXTRACTOR,
        OPENAI_PARSER,
        PASSTHROUGH_PARSER,
        PREFIX_PRODUCER,
    ];
    all.extend(FLOW_CONTROL_POLICIES);
    all.extend(IGNORED.iter().map(|(t, _)| *t));
    all
}

/// A built plugin, by the role the loader gives it.
pub enum Built {
    Filter(Arc<dyn Filter>),
    Scorer(Arc<dyn Scorer>),
    Picker(Arc<dyn Picker>),
    Handler(Arc<dyn ProfileHandler>),
    /// `utilization-detector`, `concurrency-detector`: a Filter in profiles, and the
    /// saturation detector.
    Detector(SaturationDetector),
    Host(HostPlugin),
}

/// A plugin the host acts on (or that igw ignores), not the scheduler.
pub enum HostPlugin {
    MetricsSource(MetricsSourceParams),
    MetricsExtractor(CoreMetricsParams),
    Parser(ParserKind),
    /// llm-d's endpoints file (`dataLayer.discovery` names it).
    FileDiscovery(FileDiscoveryParams),
    /// Accepted for compatibility; the text says why it has no effect.
    Ignored(&'static str),
}

/// Why a plugin could not be built.
pub enum BuildError {
    UnknownType,
    Unsupported(&'static str),
    /// The field is a path from the plugin spec (`parameters.…`).
    Param(ParamError),
}

/// Decodes and validates `parameters` as `T`; absent or null means `T::default()`.
fn params<T: DeserializeOwned + Default + Params>(p: Option<&Value>) -> Result<T, BuildError> {
    let value = match p {
        None | Some(Value::Null) => T::default(),
        Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "parameters".to_string()
            } else {
                format!("parameters.{path}")
            };
            BuildError::Param(ParamError::new(field, e.into_inner().to_string()))
        })?,
    };
    value.validate().map_err(|e| {
        BuildError::Param(ParamError::new(
            format!("parameters.{}", e.field),
            e.message,
        ))
    })?;
    Ok(value)
}

/// Builds the plugin of `type_name` from its `parameters`.
pub fn build(type_name: &str, p: Option<&Value>) -> Result<Built, BuildError> {
    use Built::*;
    Ok(match type_name {
        queue::TYPE => Scorer(Arc::new(QueueScorer::new(params(p)?))),
        kv_cache::TYPE => Scorer(Arc::new(KvCacheScorer::new(params(p)?))),
        running_requests::TYPE => Scorer(Arc::new(RunningRequestsScorer::new(params(p)?))),
        lora_affinity::TYPE => Scorer(Arc::new(LoraAffinityScorer::new(params(p)?))),
        prefix_cache::TYPE => Scorer(Arc::new(PrefixCacheScorer::new(params(p)?))),
        inflight_load::TYPE => Scorer(Arc::new(InflightLoadScorer::new(params(p)?))),
        token_load::TYPE => Scorer(Arc::new(TokenLoadScorer::new(params(p)?))),
        load_aware_prefix::TYPE => Scorer(Arc::new(LoadAwarePrefixScorer::new(params(p)?))),
        max_score::TYPE => Picker(Arc::new(MaxScorePicker::new(params(p)?))),
        random::TYPE => Picker(Arc::new(RandomPicker::new(params(p)?))),
        weighted_random::TYPE => Picker(Arc::new(WeightedRandomPicker::new(params(p)?))),
        round_robin::TYPE => Picker(Arc::new(RoundRobinPicker::new(params(p)?))),
        least_request::TYPE => Picker(Arc::new(LeastRequestPicker::new(params(p)?))),
        weighted_round_robin::TYPE => Picker(Arc::new(WeightedRoundRobinPicker::new(params(p)?))),
        single_profile::TYPE => Handler(Arc::new(SingleProfileHandler::new(params(p)?))),
        utilization::TYPE => Detector(SaturationDetector::Utilization(Arc::new(
            UtilizationDetector::new(params(p)?),
        ))),
        concurrency::TYPE => Detector(SaturationDetector::Concurrency(Arc::new(
            ConcurrencyDetector::new(params(p)?),
        ))),
        METRICS_DATA_SOURCE => Host(HostPlugin::MetricsSource(params(p)?)),
        FILE_DISCOVERY => Host(HostPlugin::FileDiscovery(params(p)?)),
        CORE_METRICS_EXTRACTOR => Host(HostPlugin::MetricsExtractor(params(p)?)),
        OPENAI_PARSER => {
            params::<NoParams>(p)?;
            Host(HostPlugin::Parser(ParserKind::OpenAi))
        }
        PASSTHROUGH_PARSER => {
            params::<NoParams>(p)?;
            Host(HostPlugin::Parser(ParserKind::Passthrough))
        }
        PREFIX_PRODUCER => {
            params::<PrefixParams>(p)?;
            Host(HostPlugin::Ignored(
                "each prefix scorer keeps its own index, built from its own parameters",
            ))
        }
        t if FLOW_CONTROL_POLICIES.contains(&t) => Host(HostPlugin::Ignored(
            "flow-control policies are configured for the host's queueing layer, not the scheduler",
        )),
        t => {
            if let Some((_, why)) = IGNORED.iter().find(|(name, _)| *name == t) {
                Host(HostPlugin::Ignored(why))
            } else if let Some((_, why)) = UNSUPPORTED.iter().find(|(name, _)| *name == t) {
                return Err(BuildError::Unsupported(why));
            } else {
                return Err(BuildError::UnknownType);
            }
        }
    })
}

/// The known type closest to `t` by edit distance, if it is close (≤ 3 edits).
pub fn suggest(t: &str) -> Option<&'static str> {
    known_types()
        .into_iter()
        .map(|k| (edit_distance(t, k), k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

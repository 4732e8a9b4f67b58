//! The scenario file: one YAML document that states a benchmark's whole question —
//! what traffic, at which loads, against which pool, through which routers, judged by
//! which SLOs, written where. The schema is documented field by field in
//! `scenarios/README.md`; every field has a default, so `{}` is a valid scenario (a
//! short ShareGPT run on four simulated H100s comparing igw's and GIE's default
//! profiles with a Kubernetes Service).
//!
//! Unknown fields are errors, and every error names the file and, for syntax and
//! schema errors, the line and column (serde-saphyr's location). Checks that need more
//! than one field (a sweep that goes nowhere, two strategies with one name, a baseline
//! that is not among the strategies) are made by [`Scenario::validate`], which
//! [`load`] runs.

mod files;
mod pool;
#[cfg(test)]
mod tests;

pub use pool::{PoolSpec, ReplicaGroup};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::arrivals::{ArrivalProcess, Stage};
use super::recorder::Slo;
use super::workload::{LoraWeight, ShareGptSpec, WorkloadSpec, sharegpt};
use crate::epp::duration::parse_go_duration;

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {}: {error}", path.display())]
    Read {
        path: PathBuf,
        // Not `source`: the message already says it (printed once, not twice).
        error: std::io::Error,
    },
    /// Syntax or schema; the message carries the line and column.
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
}

/// Where a run happens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The discrete-event pool simulation: virtual time, deterministic for a seed.
    #[default]
    Virtual,
    /// Simulators and one gateway per strategy started in-process; real HTTP.
    Live,
}

/// A whole scenario file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports; defaults to the file's stem.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds the workload, the arrivals and every router; same seed, same virtual run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The mode used when the command line does not choose one.
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_workload")]
    pub workload: WorkloadSpec,
    /// LoRA adapters named as the model, by share of the requests (inference-perf's
    /// `lora_traffic_split`). Empty: every request asks for the pool's model. An entry
    /// named like `pool.model` is the base model's share beside the adapters.
    #[serde(default)]
    pub lora_traffic_split: Vec<LoraWeight>,
    #[serde(default)]
    pub load: LoadSpec,
    #[serde(default)]
    pub pool: PoolSpec,
    /// The routers compared, in report order.
    #[serde(default = "default_strategies")]
    pub strategies: Vec<StrategySpec>,
    /// The strategy the others are compared with; defaults to `random` when there is
    /// one (what a Kubernetes Service does), else the last strategy.
    #[serde(default)]
    pub baseline: Option<String>,
    #[serde(default)]
    pub slo: SloSpec,
    #[serde(default)]
    pub output: OutputSpec,
}

fn default_seed() -> u64 {
    42
}

fn default_workload() -> WorkloadSpec {
    WorkloadSpec::ShareGpt(ShareGptSpec {
        path: PathBuf::from(sharegpt::SAMPLE_PATH),
        num_requests: 1000,
        output_len: None,
        chat: false,
        distinct_repeats: true,
    })
}

fn default_strategies() -> Vec<StrategySpec> {
    ["igw-default", "gie-default"]
        .into_iter()
        .map(|preset| StrategySpec {
            name: None,
            router: RouterKind::Epp,
            config: Some(preset.into()),
            url: None,
        })
        .chain(std::iter::once(StrategySpec {
            name: None,
            router: RouterKind::Random,
            config: None,
            url: None,
        }))
        .collect()
}

/// Arrivals and stages.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// `poisson` (default) or `constant`.
    #[serde(default, rename = "type")]
    pub process: ArrivalProcess,
    /// Explicit stages, run in order. Give `stages` or `sweep`, not both.
    #[serde(default)]
    pub stages: Vec<StageSpec>,
    #[serde(default)]
    pub sweep: Option<SweepSpec>,
}

impl Default for LoadSpec {
    fn default() -> LoadSpec {
        LoadSpec {
            process: ArrivalProcess::Poisson,
            stages: Vec::new(),
            sweep: None,
        }
    }
}

/// One explicit stage.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Requests per second.
    pub rate: f64,
    /// How long requests are sent, e.g. `30s`.
    #[serde(deserialize_with = "go_duration")]
    pub duration: Duration,
}

/// The most requests one run may plan, over all its stages: 20× the largest shipped
/// scenario (`gie-blog-10-replicas` plans 447,926 and peaks at 1.6 GB).
pub const MAX_PLANNED_REQUESTS: u64 = 10_000_000;

/// Rates from `from` to `to` (inclusive) in steps of `step`, each for `duration`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    pub from: f64,
    pub to: f64,
    pub step: f64,
    #[serde(deserialize_with = "go_duration")]
    pub stage_duration: Duration,
}

/// Which router a strategy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouterKind {
    /// The endpoint picker with an EndpointPickerConfig.
    Epp,
    RoundRobin,
    /// Uniformly random: a Kubernetes Service.
    Random,
    LeastRequest,
    /// Fewest prompt + output tokens in flight, counted exactly, output lengths
    /// known in advance (virtual mode only): an oracle no gateway can be, the bound
    /// of what balancing load can do on a workload.
    LeastTokens,
    /// An external OpenAI-compatible URL (live mode only): nothing is started.
    Target,
}

/// One router to compare.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategySpec {
    /// The column heading; defaults to the config's preset or file stem for `epp`,
    /// else the router's name.
    #[serde(default)]
    pub name: Option<String>,
    pub router: RouterKind,
    /// `epp` only: a preset (`gie-default`, `igw-default`) or an EndpointPickerConfig
    /// file (paths are relative to the working directory). Default `gie-default`.
    #[serde(default)]
    pub config: Option<String>,
    /// `target` only: the base URL, e.g. `http://gateway:8080`.
    #[serde(default)]
    pub url: Option<String>,
}

impl StrategySpec {
    /// The name reports use.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match self.router {
            RouterKind::Epp => {
                let config = self.config.as_deref().unwrap_or("gie-default");
                let stem = Path::new(config)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| config.to_string());
                format!("epp {stem}")
            }
            RouterKind::RoundRobin => "round-robin".into(),
            RouterKind::Random => "random".into(),
            RouterKind::LeastRequest => "least-request".into(),
            RouterKind::LeastTokens => "least-tokens".into(),
            RouterKind::Target => "target".into(),
        }
    }
}

/// Goodput constraints; unset ones always pass.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    #[serde(default, deserialize_with = "opt_go_duration")]
    pub ttft: Option<Duration>,
    #[serde(default, deserialize_with = "opt_go_duration")]
    pub tpot: Option<Duration>,
    #[serde(default, deserialize_with = "opt_go_duration")]
    pub ntpot: Option<Duration>,
    #[serde(default, deserialize_with = "opt_go_duration")]
    pub request_latency: Option<Duration>,
}

impl SloSpec {
    pub fn slo(&self) -> Slo {
        Slo {
            ttft: self.ttft,
            tpot: self.tpot,
            ntpot: self.ntpot,
            request_latency: self.request_latency,
        }
    }
}

/// Where reports go.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Defaults to `bench-results/<name>`; `--out` overrides.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Also write each strategy's `per_request_lifecycle_metrics.json` (one record
    /// per request with every token's time; large for long runs).
    #[serde(default)]
    pub per_request: bool,
}

pub(super) fn go_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_go_duration(&text).map_err(serde::de::Error::custom)
}

fn opt_go_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    go_duration(d).map(Some)
}

/// Reads, parses and validates the scenario at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let origin = path.display().to_string();
    let mut scenario = parse(&text, &origin)?;
    if let Some(dir) = path.parent() {
        scenario.find_files_beside(dir);
    }
    scenario.validate(&origin)?;
    scenario.load_tokenizer(&origin)?;
    if scenario.name.is_empty() {
        scenario.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into());
    }
    Ok(scenario)
}

/// Parses and validates scenario text; `origin` names it in messages.
pub fn from_yaml_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    let mut scenario = parse(text, origin)?;
    scenario.validate(origin)?;
    scenario.load_tokenizer(origin)?;
    Ok(scenario)
}

fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    // An empty document is the all-defaults scenario.
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_saphyr::from_str(text).map_err(|e| ScenarioError::Syntax {
        origin: origin.to_string(),
        message: crate::yaml::error_text(&e),
    })
}

impl Scenario {
    /// The stages in order, from `load.stages` or `load.sweep`; one 30 s stage at
    /// 10 req/s when neither is given.
    pub fn stages(&self) -> Vec<Stage> {
        if let Some(s) = &self.load.sweep {
            let n = ((s.to - s.from) / s.step + 1e-9).floor() as usize + 1;
            return (0..n)
                .map(|i| Stage {
                    rate: s.from + s.step * i as f64,
                    duration: s.stage_duration,
                })
                .collect();
        }
        if self.load.stages.is_empty() {
            return vec![Stage {
                rate: 10.0,
                duration: Duration::from_secs(30),
            }];
        }
        self.load
            .stages
            .iter()
            .map(|s| Stage {
                rate: s.rate,
                duration: s.duration,
            })
            .collect()
    }

    /// The baseline strategy's display name.
    pub fn baseline_name(&self) -> String {
        if let Some(b) = &self.baseline {
            return b.clone();
        }
        let names: Vec<String> = self.strategies.iter().map(|s| s.display_name()).collect();
        if names.iter().any(|n| n == "random") {
            return "random".into();
        }
        names.last().cloned().unwrap_or_default()
    }

    /// The checks that span fields.
    ///
    /// A run plans every request before sending any, so the load is capped at
    /// [`MAX_PLANNED_REQUESTS`]: a typo'd rate (`1e12`) is an error naming `load`, not
    /// an allocation that kills the process.
    pub fn validate(&self, origin: &str) -> Result<(), ScenarioError> {
        let invalid = |field: &str, message: String| ScenarioError::Invalid {
            origin: origin.to_string(),
            field: field.to_string(),
            message,
        };
        if self.load.sweep.is_some() && !self.load.stages.is_empty() {
            return Err(invalid("load", "give `stages` or `sweep`, not both".into()));
        }
        if self.load.process == ArrivalProcess::Trace
            && !matches!(self.workload, WorkloadSpec::Trace(_))
        {
            return Err(invalid(
                "load.type",
                "`trace` replays a trace's own arrival times: it needs `workload.type: trace`"
                    .into(),
            ));
        }
        for (i, s) in self.load.stages.iter().enumerate() {
            if !(s.rate > 0.0 && s.rate.is_finite()) {
                return Err(invalid(
                    &format!("load.stages[{i}].rate"),
                    format!(
                        "must be a positive number of requests per second, got {}",
                        s.rate
                    ),
                ));
            }
            if s.duration.is_zero() {
                return Err(invalid(
                    &format!("load.stages[{i}].duration"),
                    "must be greater than 0".into(),
                ));
            }
        }
        if let Some(s) = &self.load.sweep {
            if !(s.from > 0.0 && s.step > 0.0 && s.to >= s.from && s.to.is_finite()) {
                return Err(invalid(
                    "load.sweep",
                    format!(
                        "needs 0 < from <= to and step > 0, got from {} to {} step {}",
                        s.from, s.to, s.step
                    ),
                ));
            }
            if (s.to - s.from) / s.step > 1000.0 {
                return Err(invalid("load.sweep", "more than 1,000 stages".into()));
            }
            if s.stage_duration.is_zero() {
                return Err(invalid(
                    "load.sweep.stage_duration",
                    "must be greater than 0".into(),
                ));
            }
        }
        let planned: f64 = self
            .stages()
            .iter()
            .map(|s| s.rate * s.duration.as_secs_f64())
            .sum();
        if planned > MAX_PLANNED_REQUESTS as f64 {
            return Err(invalid(
                "load",
                format!(
                    "the stages send about {planned:.3e} requests; a run plans at most {} \
                     (each is held in memory): lower the rates or the durations",
                    MAX_PLANNED_REQUESTS
                ),
            ));
        }
        if self.pool.replicas == 0 {
            return Err(invalid("pool.replicas", "must be at least 1".into()));
        }
        for (i, group) in self.pool.also.iter().enumerate() {
            if group.replicas == 0 {
                return Err(invalid(
                    &format!("pool.also[{i}].replicas"),
                    "must be at least 1".into(),
                ));
            }
            if group.profile.is_some() && group.profile_file.is_some() {
                return Err(invalid(
                    &format!("pool.also[{i}]"),
                    "give `profile` or `profile_file`, not both".into(),
                ));
            }
        }
        if !(self.pool.speedup > 0.0 && self.pool.speedup.is_finite()) {
            return Err(invalid(
                "pool.speedup",
                format!("must be a positive number, got {}", self.pool.speedup),
            ));
        }
        if self.pool.scrape_interval.is_zero() {
            return Err(invalid(
                "pool.scrape_interval",
                "must be greater than 0".into(),
            ));
        }
        if let Some(name) = &self.pool.profile
            && let Err(e) = crate::sim::profile::LatencyProfile::named(name)
        {
            let looks_like_a_file =
                name.ends_with(".yaml") || name.ends_with(".yml") || name.contains('/');
            let hint = if looks_like_a_file {
                "; for a profile file use `profile_file`"
            } else {
                ""
            };
            return Err(invalid("pool.profile", format!("{e}{hint}")));
        }
        for (i, (_, options)) in self.pool.groups(self.seed).iter().enumerate() {
            let field = match i {
                0 => "pool".to_string(),
                _ => format!("pool.also[{}]", i - 1),
            };
            if i > 0
                && let Some(name) = &options.profile
                && let Err(e) = crate::sim::profile::LatencyProfile::named(name)
            {
                return Err(invalid(&format!("{field}.profile"), e.to_string()));
            }
            options
                .engine_config()
                .map_err(|e| invalid(&field, format!("{e:#}")))?;
        }
        if self.strategies.is_empty() {
            return Err(invalid("strategies", "name at least one".into()));
        }
        let mut names = Vec::new();
        for (i, s) in self.strategies.iter().enumerate() {
            let field = format!("strategies[{i}]");
            match s.router {
                RouterKind::Target if s.url.is_none() => {
                    return Err(invalid(&field, "router `target` needs a `url`".into()));
                }
                RouterKind::Epp => {}
                _ if s.config.is_some() => {
                    return Err(invalid(
                        &format!("{field}.config"),
                        "only router `epp` takes a config".into(),
                    ));
                }
                _ => {}
            }
            if s.url.is_some() && s.router != RouterKind::Target {
                return Err(invalid(
                    &format!("{field}.url"),
                    "only router `target` takes a url".into(),
                ));
            }
            let name = s.display_name();
            if names.contains(&name) {
                return Err(invalid(
                    &field,
                    format!("a second strategy named `{name}`; give one a `name`"),
                ));
            }
            names.push(name);
        }
        let baseline = self.baseline_name();
        if !names.contains(&baseline) {
            return Err(invalid(
                "baseline",
                format!(
                    "`{baseline}` is not a strategy (have: {})",
                    names.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

//! `igw bench --virtual`: every strategy and stage of a scenario through the
//! discrete-event pool simulation ([`super::des`]).
//!
//! Each (strategy, stage) pair is an independent job on a cold pool, as LPG's sweep
//! runs one benchmark per rate: the stage's planned requests go in with their send
//! times, the router decides with metrics that lag by the scrape interval, and the
//! records become inference-perf's measurements. Jobs run on all cores, but each is
//! deterministic and results are placed by index, so the report does not depend on
//! the number of threads or their timing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::des::{DesReport, DesRequest, PoolConfig, Router, simulate};
use super::plan::StagePlan;
use super::progress::Progress;
use super::recorder::{
    Failure, RecordSpool, RequestLifecycle, RequestSample, Slo, SpoolWriter, StageRecorders,
};
use super::report::{BenchReport, Measured, PoolGroup, PoolInfo, StrategyResult};
use super::scenario::{RouterKind, Scenario, StrategySpec};
use super::wire;
use crate::epp::config::{self, LoadedConfig};
use crate::sim::engine::EngineConfig;
use crate::sim::metrics::FinishReason;
use crate::sim::tokens::{OutputMode, Tokenizer};

/// Loads the EndpointPickerConfig a strategy names: a preset or a file.
pub fn picker_config(strategy: &StrategySpec) -> anyhow::Result<LoadedConfig> {
    let name = strategy.config.as_deref().unwrap_or("gie-default");
    Ok(match name {
        "gie-default" => config::gie_default(),
        "igw-default" => config::igw_default(),
        path => config::load(std::path::Path::new(path))
            .with_context(|| format!("strategy `{}`", strategy.display_name()))?,
    })
}

/// Roughly how much a simulated request costs under `strategy`, relative to the
/// baselines: the picker's scorers about double it (`cargo bench --bench des`).
fn relative_cost(strategy: &StrategySpec) -> usize {
    match strategy.router {
        RouterKind::Epp => 2,
        _ => 1,
    }
}

/// A fresh router for one job (the EPP's plugins keep state, so no sharing).
fn router(strategy: &StrategySpec) -> anyhow::Result<Router> {
    Ok(match strategy.router {
        RouterKind::Epp => Router::epp(picker_config(strategy)?),
        RouterKind::RoundRobin => Router::RoundRobin,
        RouterKind::Random => Router::Random,
        RouterKind::LeastRequest => Router::LeastRequest,
        RouterKind::LeastTokens => Router::LeastTokens,
        RouterKind::Target => anyhow::bail!(
            "strategy `{}`: router `target` measures an external URL and needs --live",
            strategy.display_name()
        ),
    })
}

/// The pool every job starts from.
pub fn pool_config(scenario: &Scenario) -> anyhow::Result<PoolConfig> {
    let groups = scenario.pool.groups(scenario.seed);
    let mut pool: Option<PoolConfig> = None;
    for (i, (replicas, options)) in groups.iter().enumerate() {
        let engine: EngineConfig = options.engine_config().with_context(|| match i {
            0 => "pool".to_string(),
            _ => format!("pool.also[{}]", i - 1),
        })?;
        let group = PoolConfig::replicas(&engine, *replicas, &scenario.pool.model, scenario.seed);
        match &mut pool {
            None => pool = Some(group),
            Some(pool) => pool.engines.extend(group.engines),
        }
    }
    let mut pool = pool.context("pool: no replicas")?;
    pool.scrape_interval = scenario.pool.scrape_interval;
    pool.keep_token_times = scenario.output.per_request;
    Ok(pool)
}

/// The stage's requests as the simulation takes them: the prompt's token ids, the
/// exact tokens the simulator would generate for `max_tokens` with `ignore_eos`, as
/// the live client asks, the length of the body it would send, and which request a
/// session's turn waits for. `tokenizer` is the replicas' (its words are their output).
fn des_requests(
    plan: &StagePlan,
    model: &str,
    engine_seed: u64,
    tokenizer: &Tokenizer,
) -> Vec<DesRequest> {
    plan.requests
        .iter()
        .zip(plan.predecessors())
        .map(|(p, after)| {
            let r = &p.request;
            let output = tokenizer.plan_output(
                OutputMode::Random,
                engine_seed,
                &r.prompt_tokens,
                r.output_tokens,
                true,
            );
            DesRequest {
                arrival: p.at,
                prompt: r.prompt_tokens.clone(),
                output: output.tokens,
                lora: r.lora.as_deref().map(Arc::from),
                finish_reason: FinishReason::Length,
                body_len: Some(wire::body_len(model, r)),
                prefix_bytes: Some(Arc::from(wire::prefix_bytes(r))),
                after: after.map(|i| i as u32),
            }
        })
        .collect()
}

/// One job's measurements: its recorders, requests per endpoint and (when the
/// simulation kept token times) per-request records for stage `stage`, written to a
/// spool as they are made. `input` is what the simulation ran, in the same order as
/// the report's records.
fn measure(
    report: &DesReport,
    input: &[DesRequest],
    slo: &Slo,
    replicas: usize,
    stage: usize,
) -> anyhow::Result<(StageRecorders, Vec<u64>, Option<RecordSpool>)> {
    let mut recorders = StageRecorders::new(slo.clone());
    let mut per_endpoint = vec![0u64; replicas];
    let spool_error = |e| anyhow::anyhow!("cannot spool the per-request records: {e}");
    let mut per_request = match report.token_times.is_empty() {
        true => None,
        false => Some(SpoolWriter::create().map_err(spool_error)?),
    };
    for (i, (r, request)) in report.records.iter().zip(input).enumerate() {
        if let Some(e) = r.endpoint {
            per_endpoint[e] += 1;
        }
        let done = r.done.unwrap_or(report.end);
        let sample = RequestSample {
            // The simulation sends every request exactly on time.
            scheduled: r.arrival,
            sent: r.arrival,
            first_token: r.first_token,
            done,
            prompt_tokens: u64::from(r.prompt_tokens),
            output_tokens: u64::from(r.output_tokens),
            cached_tokens: u64::from(r.cached_tokens),
            error: match (&r.error, r.done) {
                (Some(e), _) => Some(e.clone()),
                (None, None) => Some(Failure::other(
                    "unfinished",
                    "still in an engine when the simulation ended",
                )),
                (None, Some(_)) => None,
            },
        };
        recorders.record(&sample, request.lora.as_deref());
        if let (Some(spool), Some(times)) = (&mut per_request, report.token_times.get(i)) {
            let adapter = request.lora.as_deref();
            let record = RequestLifecycle::new(stage, &sample, times, adapter);
            spool.push(&record).map_err(spool_error)?;
        }
    }
    recorders.all.add_itl(&report.inter_token);
    for (adapter, gaps) in &report.inter_token_by_adapter {
        recorders.add_adapter_itl(adapter, gaps);
    }
    let per_request = per_request
        .map(SpoolWriter::finish)
        .transpose()
        .map_err(spool_error)?;
    Ok((recorders, per_endpoint, per_request))
}

/// One stage's simulation input, built on first use and released when the last of
/// the stage's `jobs` has taken it.
struct StageInput {
    slot: Mutex<(Option<Arc<Vec<DesRequest>>>, usize)>,
}

impl StageInput {
    fn new(jobs: usize) -> StageInput {
        StageInput {
            slot: Mutex::new((None, jobs)),
        }
    }

    /// The input, built by `build` if no job has taken it yet; the last job's take
    /// leaves nothing behind.
    fn take(&self, build: impl FnOnce() -> Vec<DesRequest>) -> Arc<Vec<DesRequest>> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (input, left) = &mut *slot;
        let shared = input.get_or_insert_with(|| Arc::new(build())).clone();
        *left = left.saturating_sub(1);
        if *left == 0 {
            *input = None;
        }
        shared
    }
}

/// Runs the scenario's plan in virtual time with up to `threads` jobs at once.
pub fn run(
    scenario: &Scenario,
    plans: &[StagePlan],
    threads: usize,
    progress: &Progress,
) -> anyhow::Result<BenchReport> {
    let pool = pool_config(scenario)?;
    let slo = scenario.slo.slo();
    let strategies = &scenario.strategies;
    // Fail on a bad picker config before any job starts.
    for s in strategies {
        router(s)?;
    }
    let jobs: Vec<(usize, usize)> = (0..plans.len())
        .flat_map(|stage| (0..strategies.len()).map(move |s| (stage, s)))
        .collect();
    // Threads take the largest stage first and, within a stage, the costliest
    // strategy first, so the last jobs to finish are short and no core idles while one
    // long job runs alone. A stage's jobs run back to back, so only the stages in
    // flight hold their input (ordering by job cost alone kept every stage's alive,
    // 0.5 GB more on gie-blog-10-replicas). Results keep `jobs`' order.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| {
        let (stage, s) = jobs[j];
        (
            std::cmp::Reverse(plans[stage].requests.len()),
            std::cmp::Reverse(relative_cost(&strategies[s])),
        )
    });
    let names: Vec<String> = strategies.iter().map(|s| s.display_name()).collect();
    let bars = progress.stage_bars(plans, &names);
    let engine_seed = pool.engines[0].seed;
    // A stage's simulation input (prompt ids, the tokens the engines will generate) is
    // the same for every strategy: built by the stage's first job, shared by the rest,
    // and dropped with the last one, so memory holds the stages in flight, not all.
    let inputs: Vec<StageInput> = plans
        .iter()
        .map(|_| StageInput::new(strategies.len()))
        .collect();
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<anyhow::Result<Measured>>>> =
        (0..jobs.len()).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                while let Some(&j) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (stage, s) = jobs[j];
                    let plan = &plans[stage];
                    let result = router(&strategies[s]).and_then(|router| {
                        let input = inputs[stage].take(|| {
                            des_requests(
                                plan,
                                &scenario.pool.model,
                                engine_seed,
                                &scenario.pool.loaded_tokenizer,
                            )
                        });
                        let report = simulate(&pool, router, &input)
                            .map_err(|e| anyhow::anyhow!("pool: {e}"))?;
                        let replicas = pool.engines.len();
                        let (recorders, per_endpoint, per_request) =
                            measure(&report, &input, &slo, replicas, plan.index)?;
                        Ok(Measured {
                            result: StrategyResult {
                                strategy: names[s].clone(),
                                summary: recorders.all.summary(plan.stage.rate),
                                requests_per_endpoint: per_endpoint,
                                preemptions_per_endpoint: report
                                    .engines
                                    .iter()
                                    .map(|e| e.preemptions)
                                    .collect(),
                                send_lag: None,
                            },
                            recorders,
                            per_request,
                        })
                    });
                    bars[stage][s].finish_with_message(match &result {
                        Ok(m) => format!(
                            "p90 e2e {:.2} s",
                            m.result.summary.successes.latency.request_latency.p90
                        ),
                        Err(_) => "failed".into(),
                    });
                    *slots[j].lock().expect("no job panics holding it") = Some(result);
                }
            });
        }
    });
    let mut results = slots
        .into_iter()
        .map(|slot| slot.into_inner().expect("no job panics holding it"));
    let mut rows = Vec::with_capacity(plans.len());
    for _ in plans {
        let mut row = Vec::with_capacity(strategies.len());
        for _ in strategies {
            row.push(Some(results.next().flatten().expect("every job ran")?));
        }
        rows.push(row);
    }
    Ok(BenchReport::from_rows(
        scenario,
        plans,
        "virtual",
        pool_info(scenario, 1.0)?,
        names,
        rows,
    ))
}

/// The pool as reports describe it.
pub fn pool_info(scenario: &Scenario, speedup: f64) -> anyhow::Result<PoolInfo> {
    let mut groups = Vec::new();
    for (replicas, options) in scenario.pool.groups(scenario.seed) {
        let profile = options.profile()?.name.to_string();
        groups.push(PoolGroup { replicas, profile });
    }
    // One shape: its name; a mixed pool: each group's, e.g. `5 × h100-llama3-8b + 5 ×
    // a100-llama3-8b`.
    if let [only] = groups.as_mut_slice() {
        return Ok(PoolInfo {
            replicas: only.replicas,
            model: scenario.pool.model.clone(),
            profile: std::mem::take(&mut only.profile),
            speedup,
            groups: Vec::new(),
        });
    }
    let profile = groups
        .iter()
        .map(|g| format!("{} × {}", g.replicas, g.profile))
        .collect::<Vec<_>>()
        .join(" + ");
    Ok(PoolInfo {
        replicas: scenario.pool.total_replicas(),
        model: scenario.pool.model.clone(),
        profile,
        speedup,
        groups,
    })
}

//! `igw bench --live` and `--target URL`: a scenario's plan sent over real HTTP.
//!
//! Live: strategies run one after another, and every (strategy, stage) pair gets a
//! fresh cold pool of the scenario's simulators (a server per group of replicas of
//! one shape) and one gateway (`igw epp run`
//! in-process, all on loopback ports chosen by the OS), as the virtual runner gives
//! each job a cold pool. An `epp` strategy's gateway runs its EndpointPickerConfig; a
//! baseline's runs a one-profile config whose only plugin is the matching picker
//! (`random-picker`, `round-robin-picker`, `least-request-picker`), so every strategy
//! pays the same proxy cost and differs only in the decision. The simulators run
//! `speedup` times faster than real time, the schedule is sent that much faster, and
//! the picker scrapes that much more often (its scrape interval and staleness
//! threshold divided by `speedup`), so in pool time the picker's view lags exactly as
//! the virtual runner models it. Reports are in pool time (wall × speedup).
//!
//! What the speedup costs in accuracy: the live path adds a roughly fixed couple of
//! wall milliseconds to every request that the model does not have (HTTP through the
//! gateway, the simulator's frontend, its driver waking on a 1 ms timer), and pool
//! time multiplies that by `speedup`. In a release build on 2 cores, speedup 5 keeps
//! mean TTFT within ~7 % and mean e2e within ~5 % of the virtual run at moderate load;
//! at 10 TTFT drifts to ~10–20 % high. Faster clocks also multiply the scrape, token
//! and request rates the machine must carry, so a pool that runs short of CPU queues
//! for CPU rather than for the model: keep the speedup modest when numbers matter.
//!
//! Target: nothing is started; one strategy named `target` sends the plan to the URL
//! in real time, each stage after the previous one's responses are in.
//!
//! Either stops early on an [`Interrupt`] (Ctrl-C): the job sending stops sending,
//! its requests in flight are awaited, no later job starts, and the report covers the
//! jobs that ran, with [`Interrupted`] saying where it stopped.
//!
//! The client is [`client`]; the stream parsing is [`sse`]; what the replicas report
//! after a stage (their preemptions) is read by `server_metrics`.

pub mod client;
mod server_metrics;
pub mod sse;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;

use self::client::{Destination, StageOutcome, http_client, run_stage};
use super::interrupt::{Interrupt, Interrupted};
use super::plan::StagePlan;
use super::progress::Progress;
use super::recorder::RecordSpool;
use super::report::{BenchReport, Measured, PoolInfo, SEND_LAG_WARN_MS, SendLag, StrategyResult};
use super::scenario::{RouterKind, Scenario, StrategySpec};
use super::virtual_run::{picker_config, pool_config, pool_info};
use crate::epp::config::{self, LoadedConfig};
use crate::epp::run::{EppOptions, RunningEpp, start_with_config};
use crate::sim::server::{Listen, LoraModule, SimServer, SimServerConfig, spawn};

/// How long a fresh gateway may take to see every simulator with fresh metrics.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two looks at the gateway's view while waiting for it.
const READY_POLL: Duration = Duration::from_millis(1);

/// Runs the plan live (`target` = `None`) or against `target`, returning a report
/// shaped like the virtual runner's.
pub async fn run(
    scenario: &Scenario,
    plans: &[StagePlan],
    target: Option<&str>,
    progress: &Progress,
) -> anyhow::Result<BenchReport> {
    run_until(scenario, plans, target, progress, &Interrupt::new()).await
}

/// [`run`], stopping early once `interrupt` fires (see the module).
pub async fn run_until(
    scenario: &Scenario,
    plans: &[StagePlan],
    target: Option<&str>,
    progress: &Progress,
    interrupt: &Interrupt,
) -> anyhow::Result<BenchReport> {
    match target {
        Some(url) => run_target(scenario, plans, url, progress, interrupt).await,
        None => run_live(scenario, plans, progress, interrupt).await,
    }
}

/// Where the run stopped, when `interrupt` fired during (or before) the job that
/// produced `measured` for `plan`, `done` jobs of `total` having started.
fn interrupted(
    interrupt: &Interrupt,
    strategy: &str,
    plan: &StagePlan,
    measured: &Measured,
    (done, total): (usize, usize),
) -> Option<Interrupted> {
    interrupt.is_set().then(|| Interrupted {
        strategy: strategy.to_string(),
        stage: plan.index,
        sent: measured.result.summary.load_summary.count as usize,
        planned: plan.requests.len(),
        jobs_not_run: total - done,
    })
}

/// The result of one job, measured against the scenario's SLOs (and with per-request
/// records if it asks for them), its bar finished with the stage's p90.
fn result(
    scenario: &Scenario,
    name: &str,
    plan: &StagePlan,
    outcome: &StageOutcome,
    per_endpoint: Vec<u64>,
    preemptions_per_endpoint: Vec<u64>,
    bar: &ProgressBar,
) -> anyhow::Result<Measured> {
    let spool = match scenario.output.per_request {
        true => Some(
            RecordSpool::from_records(&outcome.per_request(plan.index))
                .context("cannot spool the per-request records")?,
        ),
        false => None,
    };
    let recorders = outcome.recorders(&scenario.slo.slo());
    let summary = recorders.all.summary(plan.stage.rate);
    let lag = outcome.lag_micros();
    let ms = |micros: u64| micros as f64 / 1e3;
    let send_lag = SendLag {
        p50_ms: ms(lag.value_at_quantile(0.5)),
        p99_ms: ms(lag.value_at_quantile(0.99)),
        max_ms: ms(lag.max()),
    };
    let lag_p99_ms = send_lag.p99_ms;
    if lag_p99_ms > SEND_LAG_WARN_MS {
        tracing::warn!(
            strategy = name,
            stage = plan.index,
            "the client sent late: send-schedule lag p99 {lag_p99_ms:.1} ms of wall time"
        );
    }
    bar.finish_with_message(format!(
        "p90 e2e {:.2} s · send lag p99 {lag_p99_ms:.1} ms",
        summary.successes.latency.request_latency.p90
    ));
    Ok(Measured {
        result: StrategyResult {
            strategy: name.to_string(),
            summary,
            requests_per_endpoint: per_endpoint,
            preemptions_per_endpoint,
            send_lag: Some(send_lag),
        },
        recorders,
        per_request: spool,
    })
}

async fn run_target(
    scenario: &Scenario,
    plans: &[StagePlan],
    url: &str,
    progress: &Progress,
    interrupt: &Interrupt,
) -> anyhow::Result<BenchReport> {
    let destination = Destination::new(&[url.to_string()])?;
    let names = vec!["target".to_string()];
    let bars = progress.stage_bars(plans, &names);
    let client = http_client()?;
    let mut rows: Vec<Vec<Option<Measured>>> = plans.iter().map(|_| vec![None]).collect();
    let mut stopped = None;
    for (stage, (plan, stage_bars)) in plans.iter().zip(&bars).enumerate() {
        let outcome = run_stage(
            &client,
            &destination,
            &scenario.pool.model,
            plan,
            1.0,
            &stage_bars[0],
            interrupt,
        )
        .await;
        let measured = result(
            scenario,
            "target",
            plan,
            &outcome,
            Vec::new(),
            Vec::new(),
            &stage_bars[0],
        )?;
        stopped = interrupted(
            interrupt,
            "target",
            plan,
            &measured,
            (stage + 1, plans.len()),
        );
        rows[stage][0] = Some(measured);
        if stopped.is_some() {
            abandon_the_rest(&bars[stage + 1..]);
            break;
        }
    }
    let pool = PoolInfo {
        replicas: 0,
        model: scenario.pool.model.clone(),
        profile: format!("external ({url})"),
        speedup: 1.0,
        groups: Vec::new(),
    };
    let mut report = BenchReport::from_rows(scenario, plans, "target", pool, names, rows);
    report.interrupted = stopped;
    Ok(report)
}

/// Marks the bars of jobs that will not run.
fn abandon_the_rest(bars: &[Vec<ProgressBar>]) {
    for bar in bars.iter().flatten() {
        bar.abandon_with_message("not run (interrupted)");
    }
}

async fn run_live(
    scenario: &Scenario,
    plans: &[StagePlan],
    progress: &Progress,
    interrupt: &Interrupt,
) -> anyhow::Result<BenchReport> {
    let strategies = &scenario.strategies;
    let names: Vec<String> = strategies.iter().map(|s| s.display_name()).collect();
    // Every configuration is loaded before anything starts, so a bad file fails fast.
    for s in strategies {
        gateway_config(s)?;
    }
    let bars = progress.stage_bars(plans, &names);
    let mut rows: Vec<Vec<Option<Measured>>> = plans
        .iter()
        .map(|_| strategies.iter().map(|_| None).collect())
        .collect();
    let total = strategies.len() * plans.len();
    let mut stopped = None;
    'jobs: for (s, strategy) in strategies.iter().enumerate() {
        for (stage, plan) in plans.iter().enumerate() {
            let bar = &bars[stage][s];
            let r = job(scenario, strategy, plan, bar, interrupt)
                .await
                .with_context(|| format!("strategy `{}`, stage {}", names[s], plan.index));
            if r.is_err() {
                bar.abandon_with_message("failed");
            }
            let measured = r?;
            let done = s * plans.len() + stage + 1;
            stopped = interrupted(interrupt, &names[s], plan, &measured, (done, total));
            rows[stage][s] = Some(measured);
            if stopped.is_some() {
                // Jobs run strategy by strategy: the rest of this one's stages, then
                // every later strategy's.
                for (later, row) in bars.iter().enumerate() {
                    for (t, bar) in row.iter().enumerate() {
                        if t > s || (t == s && later > stage) {
                            bar.abandon_with_message("not run (interrupted)");
                        }
                    }
                }
                break 'jobs;
            }
        }
    }
    let mut report = BenchReport::from_rows(
        scenario,
        plans,
        "live",
        pool_info(scenario, scenario.pool.speedup)?,
        names,
        rows,
    );
    report.interrupted = stopped;
    Ok(report)
}

/// One (strategy, stage): a cold pool and gateway, the stage sent through it, both
/// stopped again.
async fn job(
    scenario: &Scenario,
    strategy: &StrategySpec,
    plan: &StagePlan,
    bar: &ProgressBar,
    interrupt: &Interrupt,
) -> anyhow::Result<Measured> {
    let name = strategy.display_name();
    if strategy.router == RouterKind::Target {
        // An external router runs in real time: nothing to start, nothing to speed up.
        let url = strategy.url.as_deref().unwrap_or_default();
        let destination = Destination::new(&[url.to_string()])?;
        let outcome = run_stage(
            &http_client()?,
            &destination,
            &scenario.pool.model,
            plan,
            1.0,
            bar,
            interrupt,
        )
        .await;
        return result(scenario, &name, plan, &outcome, Vec::new(), Vec::new(), bar);
    }
    let speedup = scenario.pool.speedup;
    let pool = start_pool(scenario).await?;
    let addrs: Vec<String> = pool.addrs().iter().map(SocketAddr::to_string).collect();
    let gateway = match start_gateway(scenario, strategy, pool.addrs()).await {
        Ok(g) => g,
        Err(e) => {
            let _ = pool.shutdown().await;
            return Err(e);
        }
    };
    let proxy = gateway
        .proxy_addr
        .context("the strategy's gateway serves no HTTP proxy")?;
    let destination = Destination::new(&[format!("http://{proxy}")])?;
    // A fresh client per job: no idle connections to an earlier job's gateway.
    let outcome = match http_client() {
        Ok(client) => {
            let outcome = run_stage(
                &client,
                &destination,
                &scenario.pool.model,
                plan,
                speedup,
                bar,
                interrupt,
            )
            .await;
            // Read before the pool stops; a replica that cannot say leaves the row
            // unknown rather than failing a stage that was measured.
            let preemptions = server_metrics::preemptions(&client, pool.addrs())
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(strategy = %name, "cannot read the replicas' preemptions: {e:#}");
                    Vec::new()
                });
            Ok((outcome, preemptions))
        }
        Err(e) => Err(e),
    };
    gateway.shutdown().await;
    pool.shutdown().await.context("simulator pool")?;
    let (outcome, preemptions) = outcome?;
    let per_endpoint = outcome.per_endpoint(&addrs);
    result(
        scenario,
        &name,
        plan,
        &outcome,
        per_endpoint,
        preemptions,
        bar,
    )
}

/// One job's simulators: a server of `pool.replicas` replicas, and one per group of
/// `pool.also`, their addresses in endpoint order.
struct LivePool {
    servers: Vec<SimServer>,
    addrs: Vec<SocketAddr>,
}

impl LivePool {
    fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops every server; the first error, if any.
    async fn shutdown(self) -> std::io::Result<()> {
        let mut result = Ok(());
        for server in self.servers {
            let r = server.shutdown().await;
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// The scenario's simulators on free loopback ports, each group of replicas with its
/// own engine shape, and every adapter of the LoRA traffic split registered.
async fn start_pool(scenario: &Scenario) -> anyhow::Result<LivePool> {
    let mut pool = LivePool {
        servers: Vec::new(),
        addrs: Vec::new(),
    };
    for (i, (replicas, options)) in scenario.pool.groups(scenario.seed).into_iter().enumerate() {
        let started = async {
            let engine = options.engine_config()?;
            let mut config = SimServerConfig::new(scenario.pool.model.clone(), engine);
            config.speedup = scenario.pool.speedup;
            config.tokenizer = scenario.pool.loaded_tokenizer.clone();
            // A split entry named like the pool's model is base-model traffic, not an
            // adapter.
            config.lora_modules = scenario
                .lora_traffic_split
                .iter()
                .filter(|l| l.name != scenario.pool.model)
                .map(|l| LoraModule {
                    name: l.name.clone(),
                    path: l.name.clone(),
                })
                .collect();
            spawn(config, Listen::local(replicas))
                .await
                .context("cannot start the simulators")
        }
        .await
        .with_context(|| match i {
            0 => "pool".to_string(),
            _ => format!("pool.also[{}]", i - 1),
        });
        match started {
            Ok(server) => {
                pool.addrs.extend_from_slice(server.addrs());
                pool.servers.push(server);
            }
            Err(e) => {
                let _ = pool.shutdown().await;
                return Err(e);
            }
        }
    }
    Ok(pool)
}

/// The EndpointPickerConfig a strategy's gateway runs.
fn gateway_config(strategy: &StrategySpec) -> anyhow::Result<LoadedConfig> {
    let picker = match strategy.router {
        RouterKind::Epp => return picker_config(strategy),
        RouterKind::Random => "random-picker",
        RouterKind::RoundRobin => "round-robin-picker",
        RouterKind::LeastRequest => "least-request-picker",
        RouterKind::LeastTokens => anyhow::bail!(
            "strategy `{}`: router `least-tokens` knows every request's output length \
             in advance, which no gateway does; it runs in virtual mode only",
            strategy.display_name()
        ),
        // Checked by the caller: a target strategy starts no gateway.
        RouterKind::Target => "random-picker",
    };
    let yaml = format!(
        "apiVersion: {}\nkind: {}\nplugins:\n- type: {picker}\n\
         schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: {picker}\n",
        config::API_VERSION,
        config::KIND,
    );
    Ok(config::from_yaml_str(
        &yaml,
        &format!("built-in {picker} baseline"),
    )?)
}

/// A gateway over `addrs` running the strategy's config, with the scrape interval and
/// staleness threshold scaled to the pool's clock, once it sees every endpoint.
async fn start_gateway(
    scenario: &Scenario,
    strategy: &StrategySpec,
    addrs: &[SocketAddr],
) -> anyhow::Result<RunningEpp> {
    let speedup = scenario.pool.speedup;
    let modelled = pool_config(scenario)?;
    let mut opts = EppOptions::local(addrs);
    opts.refresh_metrics_interval = wall(modelled.scrape_interval, speedup);
    opts.metrics_staleness_threshold = wall(modelled.staleness_threshold, speedup);
    opts.seed = scenario.seed;
    let gateway = start_with_config(&opts, gateway_config(strategy)?)
        .await
        .context("cannot start the gateway")?;
    let deadline = tokio::time::Instant::now() + READY_DEADLINE;
    loop {
        let ready = gateway.pool.pool_stats().ready_endpoints;
        if ready >= addrs.len() {
            return Ok(gateway);
        }
        if tokio::time::Instant::now() >= deadline {
            gateway.shutdown().await;
            anyhow::bail!(
                "the gateway saw {ready} of {} simulators ready within {READY_DEADLINE:?}",
                addrs.len()
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// A pool-time duration in wall time at `speedup`, at least 1 µs.
fn wall(pool: Duration, speedup: f64) -> Duration {
    Duration::try_from_secs_f64(pool.as_secs_f64() / speedup)
        .unwrap_or(Duration::MAX)
        .max(Duration::from_micros(1))
}

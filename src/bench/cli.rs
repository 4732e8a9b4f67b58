//! `igw bench --scenario F`: load the scenario, plan it, run it in the chosen mode,
//! print the comparison and write the report files.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use super::arrivals::ArrivalProcess;
use super::interrupt::{EXIT_INTERRUPTED, Interrupt};
use super::plan::{StagePlan, plan};
use super::progress::Progress;
use super::report::{self, BenchReport};
use super::scenario::{self, Mode, Scenario};
use super::virtual_run;
use super::workload::WorkloadSpec;

/// `igw bench` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchOptions {
    /// The scenario file (see scenarios/README.md).
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// Run in virtual time (the scenario's `mode` decides when no mode flag is given).
    #[arg(long = "virtual", conflicts_with_all = ["live", "target"])]
    pub virtual_time: bool,
    /// Start the simulators and one gateway per strategy in-process; real HTTP.
    #[arg(long, conflicts_with = "target")]
    pub live: bool,
    /// Measure this OpenAI-compatible base URL (e.g. http://gateway:8080) with the
    /// scenario's traffic; nothing is started, the strategies are ignored.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Where to write the report (default: the scenario's `output.dir`, else a
    /// directory named after the scenario under bench-results/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run only this one of the scenario's strategies, named as the report names it
    /// (`epp igw-default`, or `igw-default` for short); repeat for more. The baseline
    /// always runs, so the ratios stay the scenario's.
    #[arg(long = "strategy", value_name = "NAME")]
    pub strategies: Vec<String>,
    /// Live mode: override the scenario's `pool.speedup`.
    #[arg(long, value_name = "X")]
    pub speedup: Option<f64>,
    /// Virtual mode: simulations run at once (default: the machine's cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// A Hugging Face `tokenizer.json` the pool's model uses: prompts are counted and
    /// the replicas write with it (overrides the scenario's `pool.tokenizer`).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Narrows `scenario` to the strategies `wanted` names, and its baseline.
fn keep_strategies(scenario: &mut Scenario, wanted: &[String]) -> anyhow::Result<()> {
    let names_it = |name: &str, w: &str| name == w || name.strip_prefix("epp ") == Some(w);
    let names: Vec<String> = scenario
        .strategies
        .iter()
        .map(|s| s.display_name())
        .collect();
    if let Some(w) = wanted
        .iter()
        .find(|w| !names.iter().any(|n| names_it(n, w)))
    {
        anyhow::bail!(
            "--strategy {w}: the scenario has no strategy of that name (it has: {})",
            names.join(", ")
        );
    }
    // Pinned before filtering: the default baseline depends on which strategies remain.
    let baseline = scenario.baseline_name();
    scenario.baseline = Some(baseline.clone());
    scenario.strategies.retain(|s| {
        let name = s.display_name();
        name == baseline || wanted.iter().any(|w| names_it(&name, w))
    });
    Ok(())
}

/// The mode a run uses, after the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunMode {
    Virtual,
    Live,
    Target(String),
}

impl BenchOptions {
    /// The scenario with the command line's overrides applied and validated.
    pub fn scenario(&self) -> anyhow::Result<(Scenario, RunMode)> {
        let mut s = scenario::load(&self.scenario)?;
        if let Some(seed) = self.seed {
            s.seed = seed;
        }
        if let Some(speedup) = self.speedup {
            s.pool.speedup = speedup;
        }
        if let Some(path) = &self.tokenizer {
            s.pool.tokenizer = Some(path.clone());
            s.pool
                .load_tokenizer()
                .map_err(|e| anyhow::anyhow!("--tokenizer: {e}"))?;
        }
        if !self.strategies.is_empty() {
            keep_strategies(&mut s, &self.strategies)?;
        }
        s.validate(&self.scenario.display().to_string())?;
        let mode = match (&self.target, self.live, self.virtual_time, s.mode) {
            (Some(url), ..) => RunMode::Target(url.clone()),
            (None, true, ..) => RunMode::Live,
            (None, false, true, _) => RunMode::Virtual,
            (None, false, false, Mode::Live) => RunMode::Live,
            (None, false, false, Mode::Virtual) => RunMode::Virtual,
        };
        Ok((s, mode))
    }

    /// Runs the benchmark and prints the comparison; returns the report.
    pub fn run(&self) -> anyhow::Result<BenchReport> {
        let (scenario, mode) = self.scenario()?;
        let started = Instant::now();
        let plans = plan(&scenario).with_context(|| format!("{}", self.scenario.display()))?;
        let requests: usize = plans.iter().map(|p| p.requests.len()).sum();
        let progress = Progress::new(!self.quiet && std::io::stderr().is_terminal());
        eprintln!(
            "{}: {} stage(s), {} requests per strategy (planned in {:.1} s, prompts counted with the {}), {} strategies, {} mode",
            scenario.name,
            plans.len(),
            requests,
            started.elapsed().as_secs_f64(),
            scenario.pool.loaded_tokenizer.describe(),
            match &mode {
                RunMode::Target(_) => 1,
                _ => scenario.strategies.len(),
            },
            match &mode {
                RunMode::Virtual => "virtual",
                RunMode::Live => "live",
                RunMode::Target(_) => "target",
            }
        );
        if let Some(line) = trace_pace(&scenario, &plans) {
            eprintln!("{line}");
        }
        let report = match &mode {
            RunMode::Virtual => {
                let threads = self
                    .threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                virtual_run::run(&scenario, &plans, threads, &progress)?
            }
            RunMode::Live | RunMode::Target(_) => {
                let target = match &mode {
                    RunMode::Target(url) => Some(url.as_str()),
                    _ => None,
                };
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the tokio runtime")?;
                runtime.block_on(async {
                    let interrupt = Interrupt::new();
                    let watcher = interrupt.on_ctrl_c();
                    let report =
                        super::live::run_until(&scenario, &plans, target, &progress, &interrupt)
                            .await;
                    watcher.abort();
                    report
                })?
            }
        };
        let wall = started.elapsed();
        println!("{}", report::comparison_table(&report));
        let dir = self
            .out
            .clone()
            .or_else(|| scenario.output.dir.clone())
            .unwrap_or_else(|| PathBuf::from("bench-results").join(&scenario.name));
        let files = report::write(&report, &dir)
            .with_context(|| format!("cannot write the report to {}", dir.display()))?;
        let charts: Vec<String> = files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "svg"))
            .map(|f| f.display().to_string())
            .collect();
        let done = match report.interrupted {
            Some(_) => "stopped by Ctrl-C after".to_string(),
            None => format!("{requests} requests per strategy in"),
        };
        println!(
            "\n{done} {:.1} s of wall time; wrote {} files to {} (charts: {})",
            wall.as_secs_f64(),
            files.len(),
            dir.display(),
            charts.join(", ")
        );
        if report.interrupted.is_some() {
            // A partial report must not pass for a finished run in a script.
            std::process::exit(EXIT_INTERRUPTED);
        }
        Ok(report)
    }
}

/// For a trace workload, its own pace, which a user needs to pick stage rates:
/// `load.type: trace` replays its timeline scaled to each stage's rate. Says so when
/// a stage sends more requests than the trace holds, since its prompts then repeat.
fn trace_pace(scenario: &Scenario, plans: &[StagePlan]) -> Option<String> {
    let WorkloadSpec::Trace(spec) = &scenario.workload else {
        return None;
    };
    // Read again: the plan keeps only the requests it sends, not the trace.
    let trace = spec.read().ok()?;
    let held = trace.entries.len();
    let rate = trace
        .native_rate()
        .map_or("no pace of its own".to_string(), |r| {
            format!("{r:.2} req/s at its own pace")
        });
    let replay = match scenario.load.process {
        ArrivalProcess::Trace => "; each stage replays its arrivals at the stage's rate",
        _ => "; its lengths only (load.type trace replays its arrival times too)",
    };
    let busiest = plans.iter().max_by_key(|p| p.requests.len());
    let repeats = match busiest {
        Some(p) if p.requests.len() > held => format!(
            "; the {} req/s stage sends {} requests, {:.1} times the trace, so its prompts repeat",
            p.stage.rate,
            p.requests.len(),
            p.requests.len() as f64 / held as f64
        ),
        _ => String::new(),
    };
    Some(format!(
        "trace {}: {held} requests over {:.1} s, {rate}{replay}{repeats}",
        spec.path.display(),
        trace.span()
    ))
}

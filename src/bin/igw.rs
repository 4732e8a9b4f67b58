//! The `igw` command line. Thin: it parses arguments and calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use igw::sim::server::{self, ServeOptions};

#[derive(Parser)]
#[command(name = "igw", version, about = "Inference gateway toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The endpoint picker.
    #[command(subcommand)]
    Epp(EppCommand),
    /// The body-based router: an Envoy ext_proc server that copies the body's model
    /// into a routing header.
    #[command(subcommand)]
    Bbr(BbrCommand),
    /// The vLLM-compatible model-server simulator.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Compare routing strategies on a scenario's traffic, in virtual time or live.
    Bench(BenchArgs),
}

#[derive(Subcommand)]
enum EppCommand {
    /// Run the endpoint picker as a standalone HTTP gateway in front of a pool.
    Run(Box<igw::epp::run::EppOptions>),
}

#[derive(Subcommand)]
enum BbrCommand {
    /// Serve ext_proc (9004), gRPC health (9005) and metrics (9090) for Envoy.
    Run(igw::epp::bbr::BbrOptions),
}

#[derive(Subcommand)]
enum SimCommand {
    /// Serve vLLM's OpenAI-compatible API from simulated engines (no GPU needed).
    Serve(Box<ServeOptions>),
    /// Run the engine in virtual time on constant-rate stages and compare with vLLM.
    Calibrate(igw::sim::calibrate::CalibrateOptions),
    /// Start a pool of replicas in-process, stream requests through it, print results.
    Demo(igw::sim::demo::DemoOptions),
}

/// `igw bench --scenario F` runs a scenario; `igw bench gen-sharegpt` and `igw bench
/// gen-trace` need no scenario.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Absent only with a subcommand (clap requires `--scenario` otherwise).
    #[command(flatten)]
    run: Option<igw::bench::cli::BenchOptions>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Write the bundled ShareGPT-format sample (run by `cargo xtask gen-sharegpt`).
    #[command(hide = true)]
    GenSharegpt(GenSharegptOptions),
    /// Write the bundled trace sample, a made-up chat service in Mooncake's format (run
    /// by `cargo xtask gen-trace`).
    #[command(hide = true)]
    GenTrace(GenTraceOptions),
}

#[derive(clap::Args)]
struct GenTraceOptions {
    /// The file to write.
    #[arg(long, default_value = igw::bench::workload::trace::sample::SAMPLE_PATH)]
    out: std::path::PathBuf,
    #[arg(long, default_value_t = igw::bench::workload::trace::sample::SAMPLE_SEED)]
    seed: u64,
    #[arg(long, default_value_t = igw::bench::workload::trace::sample::SAMPLE_SESSIONS)]
    sessions: usize,
}

#[derive(clap::Args)]
struct GenSharegptOptions {
    /// The file to write.
    #[arg(long, default_value = igw::bench::workload::sharegpt::SAMPLE_PATH)]
    out: std::path::PathBuf,
    #[arg(long, default_value_t = igw::bench::workload::sharegpt::SAMPLE_SEED)]
    seed: u64,
    #[arg(long, default_value_t = igw::bench::workload::sharegpt::SAMPLE_CONVERSATIONS)]
    conversations: usize,
}

/// Errors are printed as one chain of causes (`error: a: b`), never as the debug form
/// `main` would print, which adds a backtrace under `RUST_BACKTRACE=1`.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The servers log what they do at info. A benchmark starts a pool and a gateway per
    // strategy in-process, and their start-up lines would bury its progress bars and
    // tables, so it shows warnings only. RUST_LOG overrides either.
    let (default_level, json) = match &cli.command {
        Command::Bench(_) => ("warn", false),
        // GIE's and llm-d's `--v` and `--zap-encoder json` set the level and format.
        Command::Epp(EppCommand::Run(opts)) => (opts.log_level(), opts.json_logs()),
        _ => ("info", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only for a person at a terminal, never in a log file or a pod's log.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Sim(SimCommand::Serve(opts)) => sim_serve(*opts),
        Command::Epp(EppCommand::Run(opts)) => epp_run(*opts),
        Command::Bbr(BbrCommand::Run(opts)) => bbr_run(opts),
        Command::Sim(SimCommand::Demo(opts)) => {
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
            print!("{}", runtime.block_on(opts.run())?);
            Ok(())
        }
        Command::Sim(SimCommand::Calibrate(opts)) => {
            print!("{}", opts.run()?);
            Ok(())
        }
        Command::Bench(BenchArgs {
            command: Some(BenchCommand::GenSharegpt(opts)),
            ..
        }) => gen_sharegpt(opts),
        Command::Bench(BenchArgs {
            command: Some(BenchCommand::GenTrace(opts)),
            ..
        }) => gen_trace(opts),
        Command::Bench(BenchArgs {
            command: None,
            run: Some(run),
        }) => run.run().map(|_| ()),
        Command::Bench(BenchArgs {
            command: None,
            run: None,
        }) => anyhow::bail!("igw bench needs --scenario FILE"),
    }
}

fn sim_serve(opts: ServeOptions) -> anyhow::Result<()> {
    let config = opts.config()?;
    let listen = opts.listen();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let sim = server::spawn(config.clone(), listen.clone())
            .await
            .with_context(|| format!("cannot listen on {}:{}", listen.host, listen.port))?;
        for (i, addr) in sim.addrs().iter().enumerate() {
            tracing::info!(
                replica = i,
                %addr,
                model = %config.model,
                speedup = config.speedup,
                "simulated vLLM server listening"
            );
        }
        tokio::signal::ctrl_c()
            .await
            .context("cannot listen for Ctrl-C")?;
        tracing::info!("shutting down; finishing requests in flight (Ctrl-C again to quit now)");
        tokio::select! {
            result = sim.shutdown() => result.context("server error"),
            _ = tokio::signal::ctrl_c() => {
                tracing::warn!("quitting with requests still in flight");
                Ok(())
            }
        }
    })
}

fn epp_run(opts: igw::epp::run::EppOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let epp = igw::epp::run::start(&opts).await?;
        tracing::info!(
            ext_proc = %epp.grpc_addr,
            tls = epp.grpc_certificate_pem.is_some(),
            grpc_health = %epp.grpc_health_addr,
            gateway = %epp.proxy_addr.map_or("off".into(), |a| a.to_string()),
            metrics = %epp.metrics_addr,
            "endpoint picker serving"
        );
        tokio::select! {
            signal = stop_signal() => {
                signal?;
                tracing::info!(
                    drain = ?opts.drain_timeout,
                    "shutting down: refusing new streams, finishing open ones"
                );
                epp.shutdown().await;
                Ok(())
            }
            why = epp.failed() => {
                epp.shutdown().await;
                anyhow::bail!("the endpoint picker cannot go on: {why}")
            }
        }
    })
}

/// Ctrl-C, or SIGTERM (how Kubernetes stops a pod).
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot listen for Ctrl-C")
    }
}

fn bbr_run(opts: igw::epp::bbr::BbrOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let bbr = igw::epp::bbr::start(&opts).await?;
        tracing::info!(
            ext_proc = %bbr.grpc_addr,
            tls = bbr.certificate_pem.is_some(),
            health = %bbr.health_addr,
            metrics = %bbr.metrics_addr,
            "body-based router serving"
        );
        stop_signal().await?;
        tracing::info!("shutting down; open streams may finish (Ctrl-C again to quit now)");
        tokio::select! {
            () = bbr.shutdown() => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

fn gen_trace(opts: GenTraceOptions) -> anyhow::Result<()> {
    use igw::bench::workload::trace::sample;
    let text = sample::generate_sample(opts.seed, opts.sessions);
    std::fs::write(&opts.out, &text)
        .with_context(|| format!("cannot write {}", opts.out.display()))?;
    eprintln!(
        "wrote {} ({} bytes, {} requests)",
        opts.out.display(),
        text.len(),
        text.lines().count()
    );
    Ok(())
}

fn gen_sharegpt(opts: GenSharegptOptions) -> anyhow::Result<()> {
    use igw::bench::workload::sharegpt;
    let text = sharegpt::generate_sample(opts.seed, opts.conversations);
    std::fs::write(&opts.out, &text)
        .with_context(|| format!("cannot write {}", opts.out.display()))?;
    let stats = sharegpt::filter_stats(&sharegpt::load(&opts.out)?);
    eprintln!(
        "wrote {} ({} bytes): {} conversations, {} kept by vLLM's filter, mean prompt {:.1} tokens, mean output {:.1} tokens",
        opts.out.display(),
        text.len(),
        stats.entries,
        stats.kept,
        stats.mean_prompt_len,
        stats.mean_output_len,
    );
    Ok(())
}

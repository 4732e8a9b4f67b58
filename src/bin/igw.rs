//! The `igw` command line. Thin: it parses arguments and calls the library.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "igw", version, about = "Inference gateway toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The vLLM-compatible model-server simulator.
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Subcommand)]
enum SimCommand {
    /// Run the engine in virtual time on constant-rate stages and compare with vLLM.
    Calibrate(igw::sim::calibrate::CalibrateOptions),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(cmd) => match cmd {
            SimCommand::Calibrate(opts) => {
                print!("{}", opts.run()?);
                Ok(())
            }
        },
    }
}

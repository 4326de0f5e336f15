//! `strata`: the command line of the Strata container storage layer (contract in DESIGN.md).
#![forbid(unsafe_code)]

mod cmd;
mod global;

use clap::Parser;

/// The Strata container storage layer.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(flatten)]
    global: global::Global,
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("STRATA_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command.run(&cli.global) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("strata: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `strata`: the command line of the Strata container storage layer (contract in DESIGN.md).
#![forbid(unsafe_code)]

mod cmd;
mod global;

use clap::{CommandFactory, FromArgMatches, Parser};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

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
    let (global, command, daemon) = match parse() {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    // A command's output is its report; a daemon's log is where a failure it survives (a
    // fetch left to containerd) shows, so it logs warnings unless STRATA_LOG says otherwise.
    let default = if daemon {
        LevelFilter::WARN
    } else {
        LevelFilter::ERROR
    };
    let filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .with_env_var("STRATA_LOG")
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match command.run(&global) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("strata: {}", message(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line, where the snapshot primitives also work at the top level (hidden), as
/// they did before they moved under `strata snapshot`; and whether the command is the daemon
/// (`serve`).
fn parse() -> Result<(global::Global, cmd::Command, bool), clap::Error> {
    let mut command = Cli::command();
    let primitives: Vec<clap::Command> = command
        .find_subcommand("snapshot")
        .map(|s| s.get_subcommands().cloned().collect())
        .unwrap_or_default();
    for primitive in primitives {
        // `commit` at the top level is docker's, which also takes the older form.
        if command.find_subcommand(primitive.get_name()).is_none() {
            command = command.subcommand(primitive.hide(true));
        }
    }
    let matches = command.get_matches();
    let global = global::Global::from_arg_matches(&matches)?;
    let alias = matches
        .subcommand_name()
        .is_some_and(|name| cmd::snapshot::PRIMITIVES.contains(&name) && name != "commit");
    let command = if alias {
        cmd::Command::Snapshot(cmd::snapshot::Primitive::from_arg_matches(&matches)?)
    } else {
        Cli::from_arg_matches(&matches)?.command
    };
    let daemon = matches.subcommand_name() == Some("serve");
    Ok((global, command, daemon))
}

/// The error and its causes joined by ": ", with a hint when the OS refused access. Each
/// library error's message names only what failed; its cause is the next link of the chain.
fn message(err: &anyhow::Error) -> String {
    let mut out = err
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    let denied = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if denied {
        out.push_str(" (run as root, or pass --root DIR for a store you own)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn the_chain_is_joined_plainly() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(io)
            .context("reading /x")
            .context("diffing /x against /y");
        assert_eq!(
            message(&err),
            "diffing /x against /y: reading /x: entity not found"
        );
    }

    #[test]
    fn permission_denied_gets_the_root_hint() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = anyhow::Error::new(io).context("opening /var/lib/strata");
        assert_eq!(
            message(&err),
            "opening /var/lib/strata: permission denied (run as root, or pass --root DIR for a \
             store you own)"
        );
    }
}

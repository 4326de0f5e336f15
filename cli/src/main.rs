//! `strata`: the command line of the Strata container storage layer (contract in DESIGN.md).
#![forbid(unsafe_code)]

mod cmd;
mod global;

use clap::{CommandFactory, FromArgMatches, Parser};

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
    let (global, command) = match parse() {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    match command.run(&global) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("strata: {}", message(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line, where the snapshot primitives also work at the top level (hidden), as
/// they did before they moved under `strata snapshot`.
fn parse() -> Result<(global::Global, cmd::Command), clap::Error> {
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
    Ok((global, command))
}

/// The error and its causes joined by ": ", leaving out a cause whose text is already there:
/// the library errors put their source into their own message and also return it as
/// `source()`, so the plain chain would say "No such file or directory" twice.
fn message(err: &anyhow::Error) -> String {
    let mut out = chain(err);
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

/// The causes of `err`, each said once.
fn chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn causes_already_in_the_message_are_said_once() {
        /// Like the library errors: the source in the message and as `source()`.
        #[derive(Debug)]
        struct Reading(std::io::Error);
        impl std::fmt::Display for Reading {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "reading /x: {}", self.0)
            }
        }
        impl std::error::Error for Reading {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(Reading(io)).context("diffing /x against /y");
        assert_eq!(
            message(&err),
            "diffing /x against /y: reading /x: entity not found"
        );
        let plain = anyhow::anyhow!("disk full").context("writing layer");
        assert_eq!(message(&plain), "writing layer: disk full");
    }
}

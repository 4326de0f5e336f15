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
            eprintln!("strata: {}", message(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text is already there:
/// the library errors put their source into their own message and also return it as
/// `source()`, so the plain chain would say "No such file or directory" twice.
fn message(err: &anyhow::Error) -> String {
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

//! `strata build`: a Dockerfile built into an image of the store, with the build cache.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use strata_build::{BuildOptions, Builder, Network, Outcome, Progress};
use strata_layer_store::name::familiar;
use strata_layer_store::{Part, PartEnd};

use super::registry::RegistryArgs;
use crate::global::{Access, Global};

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile; unchanged steps come from the build cache (needs
    /// root: RUN runs in runc on overlay snapshots).
    Build(Build),
}

/// `strata build`'s arguments.
#[derive(Debug, clap::Args)]
pub struct Build {
    /// The build context: the directory COPY and ADD read from.
    context: PathBuf,
    /// Name the image (repeatable); without one it is known by its id only.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// The Dockerfile [default: CONTEXT/Dockerfile].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Build this stage (its AS name or number) instead of the last.
    #[arg(long)]
    target: Option<String>,
    /// A build argument, NAME=VALUE, or NAME to take its value from the environment
    /// (repeatable).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]", value_parser = parse_build_arg)]
    build_args: Vec<(String, String)>,
    /// Run every step; the results still refresh the cache.
    #[arg(long)]
    no_cache: bool,
    /// The network of RUN steps that do not choose one with --network.
    #[arg(long, value_enum, default_value_t = NetworkArg::None)]
    network: NetworkArg,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `--network`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum NetworkArg {
    /// A network namespace with only a loopback device.
    None,
    /// The host's network.
    Host,
}

fn parse_build_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
        None => std::env::var(s)
            .map(|value| (s.to_owned(), value))
            .map_err(|_| format!("--build-arg {s}: no value given and {s} is not set")),
    }
}

/// Prints each step as it starts and ends: on stdout, or on stderr under `--json`.
struct Lines {
    json: bool,
    /// The running step: its number of all, and when it started (steps run one at a time).
    running: std::sync::Mutex<Option<(usize, usize, std::time::Instant)>>,
}

impl Lines {
    fn print(&self, line: &str) {
        // A closed pipe must not fail the build.
        let _ = if self.json {
            writeln!(std::io::stderr(), "{line}")
        } else {
            writeln!(std::io::stdout(), "{line}")
        };
    }
}

impl Progress for Lines {
    fn part_started(&self, step: &Part<'_>) {
        let (number, total) = (step.index + 1, step.of);
        self.print(&format!("[{number}/{total}] {}", step.name));
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((number, total, std::time::Instant::now()));
    }

    fn part_finished(&self, _index: usize, end: PartEnd) {
        let Some((number, total, start)) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let done = match end {
            PartEnd::Reused => "CACHED".to_owned(),
            _ => format!("DONE {:.2}s", start.elapsed().as_secs_f64()),
        };
        self.print(&format!("[{number}/{total}] {done}"));
    }
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        let Command::Build(args) = self;
        args.run(global)
    }
}

impl Build {
    fn run(self, global: &Global) -> anyhow::Result<()> {
        let root = global.root_for(Access::Create)?;
        let builder = Builder::open(&root, global.durability())
            .with_context(|| format!("opening store {}", root.display()))?;
        let mut options = BuildOptions::default();
        options.dockerfile = self.file;
        options.tags = self.tags;
        options.target = self.target;
        options.build_args = self.build_args.into_iter().collect();
        options.no_cache = self.no_cache;
        options.network = match self.network {
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        };
        options.connection = self.registry.connection()?;
        let progress = Lines {
            json: global.json,
            running: std::sync::Mutex::new(None),
        };
        let report = builder
            .build(&self.context, &options, &progress)
            .with_context(|| format!("building {}", self.context.display()))?;
        global.emit(&report, || {
            let names: Vec<&str> = report.tags.iter().map(|t| familiar(t)).collect();
            let cached = report
                .steps
                .iter()
                .filter(|s| s.outcome == Outcome::Cached)
                .count();
            format!(
                "built sha256:{}{} ({cached}/{} steps cached)",
                report.image,
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" as {}", names.join(", "))
                },
                report.steps.len()
            )
        })
    }
}

/// A duration: a number with a unit `s`, `m`, `h` or `d` (`30m`, `7d`), or seconds alone.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, as 30m, 24h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(n * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}

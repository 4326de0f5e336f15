//! The subcommands, one module per crate they drive.

mod diff;
mod registry;
mod snapshot;
mod store;

use crate::global::Global;

/// Every subcommand of `strata`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    #[command(flatten)]
    Diff(diff::Command),
    #[command(flatten)]
    Store(store::Command),
    #[command(flatten)]
    Snapshot(snapshot::Command),
    #[command(flatten)]
    Registry(registry::Command),
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        match self {
            Command::Diff(cmd) => cmd.run(global),
            Command::Store(cmd) => cmd.run(global),
            Command::Snapshot(cmd) => cmd.run(global),
            Command::Registry(cmd) => cmd.run(global),
        }
    }
}

//! Commands over strata-snapshotter: snapshots, rootfs, serve, quickstart.

use crate::global::Global;

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

impl Command {
    pub fn run(self, _global: &Global) -> anyhow::Result<()> {
        match self {}
    }
}

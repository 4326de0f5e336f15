//! The subcommands: docker's verbs at the top level, containerd's snapshot primitives under
//! `snapshot`.

mod archive;
mod build;
mod diff;
mod image;
mod login;
mod registry;
pub mod snapshot;
mod store;
mod table;

use crate::global::Global;

/// Every subcommand of `strata`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    #[command(flatten)]
    Image(image::Command),
    #[command(flatten)]
    Store(store::Command),
    #[command(flatten)]
    Archive(archive::Command),
    #[command(flatten)]
    Registry(registry::Command),
    #[command(flatten)]
    Login(login::Command),
    #[command(flatten)]
    Container(snapshot::container::Command),
    /// containerd's snapshot primitives: prepare, view, commit, rm, stat, ls, usage, mounts,
    /// mount, umount.
    #[command(subcommand)]
    Snapshot(snapshot::Primitive),
    #[command(flatten)]
    Diff(diff::Command),
    #[command(flatten)]
    Build(build::Command),
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        match self {
            Command::Image(cmd) => cmd.run(global),
            Command::Store(cmd) => cmd.run(global),
            Command::Archive(cmd) => cmd.run(global),
            Command::Registry(cmd) => cmd.run(global),
            Command::Login(cmd) => cmd.run(global),
            Command::Container(cmd) => cmd.run(global),
            Command::Snapshot(cmd) => cmd.run(global),
            Command::Diff(cmd) => cmd.run(global),
            Command::Build(cmd) => cmd.run(global),
        }
    }
}

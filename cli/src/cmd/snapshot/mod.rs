//! Commands over strata-snapshotter: containerd's snapshot primitives under `strata snapshot`
//! (and, hidden, at the top level where they used to be); containers on images in
//! [`container`].

pub mod container;
mod fetch;
mod quickstart;
mod serve;

use std::path::PathBuf;

use anyhow::Context;
use strata_snapshotter::{Info, Labels, MountSpec, Snapshotter};

use super::table::{Table, rfc3339};
use crate::global::{Access, Global};

/// containerd's snapshot primitives.
#[derive(Debug, clap::Subcommand)]
pub enum Primitive {
    /// Create an active (writable) snapshot KEY on the committed PARENT; prints its mounts.
    Prepare {
        /// Key of the new snapshot.
        key: String,
        /// Committed parent.
        parent: Option<String>,
        /// A label, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Create a read-only view KEY of the committed PARENT; prints its mounts.
    View {
        /// Key of the new view.
        key: String,
        /// Committed parent.
        parent: String,
        /// A label, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Commit the active snapshot KEY as NAME.
    Commit {
        /// Name of the committed snapshot.
        name: String,
        /// The active snapshot to commit.
        key: String,
        /// A label, KEY=VALUE (repeatable); replaces the active snapshot's labels.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Remove snapshot KEY (it must have no children, and not be mounted).
    #[command(name = "rm")]
    Remove {
        /// The snapshot to remove.
        key: String,
        /// Unmount it first where it is mounted.
        #[arg(short, long)]
        force: bool,
    },
    /// Show snapshot KEY.
    Stat {
        /// The snapshot.
        key: String,
    },
    /// List snapshots matching any FILTER (containerd syntax, e.g. `kind==active,labels.l`).
    Ls {
        /// Filters; several are OR-ed, commas inside one are AND-ed.
        filters: Vec<String>,
        /// Print keys only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Disk usage of snapshot KEY.
    Usage {
        /// The snapshot.
        key: String,
    },
    /// The mounts of active snapshot or view KEY, as containerd gets them.
    Mounts {
        /// The snapshot.
        key: String,
    },
    /// Mount snapshot KEY at TARGET (stays mounted; `strata snapshot umount TARGET` undoes
    /// it). A snapshot mounted already is refused.
    Mount {
        /// The snapshot.
        key: String,
        /// An existing directory.
        target: PathBuf,
        /// Unmount it first where it is mounted already.
        #[arg(short, long)]
        force: bool,
    },
    /// Unmount TARGET.
    Umount {
        /// The mount point.
        target: PathBuf,
    },
}

/// The names of the primitives, which also work at the top level as before.
pub const PRIMITIVES: &[&str] = &[
    "prepare", "view", "commit", "rm", "stat", "ls", "usage", "mounts", "mount", "umount",
];

pub(super) fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))
}

/// The snapshotter of the root, in the namespace `--namespace` names, with its layer store.
fn open(global: &Global, access: Access) -> anyhow::Result<Snapshotter> {
    open_in(global, access, &global.namespace)
}

/// The snapshotter of the root in `namespace`.
fn open_in(global: &Global, access: Access, namespace: &str) -> anyhow::Result<Snapshotter> {
    let root = global.root_for(access)?;
    let sn = Snapshotter::open_in(&root, namespace)
        .with_context(|| format!("opening snapshots in {}", root.display()))?;
    Ok(sn.with_durability(global.durability()))
}

/// One line per mount: `TYPE SOURCE OPTION,OPTION…`.
fn mounts_text(mounts: &[MountSpec]) -> String {
    mounts
        .iter()
        .map(|m| format!("{} {} {}", m.fs_type, m.source, m.options.join(",")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(serde::Serialize)]
struct MountJson<'a> {
    r#type: &'a str,
    source: &'a str,
    options: &'a [String],
}

fn mounts_json(mounts: &[MountSpec]) -> Vec<MountJson<'_>> {
    mounts
        .iter()
        .map(|m| MountJson {
            r#type: &m.fs_type,
            source: &m.source,
            options: &m.options,
        })
        .collect()
}

fn info_text(info: &Info) -> String {
    let mut lines = vec![
        format!("name: {}", info.name),
        format!("parent: {}", info.parent.as_deref().unwrap_or("")),
        format!("kind: {}", info.kind),
        format!("created: {}", rfc3339(info.created)),
        format!("updated: {}", rfc3339(info.updated)),
    ];
    lines.extend(info.labels.iter().map(|(k, v)| format!("label: {k}={v}")));
    lines.join("\n")
}

/// Where snapshot `key` is mounted now; nothing for a committed snapshot, which has no mounts.
fn mount_points(sn: &Snapshotter, key: &str) -> anyhow::Result<Vec<PathBuf>> {
    let Ok(specs) = sn.mounts(key) else {
        return Ok(Vec::new());
    };
    let mut points = Vec::new();
    for spec in &specs {
        points.extend(
            spec.mounted_at()
                .context("reading the mount table /proc/self/mountinfo")?,
        );
    }
    Ok(points)
}

/// Unmounts snapshot `key` where it is mounted when `force`, else refuses, naming where: what
/// `doing` would do to a live mount is not what its user expects.
fn refuse_mounted(sn: &Snapshotter, key: &str, force: bool, doing: &str) -> anyhow::Result<()> {
    for point in mount_points(sn, key)? {
        if force {
            strata_cow::unmount(&point)?;
        } else {
            anyhow::bail!(
                "snapshot {key} is mounted at {}: {doing}; unmount it \
                 (`strata snapshot umount {}`), or pass -f to have it unmounted first",
                point.display(),
                point.display()
            );
        }
    }
    Ok(())
}

impl Primitive {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        let labels = |l: Vec<(String, String)>| l.into_iter().collect::<Labels>();
        match self {
            Primitive::Prepare {
                key,
                parent,
                labels: l,
            } => {
                let mounts = open(global, Access::Create)?
                    .prepare(&key, parent.as_deref(), labels(l))
                    .with_context(|| format!("prepare {key}"))?;
                global.emit(&mounts_json(&mounts), || mounts_text(&mounts))
            }
            Primitive::View {
                key,
                parent,
                labels: l,
            } => {
                let mounts = open(global, Access::Read)?
                    .view(&key, Some(&parent), labels(l))
                    .with_context(|| format!("view {key}"))?;
                global.emit(&mounts_json(&mounts), || mounts_text(&mounts))
            }
            Primitive::Commit {
                name,
                key,
                labels: l,
            } => {
                let sn = open(global, Access::Read)?;
                sn.commit(&name, &key, labels(l))
                    .with_context(|| format!("commit {key} as {name}"))?;
                let info = sn.stat(&name)?;
                global.emit(&info, String::new)
            }
            Primitive::Remove { key, force } => {
                let sn = open(global, Access::Read)?;
                refuse_mounted(&sn, &key, force, "removing it would empty the live mount")?;
                sn.remove(&key).with_context(|| format!("rm {key}"))?;
                global.emit(&serde_json::json!({ "removed": key }), String::new)
            }
            Primitive::Stat { key } => {
                let info = open(global, Access::Read)?.stat(&key)?;
                global.emit(&info, || info_text(&info))
            }
            Primitive::Ls { filters, quiet } => {
                // Every namespace, each snapshot with its owner, as one listing.
                let all = open(global, Access::Read)?.list_all_namespaces(&filters)?;
                if quiet && !global.json {
                    for i in &all {
                        println!("{}", i.name);
                    }
                    return Ok(());
                }
                global.emit(&all, || {
                    let mut table = Table::new(&["KEY", "PARENT", "KIND", "OWNER"]);
                    for i in &all {
                        let parent = i.parent.clone().unwrap_or_default();
                        table.row(vec![
                            i.name.clone(),
                            parent,
                            i.kind.to_string(),
                            i.namespace.clone(),
                        ]);
                    }
                    table.render()
                })
            }
            Primitive::Usage { key } => {
                let usage = open(global, Access::Read)?.usage(&key)?;
                global.emit(&usage, || {
                    format!("{} bytes, {} inodes", usage.size, usage.inodes)
                })
            }
            Primitive::Mounts { key } => {
                let mounts = open(global, Access::Read)?.mounts(&key)?;
                global.emit(&mounts_json(&mounts), || mounts_text(&mounts))
            }
            Primitive::Mount { key, target, force } => {
                let sn = open(global, Access::Read)?;
                refuse_mounted(
                    &sn,
                    &key,
                    force,
                    "a second mount would share its upper directory with the first",
                )?;
                let guard = sn
                    .mount(&key, &target)
                    .with_context(|| format!("mount {key} at {}", target.display()))?;
                let target = guard.into_persistent();
                global.emit(&serde_json::json!({ "mounted": target }), || {
                    target.display().to_string()
                })
            }
            Primitive::Umount { target } => {
                // Its errors name the mount point already.
                strata_cow::unmount(&target)?;
                global.emit(&serde_json::json!({ "unmounted": target }), String::new)
            }
        }
    }
}

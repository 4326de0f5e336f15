//! Commands over strata-snapshotter: snapshots, rootfs, serve, quickstart.

mod quickstart;
mod serve;

use std::path::PathBuf;

use anyhow::Context;
use strata_layer_store::Store;
use strata_snapshotter::{Info, Labels, MountSpec, Snapshotter};

use crate::global::Global;

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
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
    /// Commit the active snapshot KEY as NAME; with `--image NEW`, its changes also become a
    /// new layer on its image (see `rootfs`), stored as image NEW.
    Commit {
        /// Name of the committed snapshot.
        name: String,
        /// The active snapshot to commit.
        key: String,
        /// Also store the snapshot's image plus its changes as image NEW.
        #[arg(long, value_name = "NEW")]
        image: Option<String>,
        /// A label, KEY=VALUE (repeatable); replaces the active snapshot's labels.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Remove snapshot KEY (it must have no children).
    #[command(name = "rm")]
    Remove {
        /// The snapshot to remove.
        key: String,
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
    /// Mount snapshot KEY at TARGET (stays mounted; `strata umount TARGET` undoes it).
    Mount {
        /// The snapshot.
        key: String,
        /// An existing directory.
        target: PathBuf,
    },
    /// Unmount TARGET.
    Umount {
        /// The mount point.
        target: PathBuf,
    },
    /// Prepare a writable container rootfs KEY on the layers of imported IMAGE, without copying
    /// them; prints its mounts.
    Rootfs {
        /// An imported image (name or id).
        image: String,
        /// Key of the new active snapshot.
        key: String,
        /// A label, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Build a sample image from files of this machine, run a container rootfs on it, commit
    /// and export the result, and report what happened with timings (needs root).
    Quickstart(quickstart::Quickstart),
    /// Serve containerd's snapshots API on a unix socket (a containerd proxy snapshotter).
    Serve(serve::Serve),
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))
}

fn open(global: &Global) -> anyhow::Result<Snapshotter> {
    let root = global.root();
    Snapshotter::open(&root).with_context(|| format!("opening snapshots in {}", root.display()))
}

/// The snapshotter and the layer store of the root, sharing its database.
fn open_with_store(global: &Global) -> anyhow::Result<(Snapshotter, Store)> {
    let sn = open(global)?;
    let store = Store::open_with_db(sn.root(), sn.database())
        .with_context(|| format!("opening the layer store in {}", sn.root().display()))?
        .with_durability(global.durability());
    Ok((sn, store))
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
        format!("created: {}", unix_secs(info.created)),
        format!("updated: {}", unix_secs(info.updated)),
    ];
    lines.extend(info.labels.iter().map(|(k, v)| format!("label: {k}={v}")));
    lines.join("\n")
}

fn unix_secs(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        let labels = |l: Vec<(String, String)>| l.into_iter().collect::<Labels>();
        match self {
            Command::Prepare {
                key,
                parent,
                labels: l,
            } => {
                let mounts = open(global)?
                    .prepare(&key, parent.as_deref(), labels(l))
                    .with_context(|| format!("prepare {key}"))?;
                global.emit(&mounts_json(&mounts), || mounts_text(&mounts))
            }
            Command::View {
                key,
                parent,
                labels: l,
            } => {
                let mounts = open(global)?
                    .view(&key, Some(&parent), labels(l))
                    .with_context(|| format!("view {key}"))?;
                global.emit(&mounts_json(&mounts), || mounts_text(&mounts))
            }
            Command::Commit {
                name,
                key,
                image: None,
                labels: l,
            } => {
                let sn = open(global)?;
                sn.commit(&name, &key, labels(l))
                    .with_context(|| format!("commit {key} as {name}"))?;
                let info = sn.stat(&name)?;
                global.emit(&info, String::new)
            }
            Command::Commit {
                name,
                key,
                image: Some(image),
                labels: l,
            } => {
                let (sn, store) = open_with_store(global)?;
                // Refuse a taken NAME before making the image, not after.
                if sn.stat(&name).is_ok() {
                    anyhow::bail!("commit {key} as {name}: snapshot {name:?} already exists");
                }
                let made = sn
                    .commit_image(&key, &store, &image)
                    .with_context(|| format!("commit {key} as image {image}"))?;
                sn.commit(&name, &key, labels(l))
                    .with_context(|| format!("commit {key} as {name}"))?;
                let snapshot = sn.stat(&name)?;
                let out = serde_json::json!({ "snapshot": snapshot, "image": made });
                global.emit(&out, || {
                    format!(
                        "image {image} ({}): new layer {} ({} changes, {} bytes)",
                        made.import.image, made.diff_id, made.changes, made.blob_size
                    )
                })
            }
            Command::Remove { key } => {
                open(global)?
                    .remove(&key)
                    .with_context(|| format!("rm {key}"))?;
                global.emit(&serde_json::json!({ "removed": key }), String::new)
            }
            Command::Stat { key } => {
                let info = open(global)?.stat(&key)?;
                global.emit(&info, || info_text(&info))
            }
            Command::Ls { filters } => {
                let all = open(global)?.list(&filters)?;
                global.emit(&all, || {
                    let mut out = format!("{:<40} {:<40} {}", "KEY", "PARENT", "KIND");
                    for i in &all {
                        let parent = i.parent.as_deref().unwrap_or("");
                        out.push_str(&format!("\n{:<40} {:<40} {}", i.name, parent, i.kind));
                    }
                    out
                })
            }
            Command::Usage { key } => {
                let usage = open(global)?.usage(&key)?;
                global.emit(&usage, || {
                    format!("{} bytes, {} inodes", usage.size, usage.inodes)
                })
            }
            Command::Mounts { key } => {
                let mounts = open(global)?.mounts(&key)?;
                global.emit(&mounts_json(&mounts), || mounts_text(&mounts))
            }
            Command::Mount { key, target } => {
                let guard = open(global)?
                    .mount(&key, &target)
                    .with_context(|| format!("mount {key} at {}", target.display()))?;
                let target = guard.into_persistent();
                global.emit(&serde_json::json!({ "mounted": target }), || {
                    target.display().to_string()
                })
            }
            Command::Umount { target } => {
                // Its errors name the mount point already.
                strata_cow::unmount(&target)?;
                global.emit(&serde_json::json!({ "unmounted": target }), String::new)
            }
            Command::Rootfs {
                image,
                key,
                labels: l,
            } => {
                let (sn, store) = open_with_store(global)?;
                let mounts = sn
                    .prepare_on_image(&key, &store, &image, labels(l))
                    .with_context(|| format!("rootfs {key} on image {image}"))?;
                global.emit(&mounts_json(&mounts), || mounts_text(&mounts))
            }
            Command::Quickstart(quickstart) => quickstart.run(global),
            Command::Serve(serve) => serve.run(global),
        }
    }
}

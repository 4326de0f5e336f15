//! Containers on images, in docker's words: `rootfs IMAGE KEY` makes a container's writable
//! snapshot, `commit CONTAINER IMAGE` turns its changes into an image; and the whole pipeline
//! (`quickstart`) and the containerd proxy (`serve`).

use anyhow::Context;
use strata_layer_store::name::familiar;
use strata_snapshotter::{Kind, Labels, Snapshotter};

use super::{mounts_json, mounts_text, open, parse_label, quickstart, serve};
use crate::cmd::table::short;
use crate::global::{Access, Global};

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Prepare a writable container rootfs KEY on the layers of imported IMAGE, without copying
    /// them; prints its mounts.
    Rootfs {
        /// An imported image (a name or at least 4 hex digits of its id).
        image: String,
        /// Key of the new active snapshot.
        key: String,
        /// A label, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Store the changes of container CONTAINER (an active snapshot made by `rootfs`) as one
    /// more layer on its image, as image IMAGE; the container stays as it is.
    Commit {
        /// The container: an active snapshot on an image.
        container: String,
        /// The new image's name, `[REGISTRY/]REPOSITORY[:TAG]`; without it, the image has
        /// only its id.
        image: Option<String>,
        /// Older form `commit NAME KEY --image NEW`: also commit snapshot KEY as NAME.
        #[arg(long = "image", value_name = "NEW", hide = true)]
        new_image: Option<String>,
        /// Older form: labels of the committed snapshot.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label, hide = true)]
        labels: Vec<(String, String)>,
    },
    /// Build a sample image from files of this machine, run a container rootfs on it, commit
    /// and export the result, and report what happened with timings (needs root).
    Quickstart(quickstart::Quickstart),
    /// Serve containerd's snapshots API on a unix socket (a containerd proxy snapshotter).
    Serve(serve::Serve),
}

/// Whether `key` is an active snapshot.
fn is_active(sn: &Snapshotter, key: &str) -> bool {
    sn.stat(key).is_ok_and(|info| info.kind == Kind::Active)
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        match self {
            Command::Rootfs { image, key, labels } => {
                let sn = open(global, Access::Read)?;
                let mounts = sn
                    .prepare_on_image(&key, &image, labels.into_iter().collect())
                    .with_context(|| format!("rootfs {key} on image {image}"))?;
                global.emit(&mounts_json(&mounts), || mounts_text(&mounts))
            }
            Command::Commit {
                container,
                image,
                new_image,
                labels,
            } => {
                let sn = open(global, Access::Read)?;
                // `commit NAME KEY` in containerd's order, as `strata commit` took it before:
                // with --image or --label, or when only the second is a container.
                let older = new_image.is_some()
                    || !labels.is_empty()
                    || image
                        .as_deref()
                        .is_some_and(|key| is_active(&sn, key) && !is_active(&sn, &container));
                if older {
                    let key = image.context(
                        "commit NAME KEY --image NEW needs KEY; to make an image of a container, \
                         run `strata commit CONTAINER IMAGE`",
                    )?;
                    return commit_snapshot(global, &sn, &container, &key, new_image, labels);
                }
                let made = match &image {
                    Some(image) => sn
                        .commit_image(&container, image)
                        .with_context(|| format!("commit {container} as image {image}"))?,
                    None => commit_untagged(&sn, &container)?,
                };
                global.emit(&made, || format!("sha256:{}", made.import.image))
            }
            Command::Quickstart(quickstart) => quickstart.run(global),
            Command::Serve(serve) => serve.run(global),
        }
    }
}

/// `commit CONTAINER` without a name: an image listed by its id only, as docker makes one.
/// The commit names the image it stores, so it gets a name of this process for the moment.
fn commit_untagged(
    sn: &Snapshotter,
    container: &str,
) -> anyhow::Result<strata_snapshotter::ImageCommit> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let transient = format!("localhost/strata-commit:{}-{nanos}", std::process::id());
    let mut made = sn
        .commit_image(container, &transient)
        .with_context(|| format!("commit {container}"))?;
    sn.store()
        .untag(&transient)
        .with_context(|| format!("commit {container}: removing the name {transient}"))?;
    made.import.tags.clear();
    Ok(made)
}

/// The older `commit NAME KEY [--image NEW]`: commits snapshot KEY as NAME, after storing its
/// changes as image NEW when asked.
fn commit_snapshot(
    global: &Global,
    sn: &Snapshotter,
    name: &str,
    key: &str,
    image: Option<String>,
    labels: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let labels: Labels = labels.into_iter().collect();
    let Some(image) = image else {
        sn.commit(name, key, labels)
            .with_context(|| format!("commit {key} as {name}"))?;
        let info = sn.stat(name)?;
        return global.emit(&info, String::new);
    };
    // Refuse a taken NAME before making the image, not after.
    if sn.stat(name).is_ok() {
        anyhow::bail!("commit {key} as {name}: snapshot {name:?} already exists");
    }
    let made = sn
        .commit_image(key, &image)
        .with_context(|| format!("commit {key} as image {image}"))?;
    sn.commit(name, key, labels)
        .with_context(|| format!("commit {key} as {name}"))?;
    let snapshot = sn.stat(name)?;
    let out = serde_json::json!({ "snapshot": snapshot, "image": made });
    global.emit(&out, || {
        format!(
            "image {} ({}): new layer {} ({} changes, {} bytes)",
            made.import
                .tags
                .first()
                .map_or(image.as_str(), |t| familiar(t)),
            short(&made.import.image),
            made.diff_id,
            made.changes,
            made.blob_size
        )
    })
}

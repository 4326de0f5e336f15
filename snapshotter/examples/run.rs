//! Runs a command in a container on an image and commits what it changed as a new image: what a
//! container runtime does with Strata, through the library API alone.
//!
//! ```text
//! cargo run --release --example run -- --root DIR --image OCI_LAYOUT [--tag NAME] -- COMMAND…
//! ```
//!
//! Imports the OCI layout into the store at `DIR`, prepares a writable snapshot on the image,
//! mounts it as the rootfs, runs `COMMAND` in it with runc (its stdout passed through), unmounts,
//! commits the changes as a new image (tagged `NAME`, by default the snapshot's key) and prints
//! that image's id. Needs root and Debian's `runc`. Nothing stays mounted, also on error.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use strata_layer_store::ImportOptions;
use strata_snapshotter::runc::Container;
use strata_snapshotter::{Labels, Snapshotter};

/// The command line.
pub struct Args {
    /// The store's root.
    pub root: PathBuf,
    /// The OCI layout to import and run on.
    pub image: PathBuf,
    /// The committed image's name.
    pub tag: Option<String>,
    /// What to run, program first.
    pub command: Vec<String>,
}

const USAGE: &str = "usage: run --root DIR --image OCI_LAYOUT [--tag NAME] -- COMMAND…";

impl Args {
    /// Parses `--root DIR --image OCI_LAYOUT [--tag NAME] -- COMMAND…` (no program name).
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Args> {
        let mut args = args.into_iter();
        let (mut root, mut image, mut tag) = (None, None, None);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .with_context(|| format!("{arg:?} needs a value"))
            };
            match arg.to_str() {
                Some("--root") => root = Some(PathBuf::from(value()?)),
                Some("--image") => image = Some(PathBuf::from(value()?)),
                Some("--tag") => tag = Some(value()?.to_string_lossy().into_owned()),
                Some("--") => break,
                _ => bail!("unexpected {arg:?}\n{USAGE}"),
            }
        }
        let command: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
        ensure!(!command.is_empty(), "no COMMAND\n{USAGE}");
        Ok(Args {
            root: root.context(USAGE)?,
            image: image.context(USAGE)?,
            tag,
            command,
        })
    }
}

/// Runs `args.command` on `args.image`, its stdout sent to `stdout`; returns the committed
/// image's id.
pub fn run(args: &Args, stdout: Stdio) -> anyhow::Result<String> {
    let snapshotter = Snapshotter::open(&args.root)
        .with_context(|| format!("opening {}", args.root.display()))?;
    // The snapshotter's own store: snapshots pin the image's layers in it.
    let store = snapshotter.store();
    let imported = store
        .import(&args.image, &ImportOptions::default())
        .with_context(|| format!("importing {}", args.image.display()))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let key = format!("run-{nanos}");
    snapshotter.prepare_on_image(&key, &imported.image, Labels::new())?;
    let committed = run_and_commit(args, &snapshotter, &key, stdout);
    // The new image keeps the layers it needs; the container's snapshot goes either way.
    let removed = snapshotter.remove(&key);
    let image = committed?;
    removed.with_context(|| format!("removing snapshot {key}"))?;
    Ok(image)
}

/// Mounts snapshot `key`, runs the command in it, unmounts it and commits it.
fn run_and_commit(
    args: &Args,
    snapshotter: &Snapshotter,
    key: &str,
    stdout: Stdio,
) -> anyhow::Result<String> {
    let bundle = tempfile::tempdir().context("creating the bundle dir")?;
    let rootfs = bundle.path().join("rootfs");
    fs::create_dir(&rootfs)?;
    // Dropped on any early return, the guard unmounts.
    let mounted = snapshotter.mount(key, &rootfs)?;
    let status = Container::new(&rootfs, args.command.iter().cloned())
        .stdout(stdout)
        .run(bundle.path(), key);
    mounted.unmount()?;
    let status = status?;
    ensure!(status.success(), "{:?} failed: {status}", args.command);
    let tag = args.tag.as_deref().unwrap_or(key);
    Ok(snapshotter.commit_image(key, tag)?.import.image)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse(std::env::args_os().skip(1))?;
    let image = run(&args, Stdio::inherit())?;
    println!("{image}");
    Ok(())
}

//! `strata quickstart`: the whole path once, on files of this machine: a sample image, its
//! import, a container rootfs on it, writes, a commit as a new image, an OCI export.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use strata_diff::{Compression, DiffOptions, WriteOptions};
use strata_layer_store::{ImportOptions, ImportReport};
use strata_snapshotter::{Labels, Snapshotter};

use crate::global::Global;

const BASE: &str = "quickstart-base";
const APP: &str = "quickstart-app";
/// Fixed layer mtimes: the sample layer is the same bytes on every run, so reruns find it.
const EPOCH: i64 = 1_700_000_000;

/// Build, import, run, commit and export a sample image (needs root for its mounts).
#[derive(Debug, clap::Args)]
pub struct Quickstart {
    /// Where to write the OCI layout of the committed image [default: ROOT/quickstart/oci].
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

/// One step, as reported.
#[derive(Debug, serde::Serialize)]
struct Step {
    step: &'static str,
    ms: f64,
    what: String,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    root: PathBuf,
    steps: Vec<Step>,
    base_import: ImportReport,
    app_import: ImportReport,
    export: PathBuf,
}

struct Steps(Vec<Step>);

impl Steps {
    /// Runs `f` as step `step`; `f` says what it did.
    fn run<T>(
        &mut self,
        step: &'static str,
        f: impl FnOnce() -> anyhow::Result<(T, String)>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        let (value, what) = f().with_context(|| format!("quickstart step {step}"))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        self.0.push(Step { step, ms, what });
        Ok(value)
    }
}

impl Quickstart {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        if !rustix::process::geteuid().is_root() {
            bail!(
                "quickstart mounts overlays, which needs root: run it as root \
                 (e.g. `sudo target/release/strata quickstart --root /tmp/strata-demo`)"
            );
        }
        let root = global.root();
        let output = self.output.unwrap_or_else(|| root.join("quickstart/oci"));
        let sn = Snapshotter::open(&root)
            .with_context(|| format!("opening snapshots in {}", root.display()))?;
        let store = sn.store();
        let work = tempfile::tempdir().context("creating a scratch dir")?;
        let mut steps = Steps(Vec::new());

        let layer = steps.run("build", || {
            let (tree, source) = sample_tree(&work.path().join("sample"))?;
            let layer = work.path().join("base.tar.gz");
            let empty = work.path().join("empty");
            fs::create_dir(&empty)?;
            let set = strata_diff::changes(&empty, &tree, &DiffOptions::default())?;
            let options = WriteOptions::new(Compression::Gzip).with_source_date_epoch(Some(EPOCH));
            let digests = strata_diff::write_layer(&set, &options, fs::File::create(&layer)?)?;
            let what = format!(
                "a one-layer image from {source}: {} entries, {} bytes gzip",
                set.changes.len(),
                digests.size
            );
            Ok((layer, what))
        })?;
        let base_import = steps.run("import", || {
            // Strata's writer made the blob; export rebuilds it byte for byte.
            let options = ImportOptions::default()
                .with_name(Some(BASE.to_owned()))
                .with_blob_policy(Some(strata_layer_store::BlobPolicy::Reproducible));
            let report = store.import(&layer, &options)?;
            let what = format!("{BASE} {}: {}", short(&report.image), dedup(&report));
            Ok((report, what))
        })?;

        // Unique per run; removed at the end, the committed image keeps what it needs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let key = format!("quickstart-{nanos}");
        steps.run("rootfs", || {
            let mounts = sn.prepare_on_image(&key, BASE, Labels::new())?;
            let what = format!(
                "writable snapshot {key} on the image's layers, nothing copied ({} mount)",
                mounts.first().map_or("no", |m| m.fs_type.as_str())
            );
            Ok(((), what))
        })?;
        let target = work.path().join("rootfs");
        fs::create_dir(&target)?;
        let guard = steps.run("mount", || {
            let guard = sn.mount(&key, &target)?;
            Ok((guard, format!("container rootfs at {}", target.display())))
        })?;
        steps.run("write", || {
            fs::write(
                target.join("etc/motd"),
                "written inside a strata container\n",
            )?;
            fs::create_dir_all(target.join("srv/app"))?;
            fs::write(target.join("srv/app/run.sh"), "#!/bin/sh\necho hello\n")?;
            fs::set_permissions(
                target.join("srv/app/run.sh"),
                fs::Permissions::from_mode(0o755),
            )?;
            Ok(((), "etc/motd and srv/app/run.sh".to_owned()))
        })?;
        steps.run("unmount", || {
            guard.unmount()?;
            Ok(((), target.display().to_string()))
        })?;
        let made = steps.run("commit", || {
            if store.image(APP).is_ok() {
                store.remove_image(APP)?;
            }
            let made = sn.commit_image(&key, APP)?;
            let what = format!(
                "{APP} {}: new layer of {} changes, {} bytes gzip; {}",
                short(&made.import.image),
                made.changes,
                made.blob_size,
                dedup(&made.import)
            );
            Ok((made, what))
        })?;
        steps.run("export", || {
            if output.exists() {
                fs::remove_dir_all(&output)
                    .with_context(|| format!("replacing {}", output.display()))?;
            }
            if let Some(parent) = output.parent() {
                fs::create_dir_all(parent)?;
            }
            let report = store.export(APP, &output)?;
            let what = format!(
                "OCI layout at {} ({} layers)",
                output.display(),
                report.layers.len()
            );
            Ok(((), what))
        })?;
        sn.remove(&key)
            .with_context(|| format!("removing snapshot {key}"))?;

        let report = Report {
            root,
            steps: steps.0,
            base_import,
            app_import: made.import,
            export: output,
        };
        global.emit(&report, || text(&report))
    }
}

fn text(report: &Report) -> String {
    let mut out = format!("strata quickstart (store {})\n", report.root.display());
    for s in &report.steps {
        out.push_str(&format!("  {:<8} {:>9.1} ms  {}\n", s.step, s.ms, s.what));
    }
    let total: f64 = report.steps.iter().map(|s| s.ms).sum();
    out.push_str(&format!("  {:<8} {total:>9.1} ms\n", "total"));
    // The export names the image by its full reference, as the store keeps it.
    let tag = strata_layer_store::name::normalize(APP).unwrap_or_else(|_| APP.to_owned());
    out.push_str(&format!(
        "try: umoci unpack --image {}:{tag} bundle",
        report.export.display()
    ));
    out
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn dedup(report: &ImportReport) -> String {
    let new_layers = report.layers.iter().filter(|l| l.imported).count();
    format!(
        "{new_layers} of {} layers new, {} files stored, {} deduplicated",
        report.layers.len(),
        report.objects_new,
        report.objects_existing
    )
}

/// A small rootfs under `dir`: busybox (Debian's busybox-static) with a few applets, or else a
/// few programs of `/usr/bin`. Returns the tree and what it was made from.
fn sample_tree(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    for sub in ["bin", "etc", "root", "tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::write(dir.join("etc/hostname"), "strata\n")?;
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    let busybox = Path::new("/bin/busybox");
    if busybox.is_file() {
        fs::copy(busybox, dir.join("bin/busybox"))
            .with_context(|| format!("copying {}", busybox.display()))?;
        for applet in ["sh", "ls", "cat", "echo"] {
            symlink("busybox", dir.join("bin").join(applet))?;
        }
        return Ok((dir.to_path_buf(), busybox.display().to_string()));
    }
    let mut copied = Vec::new();
    for program in ["true", "env", "ls", "cat"] {
        let from = Path::new("/usr/bin").join(program);
        if from.is_file() {
            fs::copy(&from, dir.join("bin").join(program))
                .with_context(|| format!("copying {}", from.display()))?;
            copied.push(program);
        }
    }
    Ok((
        dir.to_path_buf(),
        format!("/usr/bin/{{{}}}", copied.join(",")),
    ))
}

//! Commands over strata-layer-store as a whole: import, export, gc, fsck, du.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use strata_build::PruneOptions;
use strata_layer_store::name::familiar;
use strata_layer_store::{
    FsckOptions, GcOptions, ImportOptions, Limits, Problem, Progress, Strategy,
};

use super::table::{human, short};
use crate::global::{Access, Global};

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import an OCI layout dir, an OCI or docker archive, or a layer tar (.tar, .gz, .zst).
    Import {
        /// What to import.
        source: PathBuf,
        /// Tag the image with this name.
        #[arg(long)]
        name: Option<String>,
        /// Also materialize its layers (strategy probed unless given).
        #[arg(long)]
        materialize: bool,
        /// Materialization strategy: stub, hardlink, reflink or copy.
        #[arg(long, value_parser = parse_strategy)]
        strategy: Option<Strategy>,
        /// The source is as trusted as this machine: lift the limits on nesting, headers,
        /// xattrs and entries that protect the store from hostile images.
        #[arg(long)]
        trusted: bool,
    },
    /// Export an image as an OCI image layout.
    Export {
        /// Image tag or id (at least 12 hex digits).
        image: String,
        /// Directory to create (it must not exist; `save` writes an archive).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Remove unreferenced layers, objects and leftovers, and build cache no build used lately.
    Gc {
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep build cache a build used within this long (30m, 24h, 7d; 0 drops it all).
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = super::build::parse_duration)]
        keep_build_cache: std::time::Duration,
    },
    /// Rehash every object and check every record.
    Fsck {
        /// Move corrupt objects to quarantine/; give objects stored under long names their
        /// short names.
        #[arg(long)]
        repair: bool,
    },
    /// Logical and physical bytes, and the dedup ratio.
    Du,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Ok(match s {
        "stub" => Strategy::Stub,
        "hardlink" => Strategy::Hardlink,
        "reflink" => Strategy::Reflink,
        "copy" => Strategy::Copy,
        other => return Err(format!("unknown strategy {other:?}")),
    })
}

/// A progress bar of bytes on stderr.
pub(super) struct Bar(indicatif::ProgressBar);

impl Bar {
    /// A bar when stderr is a terminal and the output is not JSON; otherwise nothing.
    pub(super) fn on_terminal(global: &Global) -> Option<Bar> {
        (std::io::stderr().is_terminal() && !global.json).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Bar(bar)
        })
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, _index: usize, bytes: u64) {
        self.0.inc(bytes);
    }
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        let access = match self {
            Command::Import { .. } => Access::Create,
            _ => Access::Read,
        };
        let store = global.open_store(access)?;
        match self {
            Command::Import {
                source,
                name,
                materialize,
                strategy,
                trusted,
            } => {
                let bar = Bar::on_terminal(global);
                let options = ImportOptions::default()
                    .with_name(name)
                    .with_progress(bar.as_ref().map(|b| b as &dyn Progress))
                    .with_limits(if trusted {
                        Limits::unlimited()
                    } else {
                        Limits::default()
                    })
                    .with_blob_policy(None);
                let mut report = if materialize {
                    store.import_materialized(&source, &options, strategy)
                } else {
                    store.import(&source, &options)
                }
                .with_context(|| format!("importing {}", source.display()))?;
                if let Some(bar) = bar {
                    bar.0.finish_and_clear();
                }
                for tag in &mut report.tags {
                    *tag = familiar(tag).to_owned();
                }
                global.emit(&report, || {
                    let imported = report.layers.iter().filter(|l| l.imported).count();
                    format!(
                        "{} sha256:{} ({} layers, {imported} imported; {} objects new, {} already stored)",
                        report.tags.first().map(String::as_str).unwrap_or("<untagged>"),
                        report.image,
                        report.layers.len(),
                        report.objects_new,
                        report.objects_existing,
                    )
                })
            }
            Command::Export { image, output } => {
                refuse_export_to(&output)?;
                let bar = Bar::on_terminal(global);
                let progress = bar.as_ref().map(|b| b as &dyn Progress);
                let report = store
                    .export_with_progress(&image, &output, progress)
                    .with_context(|| format!("exporting {image} to {}", output.display()))?;
                global.emit(&report, || {
                    let same = report.layers.iter().filter(|l| l.reproduced).count();
                    format!(
                        "{} {} ({same}/{} layer blobs identical to the imported ones)",
                        output.display(),
                        report.manifest,
                        report.layers.len()
                    )
                })
            }
            Command::Gc {
                dry_run,
                keep_build_cache,
            } => {
                // Expired cache entries drop their GC roots first, so this GC takes their layers.
                let mut prune = PruneOptions::keep(keep_build_cache);
                prune.dry_run = dry_run;
                let cache =
                    strata_build::prune_cache(&store, prune).context("expiring the build cache")?;
                let report = store.gc(GcOptions::default().with_dry_run(dry_run))?;
                let mut json = serde_json::to_value(&report)?;
                json["build_cache"] = serde_json::to_value(&cache)?;
                global.emit(&json, || {
                    format!(
                        "{} {} layers, {} objects, {} checkouts, {} kept blobs, {} leftovers, {} build cache entries{}: {}",
                        if dry_run { "would remove" } else { "removed" },
                        report.layers.len(),
                        report.objects,
                        report.checkouts,
                        report.blobs,
                        report.leftovers,
                        cache.removed,
                        if cache.busy {
                            " (the build cache is kept while a build runs)"
                        } else {
                            ""
                        },
                        human(report.bytes)
                    )
                })
            }
            Command::Fsck { repair } => {
                let report = store.fsck(FsckOptions::default().with_repair(repair))?;
                global.emit(&report, || {
                    let mut out = format!(
                        "checked {} objects, {} layers, {} images: {} problems",
                        report.objects_checked,
                        report.layers_checked,
                        report.images_checked,
                        report.problems.len()
                    );
                    for p in &report.problems {
                        out += "\n";
                        out += &describe(p);
                    }
                    for q in &report.quarantined {
                        out += &format!("\nquarantined object {q}");
                    }
                    for r in &report.restored {
                        out += &format!("\nrestored object {r} from a checkout");
                    }
                    if !report.shortened.is_empty() {
                        out += &format!(
                            "\ngave {} objects their short names",
                            report.shortened.len()
                        );
                    }
                    if report.long_names_kept > 0 {
                        out += &format!(
                            "\n{} objects keep their long names too while objects/ is mounted; \
                             run fsck --repair again with nothing mounted",
                            report.long_names_kept
                        );
                    }
                    out
                })?;
                if report.is_clean() {
                    Ok(())
                } else {
                    anyhow::bail!("fsck found {} problems", report.problems.len())
                }
            }
            Command::Du => {
                let report = store.du()?;
                global.emit(&report, || {
                    let mut out = format!(
                        "{:<12}  {:>10}  {:>10}  TAGS",
                        "IMAGE", "LOGICAL", "OBJECTS"
                    );
                    for i in &report.images {
                        out += &format!(
                            "\n{:<12}  {:>10}  {:>10}  {}",
                            short(&i.id),
                            human(i.logical_bytes),
                            human(i.object_bytes),
                            i.tags.join(",")
                        );
                    }
                    out += &format!(
                        "\nkept blobs: {} (layers as received, that export writes byte for byte)",
                        human(report.kept_blob_bytes)
                    );
                    out += &format!(
                        "\ntotal: {} logical, {} objects, {} on disk, dedup ratio {:.2}",
                        human(report.logical_bytes),
                        human(report.object_bytes),
                        human(report.physical_bytes),
                        report.dedup_ratio
                    );
                    out
                })
            }
        }
    }
}

/// `export` writes a new directory: an archive name or an existing path is a mistake worth
/// naming before any work.
fn refuse_export_to(output: &std::path::Path) -> anyhow::Result<()> {
    let name = output.to_string_lossy();
    if [".tar", ".tar.gz", ".tgz", ".tar.zst"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        anyhow::bail!(
            "export writes an OCI layout directory, not an archive: for {name}, run `strata save IMAGE -o {name}`"
        );
    }
    if output.symlink_metadata().is_ok() {
        anyhow::bail!(
            "{name} already exists: export writes a new directory; remove it or pass another -o DIR"
        );
    }
    Ok(())
}

fn describe(problem: &Problem) -> String {
    match problem {
        Problem::CorruptObject { id, actual } => {
            format!("corrupt object {id} (its bytes hash to {actual})")
        }
        Problem::StrayFile { path } => format!("stray file objects/{path}"),
        Problem::BadLayer { id, reason } => format!("layer {id}: {reason}"),
        Problem::MissingObject { layer, object } => {
            format!("layer {layer} needs missing or corrupt object {object}")
        }
        Problem::BadImage { id, reason } => format!("image {id}: {reason}"),
        _ => problem.to_string(),
    }
}

//! Commands over strata-layer-store: import, export, images, layers, gc, fsck, du.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use strata_layer_store::{
    FsckOptions, GcOptions, ImportOptions, ImportProgress, Limits, Problem, Strategy,
};

use crate::global::Global;

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
        /// Directory to create.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Remove an image tag (the image goes with its last tag; `gc` frees its layers).
    Rmi {
        /// Image tag or id.
        image: String,
    },
    /// List images.
    Images,
    /// List layers.
    Layers,
    /// Remove unreferenced layers, objects and leftovers.
    Gc {
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rehash every object and check every record.
    Fsck {
        /// Move corrupt objects to quarantine/.
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

/// A progress bar on stderr, shown only on a terminal.
struct Bar(indicatif::ProgressBar);

impl ImportProgress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[derive(Serialize)]
struct ImageRow {
    id: String,
    tags: Vec<String>,
    layers: Vec<String>,
    chain_id: Option<String>,
}

#[derive(Serialize)]
struct LayerRow {
    id: String,
    tar_size: u64,
    file_bytes: u64,
    materialized: Option<&'static str>,
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        let store = global.open_store()?;
        match self {
            Command::Import {
                source,
                name,
                materialize,
                strategy,
                trusted,
            } => {
                let bar = std::io::stderr().is_terminal().then(|| {
                    let bar = indicatif::ProgressBar::new(0);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    Bar(bar)
                });
                let options = ImportOptions {
                    name,
                    progress: bar.as_ref().map(|b| b as &dyn ImportProgress),
                    limits: if trusted {
                        Limits::unlimited()
                    } else {
                        Limits::default()
                    },
                };
                let report = if materialize {
                    store.import_materialized(&source, &options, strategy)
                } else {
                    store.import(&source, &options)
                }
                .with_context(|| format!("importing {}", source.display()))?;
                if let Some(bar) = bar {
                    bar.0.finish_and_clear();
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
                let report = store
                    .export(&image, &output)
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
            Command::Rmi { image } => {
                store
                    .remove_image(&image)
                    .with_context(|| format!("removing image {image}"))?;
                global.emit(&serde_json::json!({ "removed": image }), String::new)
            }
            Command::Images => {
                let rows: Vec<ImageRow> = store
                    .images()?
                    .into_iter()
                    .map(|i| ImageRow {
                        id: i.id(),
                        tags: i.tags.clone(),
                        layers: i.layers.iter().map(|l| l.hex()).collect(),
                        chain_id: i.chain_ids.last().map(ToString::to_string),
                    })
                    .collect();
                global.emit(&rows, || {
                    let mut out = format!("{:<12}  {:>6}  TAGS", "ID", "LAYERS");
                    for r in &rows {
                        out += &format!(
                            "\n{:<12}  {:>6}  {}",
                            short(&r.id),
                            r.layers.len(),
                            r.tags.join(",")
                        );
                    }
                    out
                })
            }
            Command::Layers => {
                let rows: Vec<LayerRow> = store
                    .layers()?
                    .into_iter()
                    .map(|(id, meta)| LayerRow {
                        id,
                        tar_size: meta.tar_size,
                        file_bytes: meta.file_bytes,
                        materialized: meta.materialized.map(Strategy::name),
                    })
                    .collect();
                global.emit(&rows, || {
                    let mut out =
                        format!("{:<12}  {:>10}  {:>10}  MATERIALIZED", "ID", "TAR", "FILES");
                    for r in &rows {
                        out += &format!(
                            "\n{:<12}  {:>10}  {:>10}  {}",
                            short(&r.id),
                            human(r.tar_size),
                            human(r.file_bytes),
                            r.materialized.unwrap_or("-")
                        );
                    }
                    out
                })
            }
            Command::Gc { dry_run } => {
                let report = store.gc(GcOptions { dry_run })?;
                global.emit(&report, || {
                    format!(
                        "{} {} layers, {} objects, {} checkouts, {} leftovers: {}",
                        if dry_run { "would remove" } else { "removed" },
                        report.layers.len(),
                        report.objects,
                        report.checkouts,
                        report.leftovers,
                        human(report.bytes)
                    )
                })
            }
            Command::Fsck { repair } => {
                let report = store.fsck(FsckOptions { repair })?;
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
        _ => format!("{problem:?}"),
    }
}

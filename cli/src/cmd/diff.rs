//! Commands over strata-diff: diff, apply.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use strata_diff::{ApplyOptions, ChangeSet, Compression, ContentCheck, DiffOptions, WriteOptions};

use crate::global::Global;

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The changes that turn directory OLD into directory NEW, as a list or an OCI layer.
    Diff {
        /// The old tree.
        old: PathBuf,
        /// The new tree.
        new: PathBuf,
        /// What to print: `changes` (`A|M|D<TAB>path` lines sorted bytewise by path), or a
        /// layer: `tar`, `tar+gzip`, `tar+zstd`.
        #[arg(long, value_enum, default_value_t = Format::Changes)]
        format: Format,
        /// Write to FILE (atomically: a temporary file renamed into place) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Compare the content of every pair of regular files, not only when mtimes are ambiguous.
        #[arg(long)]
        content: bool,
    },
    /// Apply an OCI layer (plain, gzip or zstd; `-` reads stdin) onto directory DIR.
    Apply {
        /// The layer file, or `-` for stdin.
        layer: PathBuf,
        /// The target directory (must exist).
        dir: PathBuf,
    },
}

/// The output of `strata diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One `A|M|D<TAB>path` line per change.
    Changes,
    /// An uncompressed layer tar.
    Tar,
    /// A gzip layer.
    #[value(name = "tar+gzip")]
    TarGzip,
    /// A zstd layer.
    #[value(name = "tar+zstd")]
    TarZstd,
}

#[derive(serde::Serialize)]
struct ChangeLine {
    kind: char,
    path: String,
}

#[derive(serde::Serialize)]
struct ChangesDoc {
    changes: Vec<ChangeLine>,
}

#[derive(serde::Serialize)]
struct LayerDoc {
    diff_id: String,
    digest: String,
    size: u64,
    changes: usize,
    output: String,
}

#[derive(serde::Serialize)]
struct ApplyDoc {
    entries: u64,
    bytes: u64,
    whiteouts: u64,
    skipped_devices: u64,
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        match self {
            Command::Diff {
                old,
                new,
                format,
                output,
                content,
            } => {
                let options = DiffOptions::default().with_content(if content {
                    ContentCheck::Always
                } else {
                    ContentCheck::Ambiguous
                });
                let set = strata_diff::changes(&old, &new, &options).with_context(|| {
                    format!("diffing {} against {}", old.display(), new.display())
                })?;
                let compression = match format {
                    Format::Changes => return print_changes(global, &set, output.as_deref()),
                    Format::Tar => Compression::None,
                    Format::TarGzip => Compression::Gzip,
                    Format::TarZstd => Compression::Zstd,
                };
                write_layer(global, &set, compression, output.as_deref())
            }
            Command::Apply { layer, dir } => {
                let reader: Box<dyn Read> = if layer == Path::new("-") {
                    Box::new(io::stdin().lock())
                } else {
                    Box::new(
                        File::open(&layer)
                            .with_context(|| format!("opening layer {}", layer.display()))?,
                    )
                };
                let stats = strata_diff::apply_layer(reader, &dir, &ApplyOptions::default())
                    .with_context(|| {
                        format!("applying {} onto {}", layer.display(), dir.display())
                    })?;
                let doc = ApplyDoc {
                    entries: stats.entries,
                    bytes: stats.bytes,
                    whiteouts: stats.whiteouts,
                    skipped_devices: stats.skipped_devices,
                };
                global.emit(&doc, || {
                    format!(
                        "applied {} entries ({} bytes), {} whiteouts, {} devices skipped",
                        doc.entries, doc.bytes, doc.whiteouts, doc.skipped_devices
                    )
                })
            }
        }
    }
}

fn print_changes(global: &Global, set: &ChangeSet, output: Option<&Path>) -> anyhow::Result<()> {
    // The change set is in walk order (a directory's subtree before its next sibling); the
    // command line contract is bytewise path order, where `a.txt` comes before `a/b`.
    let mut sorted: Vec<&strata_diff::Change> = set.changes.iter().collect();
    sorted.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    let lines: Vec<ChangeLine> = sorted
        .into_iter()
        .map(|c| ChangeLine {
            kind: c.kind.letter(),
            path: c.path.to_string_lossy().into_owned(),
        })
        .collect();
    let text = if global.json {
        serde_json::to_string_pretty(&ChangesDoc { changes: lines })? + "\n"
    } else {
        lines
            .iter()
            .map(|l| format!("{}\t{}\n", l.kind, l.path))
            .collect()
    };
    match output {
        Some(path) => atomic_write(path, |out| Ok(out.write_all(text.as_bytes())?)),
        None => {
            let mut stdout = io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            Ok(stdout.flush()?)
        }
    }
}

fn write_layer(
    global: &Global,
    set: &ChangeSet,
    compression: Compression,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let options = WriteOptions::new(compression).with_source_date_epoch_from_env();
    let Some(path) = output else {
        let mut stdout = BufWriter::with_capacity(1 << 20, io::stdout().lock());
        strata_diff::write_layer(set, &options, &mut stdout)
            .context("writing the layer to stdout")?;
        return Ok(stdout.flush()?);
    };
    let mut digests = None;
    atomic_write(path, |out| {
        digests = Some(strata_diff::write_layer(set, &options, out)?);
        Ok(())
    })?;
    let d = digests.expect("written");
    let doc = LayerDoc {
        diff_id: d.diff_id,
        digest: d.digest,
        size: d.size,
        changes: set.changes.len(),
        output: path.display().to_string(),
    };
    global.emit(&doc, || {
        format!(
            "{}\ndiff_id {}\ndigest  {}\nsize    {}",
            doc.output, doc.diff_id, doc.digest, doc.size
        )
    })
}

/// Writes `path` through a temporary file in the same directory, synced and renamed into
/// place, so that a failure leaves nothing half-written under that name.
fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        write(&mut out).with_context(|| format!("writing {}", path.display()))?;
        out.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        drop(out);
        file.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

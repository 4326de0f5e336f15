//! `save` and `load`: an image as one tar file (or a stream on stdout/stdin) that `docker load`
//! and OCI tools both read, built on [`Store::export`] and [`Store::import`].

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use strata_layer_store::name::familiar;
use strata_layer_store::{ImportOptions, Progress, Store};

use crate::global::{Access, Global};

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write IMAGE as a tar archive, both an OCI image layout and a docker-archive, to FILE or
    /// stdout.
    Save {
        /// The image: a name or at least 4 hex digits of its id.
        image: String,
        /// Write to FILE (through a temporary file renamed into place) instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import an image archive (docker-archive or oci-archive, as `save` writes) from FILE or
    /// stdin.
    Load {
        /// Read FILE instead of stdin.
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        match self {
            Command::Save { image, output } => {
                let store = global.open_store(Access::Read)?;
                if output.is_none() && io::IsTerminal::is_terminal(&io::stdout()) {
                    anyhow::bail!(
                        "save {image}: refusing to write an archive to a terminal; pass -o FILE or redirect stdout"
                    );
                }
                let bar = super::store::Bar::on_terminal(global);
                save(&store, &image, output.as_deref(), bar.as_ref())
                    .with_context(|| format!("saving {image}"))?;
                if let Some(output) = &output {
                    global.emit(&serde_json::json!({ "saved": output }), String::new)?;
                }
                Ok(())
            }
            Command::Load { input } => {
                let store = global.open_store(Access::Create)?;
                let spooled;
                let source = match &input {
                    Some(path) => path.as_path(),
                    None => {
                        // Imports read archives by path: spool stdin next to the store.
                        let mut file = tempfile::NamedTempFile::new_in(store.root())
                            .context("creating a file to hold stdin")?;
                        io::copy(&mut io::stdin().lock(), &mut file)
                            .context("reading the archive from stdin")?;
                        spooled = file;
                        spooled.path()
                    }
                };
                let bar = super::store::Bar::on_terminal(global);
                let options = ImportOptions::default()
                    .with_progress(bar.as_ref().map(|b| b as &dyn Progress));
                let mut report = store
                    .import(source, &options)
                    .with_context(|| match &input {
                        Some(path) => format!("loading {}", path.display()),
                        None => "loading the archive on stdin".to_owned(),
                    })?;
                for tag in &mut report.tags {
                    *tag = familiar(tag).to_owned();
                }
                global.emit(&report, || {
                    if report.tags.is_empty() {
                        format!("Loaded image ID: sha256:{}", report.image)
                    } else {
                        report
                            .tags
                            .iter()
                            .map(|t| format!("Loaded image: {t}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    }
                })
            }
        }
    }
}

/// Exports `image` to a staging layout, adds docker's `manifest.json`, and tars it to `output`
/// or stdout.
fn save(
    store: &Store,
    image: &str,
    output: Option<&Path>,
    bar: Option<&super::store::Bar>,
) -> anyhow::Result<()> {
    let staging_parent = match output.and_then(Path::parent) {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => std::env::temp_dir(),
    };
    let staging = tempfile::Builder::new()
        .prefix(".strata-save.")
        .tempdir_in(&staging_parent)
        .with_context(|| format!("creating a staging dir in {}", staging_parent.display()))?;
    let layout = staging.path().join("layout");
    let progress = bar.map(|b| b as &dyn Progress);
    let report = store.export_with_progress(image, &layout, progress)?;
    let record = store.image(image)?;
    write_docker_manifest(&layout, &report.manifest, &record.tags)?;
    match output {
        Some(output) => {
            let mut file = tempfile::NamedTempFile::new_in(&staging_parent)
                .with_context(|| format!("creating a file in {}", staging_parent.display()))?;
            write_tar(&layout, file.as_file_mut())?;
            file.as_file().sync_all()?;
            file.persist(output)
                .with_context(|| format!("writing {}", output.display()))?;
        }
        None => {
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            write_tar(&layout, &mut out)?;
            out.flush().context("writing to stdout")?;
        }
    }
    Ok(())
}

/// docker-archive's `manifest.json`, naming the layout's own blobs, so one archive serves
/// `docker load` and OCI tools alike (as docker 25 writes them).
fn write_docker_manifest(layout: &Path, manifest: &str, tags: &[String]) -> anyhow::Result<()> {
    let blob = |digest: &str| format!("blobs/{}", digest.replacen(':', "/", 1));
    let path = layout.join(blob(manifest));
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let parsed: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let digest_of = |v: &serde_json::Value| v["digest"].as_str().map(blob);
    let layers: Vec<String> = parsed["layers"]
        .as_array()
        .map(|l| l.iter().filter_map(digest_of).collect())
        .unwrap_or_default();
    let docker = serde_json::json!([{
        "Config": digest_of(&parsed["config"]),
        "RepoTags": tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "Layers": layers,
    }]);
    let path = layout.join("manifest.json");
    fs::write(&path, serde_json::to_vec(&docker)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The layout as a tar: its top-level files, then its blobs.
fn write_tar(layout: &Path, out: impl Write) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    for name in ["oci-layout", "index.json", "manifest.json"] {
        tar.append_path_with_name(layout.join(name), name)
            .with_context(|| format!("archiving {name}"))?;
    }
    tar.append_dir_all("blobs", layout.join("blobs"))
        .context("archiving blobs")?;
    tar.into_inner()?.flush()?;
    Ok(())
}

//! Commands over the images of the layer store, as docker names them: images, tag, inspect,
//! rmi; and layers.

use std::time::SystemTime;

use anyhow::Context;
use serde::Serialize;
use strata_layer_store::name::{familiar, split_tag};
use strata_layer_store::{ImageRecord, Store, Strategy};

use super::table::{Table, ago, human, parse_rfc3339, rfc3339, short};
use crate::global::{Access, Global};

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List images, newest first.
    Images {
        /// Print image ids only.
        #[arg(short, long)]
        quiet: bool,
        /// Show each image's manifest digest in full: the digest a registry knows it by, the
        /// same in every store (the image id is its start).
        #[arg(long)]
        digests: bool,
    },
    /// Name image SOURCE (a name or an id prefix) TARGET too.
    Tag {
        /// The image: a name or at least 4 hex digits of its id.
        source: String,
        /// The new name, `[REGISTRY/]REPOSITORY[:TAG]`.
        target: String,
    },
    /// Show images' id, names, creation time, size, config and layers, as JSON.
    Inspect {
        /// Images: names or at least 4 hex digits of their ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove an image name (the image goes with its last name; `gc` frees its layers).
    Rmi {
        /// The image: a name or at least 4 hex digits of its id.
        image: String,
    },
    /// Show an image's history: each step with the layer it made, newest first.
    History {
        /// The image: a name or at least 4 hex digits of its id.
        image: String,
    },
    /// List layers by diff_id.
    Layers {
        /// Print layer diff_ids only.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// `text` cut to `max` characters with an ellipsis, as docker cuts CREATED BY.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// One image as `images --json` and `inspect` describe it.
#[derive(Serialize)]
struct ImageRow {
    /// `sha256:` and the hex of the manifest digest.
    id: String,
    tags: Vec<String>,
    created: Option<String>,
    size: u64,
    layers: Vec<String>,
}

/// What `strata inspect` prints for one image, named as `docker inspect` names them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    repo_tags: Vec<String>,
    created: Option<String>,
    size: u64,
    architecture: serde_json::Value,
    os: serde_json::Value,
    config: serde_json::Value,
    #[serde(rename = "RootFS")]
    root_fs: RootFs,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RootFs {
    r#type: &'static str,
    layers: Vec<InspectLayer>,
}

/// A layer: its diff_id, with the digest and size of the blob the manifest names.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectLayer {
    #[serde(rename = "DiffID")]
    diff_id: String,
    digest: Option<String>,
    size: u64,
}

#[derive(Serialize)]
struct LayerRow {
    diff_id: String,
    size: u64,
    file_bytes: u64,
    materialized: Option<&'static str>,
}

/// An image's creation time from its config, its uncompressed size, and its names as shown.
struct Summary {
    created: Option<SystemTime>,
    size: u64,
    tags: Vec<String>,
}

fn summary(store: &Store, image: &ImageRecord) -> anyhow::Result<Summary> {
    let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap_or_default();
    let created = config["created"].as_str().and_then(parse_rfc3339);
    let mut size = 0;
    for layer in &image.layers {
        size += store.layer_meta(&layer.hex())?.map_or(0, |m| m.tar_size);
    }
    let tags = image.tags.iter().map(|t| familiar(t).to_owned()).collect();
    Ok(Summary {
        created,
        size,
        tags,
    })
}

fn inspect(store: &Store, name: &str) -> anyhow::Result<Inspect> {
    let image = store.image(name)?;
    let Summary {
        created,
        size,
        tags,
    } = summary(store, &image)?;
    let mut config: serde_json::Value = serde_json::from_slice(&image.config)
        .with_context(|| format!("image {name}: its config is not JSON"))?;
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest)
        .with_context(|| format!("image {name}: its manifest is not JSON"))?;
    let blobs = manifest["layers"].as_array().cloned().unwrap_or_default();
    let mut layers = Vec::new();
    for (i, diff_id) in image.layers.iter().enumerate() {
        let meta = store.layer_meta(&diff_id.hex())?;
        layers.push(InspectLayer {
            diff_id: diff_id.to_string(),
            digest: blobs
                .get(i)
                .and_then(|b| b["digest"].as_str())
                .map(str::to_owned),
            size: meta.map_or(0, |m| m.tar_size),
        });
    }
    Ok(Inspect {
        id: format!("sha256:{}", image.id()),
        repo_tags: tags,
        created: created.map(rfc3339),
        size,
        architecture: config["architecture"].take(),
        os: config["os"].take(),
        config: config["config"].take(),
        root_fs: RootFs {
            r#type: "layers",
            layers,
        },
    })
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        let store = global.open_store(Access::Read)?;
        match self {
            Command::Images { quiet, digests } => {
                let mut listed = Vec::new();
                for image in store.images()? {
                    let s = summary(&store, &image)?;
                    let row = ImageRow {
                        id: format!("sha256:{}", image.id()),
                        tags: s.tags,
                        created: s.created.map(rfc3339),
                        size: s.size,
                        layers: image.layers.iter().map(ToString::to_string).collect(),
                    };
                    listed.push((s.created, row));
                }
                // Newest first, as docker lists them (images without a date last).
                listed.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
                let (created, rows): (Vec<Option<SystemTime>>, Vec<ImageRow>) =
                    listed.into_iter().unzip();
                if quiet && !global.json {
                    for r in &rows {
                        println!("{}", short(&r.id));
                    }
                    return Ok(());
                }
                global.emit(&rows, || {
                    let now = SystemTime::now();
                    let mut columns = vec!["REPOSITORY", "TAG"];
                    if digests {
                        columns.push("DIGEST");
                    }
                    columns.extend(["IMAGE ID", "CREATED", "SIZE"]);
                    let mut table = Table::new(&columns);
                    for (r, created) in rows.iter().zip(&created) {
                        let created = created.map_or("N/A".to_owned(), |t| ago(t, now));
                        let tags: Vec<(&str, &str)> = if r.tags.is_empty() {
                            vec![("<none>", "<none>")]
                        } else {
                            r.tags.iter().map(|t| split_tag(t)).collect()
                        };
                        for (repository, tag) in tags {
                            let mut row = vec![repository.to_owned(), tag.to_owned()];
                            if digests {
                                row.push(r.id.clone());
                            }
                            row.extend([short(&r.id).to_owned(), created.clone(), human(r.size)]);
                            table.row(row);
                        }
                    }
                    table.render()
                })
            }
            Command::Tag { source, target } => {
                let tagged = store
                    .tag(&source, &target)
                    .with_context(|| format!("tagging {source} as {target}"))?;
                let image = store.image(&tagged)?;
                global.emit(
                    &serde_json::json!({
                        "id": format!("sha256:{}", image.id()),
                        "tag": familiar(&tagged),
                    }),
                    String::new,
                )
            }
            Command::Inspect { images } => {
                let all = images
                    .iter()
                    .map(|name| inspect(&store, name))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                // JSON either way, as docker inspect prints.
                println!("{}", serde_json::to_string_pretty(&all)?);
                Ok(())
            }
            Command::Rmi { image } => {
                let id = store.image(&image).map(|i| i.id()).ok();
                store
                    .remove_image(&image)
                    .with_context(|| format!("removing image {image}"))?;
                global.emit(
                    &serde_json::json!({
                        "removed": image,
                        "id": id.map(|id| format!("sha256:{id}")),
                    }),
                    || format!("Untagged: {image}"),
                )
            }
            Command::History { image } => {
                let history = store
                    .history(&image)
                    .with_context(|| format!("history of {image}"))?;
                global.emit(&history, || {
                    let now = SystemTime::now();
                    let mut table = Table::new(&["LAYER", "BLOB", "CREATED", "CREATED BY", "SIZE"]);
                    for entry in history.iter().rev() {
                        let (layer, blob, size) = match &entry.layer {
                            Some(l) => (
                                short(&l.diff_id).to_owned(),
                                short(&l.digest).to_owned(),
                                human(l.size),
                            ),
                            None => ("<missing>".to_owned(), String::new(), "0B".to_owned()),
                        };
                        let created = entry
                            .created
                            .as_deref()
                            .and_then(parse_rfc3339)
                            .map_or("N/A".to_owned(), |t| ago(t, now));
                        table.row(vec![
                            layer,
                            blob,
                            created,
                            truncate(entry.created_by.as_deref().unwrap_or(""), 45),
                            size,
                        ]);
                    }
                    table.render()
                })
            }
            Command::Layers { quiet } => {
                let rows: Vec<LayerRow> = store
                    .layers()?
                    .into_iter()
                    .map(|(id, meta)| LayerRow {
                        diff_id: format!("sha256:{id}"),
                        size: meta.tar_size,
                        file_bytes: meta.file_bytes,
                        materialized: meta.materialized.map(Strategy::name),
                    })
                    .collect();
                if quiet && !global.json {
                    for r in &rows {
                        println!("{}", r.diff_id);
                    }
                    return Ok(());
                }
                global.emit(&rows, || {
                    let mut table = Table::new(&["DIFF ID", "SIZE", "FILE BYTES", "MATERIALIZED"]);
                    for r in &rows {
                        table.row(vec![
                            short(&r.diff_id).to_owned(),
                            human(r.size),
                            human(r.file_bytes),
                            r.materialized.unwrap_or("-").to_owned(),
                        ]);
                    }
                    table.render()
                })
            }
        }
    }
}

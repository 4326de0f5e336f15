//! Export: rebuilding each layer tar bit for bit from its record and objects, compressing it as
//! imported, and writing an OCI image layout.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::compress::Compressor;
use crate::digest::{HashingWriter, Sha256};
use crate::error::{IoContext, StoreError};
use crate::record::{Chunk, ImageRecord, LayerRecord};
use crate::store::Store;

/// One exported layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerExport {
    /// Layer id (diff_id hex).
    pub id: String,
    /// The blob's digest as exported.
    pub digest: String,
    /// Whether the blob is byte-identical to the one the manifest names.
    pub reproduced: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The manifest digest in the layout (differs from the image id when a layer's compression
    /// could not be reproduced and the manifest was rewritten).
    pub manifest: String,
    /// The layers, bottom first.
    pub layers: Vec<LayerExport>,
}

impl Store {
    /// Writes the uncompressed tar of `record` to `out`, checking it hashes to the diff_id.
    pub fn write_layer_tar(&self, record: &LayerRecord, out: impl Write) -> Result<(), StoreError> {
        let mut hashing = HashingWriter::new(out);
        for chunk in &record.stream {
            match chunk {
                Chunk::Raw(bytes) => hashing.write_all(bytes).map_err(|e| export_io("tar", e))?,
                Chunk::Object { id, size } => {
                    let path = self.objects.path(id);
                    let file = File::open(&path).map_err(|e| match e.kind() {
                        io::ErrorKind::NotFound => StoreError::ObjectMissing { id: id.hex() },
                        _ => StoreError::Io {
                            path: path.clone(),
                            source: e,
                        },
                    })?;
                    let copied =
                        io::copy(&mut io::Read::take(file, *size), &mut hashing).at(&path)?;
                    if copied != *size {
                        return Err(StoreError::ObjectCorrupt {
                            id: id.hex(),
                            actual: format!("{copied} bytes, expected {size}"),
                        });
                    }
                }
            }
        }
        let diff_id = Sha256(hashing.finish().0);
        if diff_id != record.diff_id {
            return Err(StoreError::ObjectCorrupt {
                id: record.id(),
                actual: format!("layer tar rebuilt to {diff_id}"),
            });
        }
        Ok(())
    }

    /// Writes the layer blob of `record` (compressed as imported) to `out`; returns its digest
    /// and size.
    pub fn write_layer_blob(
        &self,
        record: &LayerRecord,
        out: impl Write,
    ) -> Result<(Sha256, u64), StoreError> {
        let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
        let mut compressor = Compressor::new(&record.compression, record.tar_size, hashing)
            .map_err(|e| export_io("blob", e))?;
        self.write_layer_tar(record, &mut compressor)?;
        let hashing = compressor.finish().map_err(|e| export_io("blob", e))?;
        let (digest, size, mut inner) = hashing.finish();
        inner.flush().map_err(|e| export_io("blob", e))?;
        Ok((Sha256(digest), size))
    }

    /// Exports image `name` as an OCI image layout at `dest`, which must not exist; it appears
    /// complete or not at all.
    pub fn export(&self, name: &str, dest: &Path) -> Result<ExportReport, StoreError> {
        let image = self.image(name)?;
        if dest.exists() {
            return Err(StoreError::Io {
                path: dest.to_path_buf(),
                source: io::ErrorKind::AlreadyExists.into(),
            });
        }
        let staging = sibling_tmp(dest);
        let result = self.export_into(&image, &staging);
        match result {
            Ok(report) => {
                fs::rename(&staging, dest).at(dest)?;
                Ok(report)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    fn export_into(&self, image: &ImageRecord, dir: &Path) -> Result<ExportReport, StoreError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).at(&blobs)?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            fs::write(&path, bytes).at(&path)
        };
        write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        write(
            &format!("blobs/sha256/{}", Sha256::of(&image.config).hex()),
            &image.config,
        )?;
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest).map_err(|e| StoreError::Io {
                path: PathBuf::from("manifest"),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?;
        let described: Vec<String> = manifest["layers"]
            .as_array()
            .map(|layers| {
                layers
                    .iter()
                    .map(|l| l["digest"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let exported: Vec<(String, Sha256, u64)> = image
            .layers
            .par_iter()
            .map(|diff_id| {
                let record = self.layer_record(&diff_id.hex())?;
                let tmp = blobs.join(format!("tmp.{}", record.id()));
                let file = File::create(&tmp).at(&tmp)?;
                let (digest, size) = self.write_layer_blob(&record, file)?;
                let path = blobs.join(digest.hex());
                fs::rename(&tmp, &path).at(&path)?;
                Ok((record.id(), digest, size))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut rewritten = false;
        let mut layers = Vec::new();
        for (i, (id, digest, size)) in exported.into_iter().enumerate() {
            let reproduced = described.get(i).is_some_and(|d| *d == digest.to_string());
            if !reproduced {
                rewritten = true;
                manifest["layers"][i]["digest"] = digest.to_string().into();
                manifest["layers"][i]["size"] = size.into();
            }
            layers.push(LayerExport {
                id,
                digest: digest.to_string(),
                reproduced,
            });
        }
        let manifest_bytes = if rewritten {
            serde_json::to_vec(&manifest).unwrap_or_default()
        } else {
            image.manifest.clone()
        };
        let manifest_digest = Sha256::of(&manifest_bytes);
        write(
            &format!("blobs/sha256/{}", manifest_digest.hex()),
            &manifest_bytes,
        )?;
        let media_type = manifest["mediaType"]
            .as_str()
            .unwrap_or("application/vnd.oci.image.manifest.v1+json");
        let descriptor = |tag: Option<&String>| {
            let mut d = serde_json::json!({
                "mediaType": media_type,
                "digest": manifest_digest.to_string(),
                "size": manifest_bytes.len(),
            });
            if let Some(tag) = tag {
                d["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
            }
            d
        };
        let manifests: Vec<serde_json::Value> = if image.tags.is_empty() {
            vec![descriptor(None)]
        } else {
            image.tags.iter().map(|t| descriptor(Some(t))).collect()
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        write(
            "index.json",
            &serde_json::to_vec(&index).unwrap_or_default(),
        )?;
        Ok(ExportReport {
            manifest: manifest_digest.to_string(),
            layers,
        })
    }
}

fn export_io(what: &str, source: io::Error) -> StoreError {
    StoreError::Io {
        path: PathBuf::from(format!("<{what} output>")),
        source,
    }
}

/// `dest`'s sibling staging directory: same file system, so the final rename is atomic.
fn sibling_tmp(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(
        ".{name}.strata-export.{}",
        rustix::process::getpid().as_raw_nonzero()
    ))
}

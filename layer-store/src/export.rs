//! Export: rebuilding each layer tar bit for bit from its record and objects, compressing it as
//! imported, and writing an OCI image layout.

use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::str::FromStr;

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, ImageIndexBuilder, MediaType, OciLayoutBuilder, Sha256Digest,
};
use rayon::prelude::*;
use serde::Serialize;

use crate::compress::compressor;
use crate::digest::{HashingWriter, Sha256};
use crate::error::{IoContext, StoreError};
use crate::progress::{PartOf, Progress, Reporting};
use crate::record::{Chunk, ImageRecord, LayerRecord};
use crate::staging::{StagedDir, create_dir_at, create_file_at, rename_at};
use crate::store::Store;

/// Why an export, or the writing of one layer, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Writing to the caller's output failed.
    #[error("writing the layer {output}")]
    Output {
        /// What was being written.
        output: ExportOutput,
        /// What the writer said.
        #[source]
        source: io::Error,
    },
    /// The image's stored manifest is not JSON.
    #[error("image {image}: its stored manifest is not JSON")]
    BadManifest {
        /// The image id.
        image: String,
        /// Where the parser stopped.
        #[source]
        source: serde_json::Error,
    },
    /// The store failed underneath (I/O, the database, an object missing or corrupt, an
    /// image not found).
    #[error(transparent)]
    Store(Box<StoreError>),
}

/// What an export writes to a caller's writer, named in [`ExportError::Output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExportOutput {
    /// A layer's uncompressed tar.
    Tar,
    /// A layer's blob as stored (compressed as imported).
    Blob,
}

impl std::fmt::Display for ExportOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExportOutput::Tar => "tar",
            ExportOutput::Blob => "blob",
        })
    }
}

/// One exported layer.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LayerExport {
    /// Layer id (diff_id hex; `sha256:<hex>` in JSON).
    #[serde(serialize_with = "crate::digest::serialize_id")]
    pub id: String,
    /// The blob's digest as exported.
    pub digest: String,
    /// Whether the blob is byte-identical to the one the manifest names.
    pub reproduced: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ExportReport {
    /// The manifest digest in the layout (differs from the image id when a layer's compression
    /// could not be reproduced and the manifest was rewritten).
    pub manifest: String,
    /// The layers, bottom first.
    pub layers: Vec<LayerExport>,
}

impl Store {
    /// Writes the uncompressed tar of `record` to `out`, checking it hashes to the diff_id.
    pub fn write_layer_tar(
        &self,
        record: &LayerRecord,
        out: impl Write,
    ) -> Result<(), ExportError> {
        Ok(self.rebuild_layer_tar(record, out)?)
    }

    /// [`write_layer_tar`](Store::write_layer_tar), failing with the broad error.
    fn rebuild_layer_tar(&self, record: &LayerRecord, out: impl Write) -> Result<(), StoreError> {
        let mut hashing = HashingWriter::new(out);
        for chunk in &record.stream {
            match chunk {
                Chunk::Raw(bytes) => hashing
                    .write_all(bytes)
                    .map_err(|e| export_io(ExportOutput::Tar, e))?,
                Chunk::Object { id, size } => {
                    let (file, path) = self.objects.open_object(id)?;
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

    /// Writes blob `blob` of layer `record` (the digest an image's manifest names for it) to
    /// `out`: the kept blob of that digest when the store keeps it, else the layer rebuilt and
    /// compressed as imported. Returns the digest and size of what it wrote, which differ from
    /// `blob` only when neither reproduces it.
    pub fn write_layer_blob(
        &self,
        record: &LayerRecord,
        blob: &Sha256,
        out: impl Write,
    ) -> Result<(Sha256, u64), ExportError> {
        Ok(self.write_blob_reporting(record, blob, out, None)?)
    }

    /// The size of blob `blob` of layer `record` when [`write_layer_blob`](Store::write_layer_blob)
    /// writes it byte for byte (a kept blob, a plain tar, or the blob the layer was imported
    /// from), so a caller can announce digest and size before writing; `None` when it would
    /// only know them after (a blob of another tool that the store does not keep).
    pub fn layer_blob_size(&self, record: &LayerRecord, blob: &Sha256) -> Option<u64> {
        if let Ok(kept) = std::fs::metadata(self.kept_blob_path(blob))
            && kept.is_file()
        {
            return Some(kept.len());
        }
        crate::blobs::rebuilds_exactly(&record.blob_digest, &record.compression, blob)
            .then_some(record.blob_size)
    }

    /// [`write_layer_blob`](Store::write_layer_blob) for the blob `wanted` (the digest an
    /// image's manifest names for this layer), reporting the tar bytes to `progress`.
    fn write_blob_reporting(
        &self,
        record: &LayerRecord,
        wanted: &Sha256,
        out: impl Write,
        progress: Option<&dyn Progress>,
    ) -> Result<(Sha256, u64), StoreError> {
        if let Some(kept) = self.kept_blob(wanted) {
            if let Some(progress) = progress {
                progress.advance(0, record.tar_size);
            }
            return self.copy_kept_blob(&kept, wanted, out);
        }
        let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
        let compressor = compressor(&record.compression, record.tar_size, hashing)
            .map_err(|e| export_io(ExportOutput::Blob, e))?;
        let mut tar = Reporting {
            inner: compressor,
            progress,
        };
        self.rebuild_layer_tar(record, &mut tar)?;
        let hashing = tar
            .inner
            .finish()
            .map_err(|e| export_io(ExportOutput::Blob, e))?;
        let (digest, size, mut inner) = hashing.finish();
        inner
            .flush()
            .map_err(|e| export_io(ExportOutput::Blob, e))?;
        Ok((Sha256(digest), size))
    }

    /// Exports image `name` as an OCI image layout at `dest`, which must not exist; it appears
    /// complete or not at all.
    ///
    /// The layout is staged in a fresh directory next to `dest` and renamed into place, and
    /// nothing is written through a name someone else could plant first (see
    /// `staging.rs`), so a shared writable parent such as `/tmp` is safe: a symlink or a
    /// directory at `dest` makes the export fail rather than write through it.
    ///
    /// # Errors
    /// [`ExportError::Store`] holding [`StoreError::ImageNotFound`] for an unknown `name`,
    /// [`StoreError::Io`] when `dest` exists or cannot be written, and
    /// [`StoreError::ObjectMissing`] or [`StoreError::ObjectCorrupt`] when a layer no longer
    /// rebuilds; nothing appears at `dest` after an error.
    pub fn export(&self, name: &str, dest: &Path) -> Result<ExportReport, ExportError> {
        self.export_with_progress(name, dest, None)
    }

    /// [`export`](Store::export), reporting the uncompressed tar bytes of its layers to
    /// `progress` as they are written.
    pub fn export_with_progress(
        &self,
        name: &str,
        dest: &Path,
        progress: Option<&dyn Progress>,
    ) -> Result<ExportReport, ExportError> {
        let image = self.image(name)?;
        let staged = StagedDir::create(dest)?;
        let report = self.export_into(&image, &staged, progress)?;
        staged.publish()?;
        Ok(report)
    }

    fn export_into(
        &self,
        image: &ImageRecord,
        out: &StagedDir,
        progress: Option<&dyn Progress>,
    ) -> Result<ExportReport, StoreError> {
        let root = out.path();
        let blobs_path = root.join("blobs/sha256");
        let blobs = create_dir_at(out.root(), "blobs")
            .and_then(|blobs| create_dir_at(blobs, "sha256"))
            .at(&blobs_path)?;
        let write = |dir: BorrowedFd<'_>, path: &Path, name: &str, bytes: &[u8]| {
            create_file_at(dir, name)
                .and_then(|mut file| file.write_all(bytes))
                .at(&path.join(name))
        };
        write(
            blobs.as_fd(),
            &blobs_path,
            &Sha256::of(&image.config).hex(),
            &image.config,
        )?;
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest).map_err(|source| ExportError::BadManifest {
                image: image.id(),
                source,
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
        // An image may list a layer more than once: each distinct layer is written once.
        let mut distinct: Vec<&Sha256> = Vec::new();
        for diff_id in &image.layers {
            if !distinct.contains(&diff_id) {
                distinct.push(diff_id);
            }
        }
        if let Some(progress) = progress {
            let ids: Vec<String> = distinct.iter().map(|d| d.hex()).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let metas = self.layer_metas(&ids)?;
            progress.start(metas.iter().flatten().map(|m| m.tar_size).sum());
        }
        let written: Vec<(Sha256, u64)> = distinct
            .par_iter()
            .enumerate()
            .map(|(i, diff_id)| {
                let record = self.layer_record(&diff_id.hex())?;
                // The blob this image's manifest names, which may differ from the one the
                // layer was first imported from.
                let wanted = image
                    .layers
                    .iter()
                    .position(|d| d == *diff_id)
                    .and_then(|at| described.get(at))
                    .and_then(|d| d.parse::<Sha256>().ok())
                    .unwrap_or(record.blob_digest);
                let tmp = format!("tmp.{i}");
                let file = create_file_at(&blobs, &tmp).at(&blobs_path.join(&tmp))?;
                let part = progress.map(|inner| PartOf { index: i, inner });
                let part = part.as_ref().map(|p| p as &dyn Progress);
                let (digest, size) = self.write_blob_reporting(&record, &wanted, file, part)?;
                rename_at(&blobs, &tmp, &digest.hex()).at(&blobs_path.join(digest.hex()))?;
                Ok((digest, size))
            })
            .collect::<Result<_, StoreError>>()?;
        let exported = image.layers.iter().map(|diff_id| {
            let at = distinct
                .iter()
                .position(|d| *d == diff_id)
                .unwrap_or_default();
            let (digest, size) = written[at];
            (diff_id.hex(), digest, size)
        });
        let mut rewritten = false;
        let mut layers = Vec::new();
        for (i, (id, digest, size)) in exported.enumerate() {
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
            blobs.as_fd(),
            &blobs_path,
            &manifest_digest.hex(),
            &manifest_bytes,
        )?;
        let media_type = MediaType::from(
            manifest["mediaType"]
                .as_str()
                .unwrap_or("application/vnd.oci.image.manifest.v1+json"),
        );
        let digest = Sha256Digest::from_str(&manifest_digest.hex()).expect("64 hex digits");
        let descriptor = |tag: Option<&String>| {
            let mut d = Descriptor::new(
                media_type.clone(),
                manifest_bytes.len() as u64,
                digest.clone(),
            );
            d.set_annotations(tag.map(|t| [(ANNOTATION_REF_NAME.to_owned(), t.clone())].into()));
            d
        };
        let manifests: Vec<Descriptor> = if image.tags.is_empty() {
            vec![descriptor(None)]
        } else {
            image.tags.iter().map(|t| descriptor(Some(t))).collect()
        };
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .expect("every required field is set");
        let layout = OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()
            .expect("every required field is set");
        for (name, value) in [
            ("index.json", serde_json::to_vec(&index)),
            ("oci-layout", serde_json::to_vec(&layout)),
        ] {
            write(out.root(), &root, name, &value.unwrap_or_default())?;
        }
        Ok(ExportReport {
            manifest: manifest_digest.to_string(),
            layers,
        })
    }
}

fn export_io(output: ExportOutput, source: io::Error) -> StoreError {
    ExportError::Output { output, source }.into()
}

//! Disk usage: logical bytes (what the images' files would take unpacked one by one), physical
//! bytes (allocated blocks of the store, each inode once), and the dedup ratio between them.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::error::{IoContext, StoreError};
use crate::store::Store;

/// One image's usage.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ImageUsage {
    /// Image id (manifest digest hex).
    pub id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Sum of its regular files' sizes over all its layers.
    pub logical_bytes: u64,
    /// Allocated bytes of the distinct objects it references.
    pub object_bytes: u64,
}

/// The store's usage.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DuReport {
    /// Per image.
    pub images: Vec<ImageUsage>,
    /// Sum of the images' logical bytes.
    pub logical_bytes: u64,
    /// Allocated bytes of everything under the store root, each inode counted once.
    pub physical_bytes: u64,
    /// Allocated bytes of the content objects alone (without their directories).
    pub object_bytes: u64,
    /// Allocated bytes of the kept blobs: compressed layers as received, for export to
    /// reproduce (see [`BlobPolicy`](crate::BlobPolicy)).
    pub kept_blob_bytes: u64,
    /// `logical_bytes / object_bytes`: how many times over the content would be stored without
    /// dedup (0 for an empty store).
    pub dedup_ratio: f64,
}

/// Allocated bytes of `path` and everything below it, skipping inodes already in `seen`.
pub(crate) fn allocated(path: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64, StoreError> {
    let meta = fs::symlink_metadata(path).at(path)?;
    let mut total = 0;
    if seen.insert((meta.dev(), meta.ino())) {
        total += meta.blocks() * 512;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).at(path)? {
            total += allocated(&entry.at(path)?.path(), seen)?;
        }
    }
    Ok(total)
}

impl Store {
    /// Measures logical and physical usage, per image and in total.
    pub fn du(&self) -> Result<DuReport, StoreError> {
        let metas: std::collections::HashMap<String, u64> = self
            .layers()?
            .into_iter()
            .map(|(id, meta)| (id, meta.file_bytes))
            .collect();
        let mut images = Vec::new();
        for image in self.images()? {
            let mut objects = HashSet::new();
            let mut logical = 0;
            for layer in &image.layers {
                let id = layer.hex();
                logical += metas.get(&id).copied().unwrap_or(0);
                objects.extend(self.layer_record(&id)?.objects().map(|(o, _)| o));
            }
            let mut object_bytes = 0;
            for object in objects {
                if let Some(name) = self.objects.find(&object)? {
                    let path = self.objects.path(&name);
                    if let Ok(meta) = fs::symlink_metadata(&path) {
                        object_bytes += meta.blocks() * 512;
                    }
                }
            }
            images.push(ImageUsage {
                id: image.id(),
                tags: image.tags.clone(),
                logical_bytes: logical,
                object_bytes,
            });
        }
        let logical_bytes = images.iter().map(|i| i.logical_bytes).sum();
        let mut object_bytes = 0;
        let objects = self.objects_dir();
        for fan in fs::read_dir(objects).at(objects)? {
            let fan = fan.at(objects)?.path();
            for entry in fs::read_dir(&fan).at(&fan)? {
                object_bytes += entry.at(&fan)?.metadata().at(&fan)?.blocks() * 512;
            }
        }
        let physical_bytes = allocated(self.root(), &mut HashSet::new())?;
        Ok(DuReport {
            images,
            logical_bytes,
            physical_bytes,
            object_bytes,
            kept_blob_bytes: self.kept_blobs()?.iter().map(|(_, bytes)| bytes).sum(),
            dedup_ratio: if object_bytes == 0 {
                0.0
            } else {
                logical_bytes as f64 / object_bytes as f64
            },
        })
    }
}

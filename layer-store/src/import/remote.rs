//! Import from blobs fetched one at a time (by a registry client): stage each missing layer blob
//! from any reader, verifying it while it streams, then name the image from its manifest and
//! config once every layer is in. The same staging and commit as [`Store::import`], so a failed
//! or abandoned pull leaves no image behind.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use oci_spec::image::ImageManifest;

use crate::blobs::BlobPolicy;
use crate::digest::{Digest, Sha256};
use crate::error::{IoContext, StoreError};
use crate::import::layer::{Expected, Staged};
use crate::import::source::{Blobs, Plan, diff_ids, parse_json};
use crate::import::{
    BlobCheck, Document, ImportError, ImportOptions, ImportReport, Progress, StagedTree,
};
use crate::lock::{LockGuard, LockMode};
use crate::store::Store;
use strata_codec::Limits;

/// What one layer blob must be, as its manifest descriptor and image config say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerBlob {
    /// sha256 of the (compressed) blob.
    pub digest: Sha256,
    /// Length of the blob.
    pub size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: Sha256,
}

/// A layer blob imported and verified, its objects and record staged under `tmp/`, waiting for
/// [`Store::commit_staged`]. Dropping it discards the staging; it holds the store's shared lock,
/// so GC cannot run meanwhile.
#[derive(Debug)]
pub struct StagedLayer {
    /// `None` once handed to the commit.
    staged: Option<Staged>,
    blob: LayerBlob,
    _lock: LockGuard,
}

impl StagedLayer {
    /// The blob it was imported from.
    pub fn blob(&self) -> &LayerBlob {
        &self.blob
    }
}

impl Drop for StagedLayer {
    fn drop(&mut self) {
        if let Some(staged) = &self.staged {
            let _ = fs::remove_dir_all(&staged.dir);
        }
    }
}

impl Store {
    /// Whether the store holds the layer whose uncompressed tar hashes to `diff_id`.
    pub fn has_layer(&self, diff_id: &Sha256) -> Result<bool, StoreError> {
        Ok(self.layer_meta(&diff_id.hex())?.is_some())
    }

    /// Whether the store has layer `diff_id` and can also write it as blob `digest` byte for
    /// byte. Under [`BlobPolicy::Keep`] a layer the store holds from another blob (the same
    /// tar compressed by another tool) is not enough: blob `digest` must be read again, to be
    /// kept, or the export of an image naming it would rewrite its manifest.
    pub fn has_layer_blob(&self, diff_id: &Sha256, digest: &Sha256) -> Result<bool, StoreError> {
        Ok(self.has_layer(diff_id)?
            && self.has_blob_of_held_layer(diff_id, digest, self.blob_policy())?)
    }

    /// [`has_layer_blob`](Store::has_layer_blob) under `policy`, for a layer the store holds.
    pub(crate) fn has_blob_of_held_layer(
        &self,
        diff_id: &Sha256,
        digest: &Sha256,
        policy: BlobPolicy,
    ) -> Result<bool, StoreError> {
        if policy != BlobPolicy::Keep || digest == diff_id || self.kept_blob(digest).is_some() {
            return Ok(true);
        }
        // The blob the layer came from is kept (above) or rebuilt exactly.
        let path = self.layer_dir(&diff_id.hex()).join("manifest");
        let bytes = fs::read(&path).at(&path)?;
        let (own, compression) = crate::record::decode_layer_blob(&bytes)?;
        Ok(crate::blobs::rebuilds_exactly(&own, &compression, digest))
    }

    /// Imports the layer blob read from `reader` (plain, gzip or zstd), verifying digest, size
    /// and diff_id against `blob` while it streams; nothing becomes visible until
    /// [`commit_staged`](Store::commit_staged).
    pub fn stage_layer_blob(
        &self,
        reader: impl Read + Send,
        blob: &LayerBlob,
        progress: Option<&dyn Progress>,
    ) -> Result<StagedLayer, ImportError> {
        let lock = self.lock(LockMode::Shared)?;
        let expected = Expected {
            blob: blob.digest.to_string(),
            digest: Some(Digest::Sha256(blob.digest)),
            size: Some(blob.size),
            diff_id: Some(blob.diff_id),
        };
        let policy = self.blob_policy();
        let staged = self.stage_layer(reader, &expected, &Limits::default(), policy, progress)?;
        Ok(StagedLayer {
            staged: Some(staged),
            blob: *blob,
            _lock: lock,
        })
    }

    /// Names the image of `manifest` and `config` (their bytes as fetched) once each of its
    /// layers is either in `staged` or already in the store; publishes the staged layers and
    /// commits in one transaction, as [`Store::import`] does. Checks that the config is the one
    /// the manifest names and that the layers match both.
    pub fn commit_staged(
        &self,
        manifest: &[u8],
        config: &[u8],
        mut staged: Vec<StagedLayer>,
        options: &ImportOptions<'_>,
    ) -> Result<ImportReport, ImportError> {
        let _lock = self.lock(LockMode::Shared)?;
        let parsed: ImageManifest = parse_json("manifest", Document::Manifest, manifest)?;
        let config_digest = Sha256::of(config).to_string();
        if parsed.config().digest().to_string() != config_digest {
            return Err(ImportError::Mismatch {
                blob: "config".to_owned(),
                check: BlobCheck::Digest,
                expected: parsed.config().digest().to_string(),
                actual: config_digest,
            });
        }
        let diff_ids = diff_ids("config", config)?;
        if diff_ids.len() != parsed.layers().len() {
            return Err(ImportError::LayerCount {
                manifest: parsed.layers().len(),
                config: diff_ids.len(),
            });
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        let mut slots = Vec::with_capacity(diff_ids.len());
        for (desc, diff_id) in parsed.layers().iter().zip(diff_ids) {
            let digest = desc.digest().to_string();
            let found = staged
                .iter_mut()
                .find(|s| s.blob.diff_id == diff_id && s.blob.digest.to_string() == digest)
                .and_then(|s| s.staged.take());
            if found.is_none() && !self.has_layer(&diff_id)? {
                return Err(ImportError::MissingBlob { blob: digest });
            }
            layers.push(Expected {
                blob: digest,
                digest: None,
                size: Some(desc.size()),
                diff_id: Some(diff_id),
            });
            slots.push(found);
        }
        let plan = Plan {
            manifest: Some(manifest.to_vec()),
            config: config.to_vec(),
            layers,
            names: Vec::new(),
            blobs: Blobs::Dir(PathBuf::new()),
        };
        // Staging names are unique per handle, not per process: once the commit renamed a
        // staging dir away, another handle may reuse its name, so clean up by identity.
        let inodes: Vec<Option<u64>> = slots
            .iter()
            .map(|s| {
                s.as_ref()
                    .and_then(|s| fs::metadata(&s.dir).ok())
                    .map(|m| m.ino())
            })
            .collect();
        let result = self.commit_import(&plan, &slots, options, StagedTree::None);
        // What the commit did not rename into place (a failure, a layer another import won).
        for (s, ino) in slots.iter().zip(inodes) {
            if let (Some(s), Some(ino)) = (s, ino) {
                if fs::metadata(&s.dir).is_ok_and(|m| m.ino() == ino) {
                    let _ = fs::remove_dir_all(&s.dir);
                }
            }
        }
        Ok(result?)
    }
}

//! Kept blobs: a layer's original compressed bytes, for when export could not reproduce them.
//!
//! Most registry images were compressed by Go's `compress/gzip`, whose deflate streams no
//! setting of zlib reproduces. Rebuilding such a layer changes its digest, and with it the
//! manifest's and the image's. Under [`BlobPolicy::Keep`] (the default) the import keeps every
//! compressed blob it did not make itself as received, once, at `blobs/sha256/<hex>`; export,
//! save and push write it byte for byte. The import's probe of compression settings compares
//! only the first 256 KiB, so a match there proves nothing about the rest (GNU gzip's streams
//! match zlib's for a while, then differ); proving it would cost a full recompression of every
//! layer. Plain tars, and the layers Strata compressed itself (a commit), are rebuilt instead
//! and not kept. GC removes a kept blob with the last image whose manifest names it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{HashingWriter, Sha256};
use crate::error::{IoContext, StoreError};
use crate::record::{Compression, ImageRecord};
use crate::store::Store;

/// Whether the store keeps layer blobs that export cannot reproduce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobPolicy {
    /// Keep them: every digest survives export, save and push, at the cost of storing those
    /// blobs' compressed bytes beside the deduplicated files (the default).
    #[default]
    Keep,
    /// Keep none, and let GC drop those kept before: export rebuilds such a layer with a
    /// standard setting, so its blob digest, the manifest digest and the image id in the
    /// exported layout differ from the registry's (diff_ids never change).
    Reproducible,
}

/// Name of the blob a staged layer keeps, inside its staging dir.
pub(crate) const STAGED_BLOB: &str = "blob";
/// The read size when a kept blob is copied out.
const COPY_CHUNK: usize = 1 << 20;

/// Whether export rebuilds a blob of this compression byte for byte for certain: a plain tar.
pub(crate) fn reproducible(compression: &Compression) -> bool {
    matches!(compression, Compression::None)
}

/// Whether export writes blob `wanted` of a layer imported from blob `own` compressed as
/// `compression` without a kept copy: it is the layer's own blob, and the import found the
/// settings that reproduce it (a plain tar, or Strata's own compression). Import, pull and push
/// all decide by this rule.
pub(crate) fn rebuilds_exactly(own: &Sha256, compression: &Compression, wanted: &Sha256) -> bool {
    wanted == own && crate::compress::settings_found(compression)
}

/// A reader that copies what it reads into a file: the blob as received, while it streams.
pub(crate) struct Tee<R> {
    pub inner: R,
    pub copy: Option<File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(copy) = &mut self.copy {
            copy.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

impl Store {
    fn blobs_dir(&self) -> PathBuf {
        self.root().join("blobs").join("sha256")
    }

    /// Where the kept blob `digest` is, if the store keeps it.
    pub(crate) fn kept_blob_path(&self, digest: &Sha256) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// The kept blob `digest`, if the store keeps it.
    pub(crate) fn kept_blob(&self, digest: &Sha256) -> Option<PathBuf> {
        let path = self.kept_blob_path(digest);
        path.is_file().then_some(path)
    }

    /// Moves the blob a staged layer kept (`staged_dir/blob`) to `blobs/sha256/<digest>`
    /// unless the store has it; returns what to flush before the commit names it.
    pub(crate) fn publish_kept_blob(
        &self,
        staged_dir: &Path,
        digest: &Sha256,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let staged = staged_dir.join(STAGED_BLOB);
        if !staged.exists() {
            return Ok(Vec::new());
        }
        let dir = self.blobs_dir();
        fs::create_dir_all(&dir).at(&dir)?;
        let dest = dir.join(digest.hex());
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staged,
            rustix::fs::CWD,
            &dest,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(vec![
                dest,
                dir.clone(),
                self.root().join("blobs"),
                self.root().to_owned(),
            ]),
            Err(rustix::io::Errno::EXIST) => {
                fs::remove_file(&staged).at(&staged)?;
                Ok(Vec::new())
            }
            Err(e) => Err(e).at(&dest),
        }
    }

    /// Copies kept blob `path` to `out`, checking that it still hashes to `digest`.
    pub(crate) fn copy_kept_blob(
        &self,
        path: &Path,
        digest: &Sha256,
        out: impl Write,
    ) -> Result<(Sha256, u64), StoreError> {
        let mut hashing = HashingWriter::new(out);
        let mut file = File::open(path).at(path)?;
        // Large reads: `io::copy` through a writer that is not a file moves 8 KiB at a time.
        let mut buf = vec![0; COPY_CHUNK];
        loop {
            let n = file.read(&mut buf).at(path)?;
            if n == 0 {
                break;
            }
            hashing.write_all(&buf[..n]).at(path)?;
        }
        let (found, size, mut out) = hashing.finish();
        out.flush().at(path)?;
        if Sha256(found) != *digest {
            return Err(StoreError::ObjectCorrupt {
                id: format!("blob {}", digest.hex()),
                actual: format!("kept blob hashes to {}", Sha256(found)),
            });
        }
        Ok((*digest, size))
    }

    /// Kept blobs no image in `live` names (all of them under [`BlobPolicy::Reproducible`]),
    /// with their sizes.
    pub(crate) fn dead_kept_blobs(
        &self,
        live: &[ImageRecord],
    ) -> Result<Vec<(PathBuf, u64)>, StoreError> {
        let named: HashSet<String> = match self.blob_policy() {
            BlobPolicy::Reproducible => HashSet::new(),
            BlobPolicy::Keep => live.iter().flat_map(layer_digests).collect(),
        };
        Ok(self
            .kept_blobs()?
            .into_iter()
            .filter(|(path, _)| {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                !named.contains(name)
            })
            .collect())
    }

    /// Every kept blob, with its allocated bytes.
    pub(crate) fn kept_blobs(&self) -> Result<Vec<(PathBuf, u64)>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.blobs_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at(&dir),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.at(&dir)?;
            let bytes = entry.metadata().at(&dir)?.blocks() * 512;
            out.push((entry.path(), bytes));
        }
        Ok(out)
    }
}

/// The hex digests of the layer blobs `image`'s manifest names.
fn layer_digests(image: &ImageRecord) -> Vec<String> {
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap_or_default();
    manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["digest"].as_str()?.strip_prefix("sha256:"))
        .map(str::to_owned)
        .collect()
}

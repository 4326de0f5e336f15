//! Importing one layer blob: decompress → tar → objects, hashing the blob (digest) and the tar
//! (diff_id) on the way, and staging its record under `tmp/`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use sha2::Digest as _;

use crate::blobs::{BlobPolicy, STAGED_BLOB, Tee, reproducible};
use crate::digest::{Digest, HashingReader, Sha256};
use crate::error::{IoContext, StoreError};
use crate::import::pipe;
use crate::import::{BlobCheck, ImportError, Progress};
use crate::object::{Inserted, ObjectId, Stage};
use crate::record::{self, EntryKind, Kind, LayerMeta, LayerRecord};
use crate::store::Store;
use crate::tarstream::{self, FileData, Parts};
use strata_codec::Limits;

/// Files up to this size are read whole, hashed, and written only if new.
const SMALL_FILE: u64 = 8 << 20;

/// What a layer blob must hash to; `None` where the source does not say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    /// The blob's name in its source, for errors.
    pub blob: String,
    /// The blob's digest (sha256, or sha512 where the descriptor says so).
    pub digest: Option<Digest>,
    /// Length of the blob.
    pub size: Option<u64>,
    /// sha256 of the uncompressed tar.
    pub diff_id: Option<Sha256>,
}

/// A layer whose objects and record are staged in `tmp/`.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The staging directory holding `manifest` (and `tree/` once the commit built it).
    pub dir: PathBuf,
    /// Its objects, staged in `objects/` inside `dir`.
    pub objects: Stage,
    /// The record.
    pub record: LayerRecord,
    /// Its `layers` table row.
    pub meta: LayerMeta,
    /// Objects staged by this layer.
    pub objects_new: u64,
    /// Objects the store or this layer already had.
    pub objects_existing: u64,
}

/// What reading the tar produced.
struct TarResult {
    parts: Parts,
    diff_id: Sha256,
    tar_size: u64,
    objects_new: u64,
    objects_existing: u64,
}

impl Store {
    /// Imports the layer blob read from `reader`, verifying it against `expected`; on error
    /// nothing is staged (objects written stay, unreferenced, for GC).
    pub(crate) fn stage_layer(
        &self,
        reader: impl Read + Send,
        expected: &Expected,
        limits: &Limits,
        blobs: BlobPolicy,
        progress: Option<&dyn Progress>,
    ) -> Result<Staged, StoreError> {
        let dir = self.new_tmp_dir("layer")?;
        let result = self.stage_layer_in(&dir, reader, expected, limits, blobs, progress);
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn stage_layer_in(
        &self,
        dir: &Path,
        reader: impl Read + Send,
        expected: &Expected,
        limits: &Limits,
        blobs: BlobPolicy,
        progress: Option<&dyn Progress>,
    ) -> Result<Staged, StoreError> {
        let mut stage = self.objects.stage(dir.join("objects"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(pipe::DEPTH);
        let (recycle, recycled) = std::sync::mpsc::channel();
        // The store keeps sha256; a descriptor's sha512 is computed beside it.
        let sha512 = matches!(expected.digest, Some(Digest::Sha512(_)))
            .then(|| Arc::new(Mutex::new(sha2::Sha512::new())));
        // The blob as received, in case export cannot rebuild it (see `blobs.rs`).
        let keep = blobs == BlobPolicy::Keep;
        let kept = dir.join(STAGED_BLOB);
        let copy = keep
            .then(|| fs::File::create_new(&kept).at(&kept))
            .transpose()?;
        let reader = Sha512Reader {
            inner: Tee {
                inner: reader,
                copy,
            },
            hasher: sha512.clone(),
        };
        let (tar, summary) = std::thread::scope(|scope| {
            let producer = scope.spawn(move || pipe::decompress(reader, progress, tx, recycled));
            let tar = self.read_tar(&mut stage, limits, pipe::ChunkReader::new(rx, recycle));
            let summary = producer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("decompression thread panicked")));
            (tar, summary)
        });
        // The first real failure wins: a failed tar makes the decompressor see a closed pipe,
        // and a failed read or decompression makes the tar look truncated.
        let (summary, tar) = match (summary, tar) {
            (Ok(summary), Ok(tar)) => (summary, tar),
            (Err(stopped), Err(tar)) if pipe::reader_stopped(&stopped) => {
                return Err(in_layer(&expected.blob, tar));
            }
            (Err(source), _) => {
                return Err(ImportError::Read {
                    blob: expected.blob.clone(),
                    source,
                }
                .into());
            }
            (Ok(_), Err(tar)) => return Err(in_layer(&expected.blob, tar)),
        };
        tracing::debug!(blob = %expected.blob, "layer read");
        let (compression, digest, blob_size) = (summary.compression, summary.digest, summary.size);
        let digest_as_described = match sha512 {
            Some(hasher) => {
                let hasher = std::mem::take(&mut *hasher.lock().unwrap_or_else(|e| e.into_inner()));
                Digest::Sha512(hasher.finalize().into())
            }
            None => Digest::Sha256(digest),
        };
        verify(expected, digest_as_described, blob_size, tar.diff_id)?;
        if keep && reproducible(&compression) {
            fs::remove_file(&kept).at(&kept)?;
        }
        let file_bytes = tar
            .parts
            .entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum();
        let record = LayerRecord {
            diff_id: tar.diff_id,
            tar_size: tar.tar_size,
            blob_digest: digest,
            blob_size,
            compression,
            stream: tar.parts.stream,
            entries: tar.parts.entries,
        };
        let path = dir.join("manifest");
        fs::write(&path, record::encode(Kind::Layer, &record)?).at(&path)?;
        Ok(Staged {
            dir: dir.to_path_buf(),
            objects: stage,
            meta: LayerMeta {
                tar_size: record.tar_size,
                file_bytes,
                materialized: None,
            },
            record,
            objects_new: tar.objects_new,
            objects_existing: tar.objects_existing,
        })
    }

    /// Splits the tar read from `reader` into objects and parts, hashing it.
    fn read_tar(
        &self,
        stage: &mut Stage,
        limits: &Limits,
        reader: impl Read,
    ) -> Result<TarResult, StoreError> {
        let mut tar = HashingReader::new(reader);
        let (mut new, mut existing) = (0u64, 0u64);
        let mut buf = Vec::new();
        let parts = tarstream::split(&mut tar, limits, |file: &mut dyn Read, data| {
            let (id, inserted) = self.store_file(stage, file, data, &mut buf)?;
            match inserted {
                Inserted::New => new += 1,
                Inserted::Existing => existing += 1,
            }
            Ok::<ObjectId, StoreError>(id)
        })?;
        let (diff_id, tar_size) = tar.finish();
        let diff_id = Sha256(diff_id);
        Ok(TarResult {
            parts,
            diff_id,
            tar_size,
            objects_new: new,
            objects_existing: existing,
        })
    }

    fn store_file(
        &self,
        stage: &mut Stage,
        file: &mut dyn Read,
        data: FileData<'_>,
        buf: &mut Vec<u8>,
    ) -> Result<(ObjectId, Inserted), StoreError> {
        if data.size > SMALL_FILE {
            let read_error = |source| data.read_error(source).into();
            return self
                .objects
                .stage_stream(stage, file, data.size, &read_error);
        }
        buf.clear();
        file.read_to_end(buf)
            .map_err(|source| data.read_error(source))?;
        if buf.len() as u64 != data.size {
            return Err(data.read_error(io::ErrorKind::UnexpectedEof.into()).into());
        }
        self.objects.stage_bytes(stage, buf)
    }
}

/// A tar error of layer `blob`, named so; other errors (the store's own I/O) name their path.
fn in_layer(blob: &str, err: StoreError) -> StoreError {
    match err {
        StoreError::Tar(source) => ImportError::Layer {
            blob: blob.to_owned(),
            source,
        }
        .into(),
        other => other,
    }
}

/// Hashes what it reads with sha512 when asked to.
struct Sha512Reader<R> {
    inner: R,
    hasher: Option<Arc<Mutex<sha2::Sha512>>>,
}

impl<R: Read> Read for Sha512Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &self.hasher {
            hasher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Checks the blob's digest, size and diff_id against what its source promised.
fn verify(
    expected: &Expected,
    digest: Digest,
    size: u64,
    diff_id: Sha256,
) -> Result<(), ImportError> {
    let mismatch = |check, want: String, got: String| ImportError::Mismatch {
        blob: expected.blob.clone(),
        check,
        expected: want,
        actual: got,
    };
    if let Some(want) = expected.size.filter(|&want| want != size) {
        return Err(mismatch(
            BlobCheck::Size,
            want.to_string(),
            size.to_string(),
        ));
    }
    if let Some(want) = expected.digest.filter(|&want| want != digest) {
        return Err(mismatch(
            BlobCheck::Digest,
            want.to_string(),
            digest.to_string(),
        ));
    }
    if let Some(want) = expected.diff_id.filter(|&want| want != diff_id) {
        return Err(mismatch(
            BlobCheck::DiffId,
            want.to_string(),
            diff_id.to_string(),
        ));
    }
    Ok(())
}

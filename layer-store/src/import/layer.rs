//! Importing one layer blob: decompress → tar → objects, hashing the blob (digest) and the tar
//! (diff_id) on the way, and staging its record under `tmp/`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{HashingReader, Sha256};
use crate::error::{IoContext, StoreError};
use crate::import::pipe;
use crate::import::{ImportError, ImportProgress};
use crate::object::{Inserted, ObjectId, Stage};
use crate::record::{self, EntryKind, Kind, LayerMeta, LayerRecord};
use crate::store::Store;
use crate::tarstream::{self, Parts};

/// Files up to this size are read whole, hashed, and written only if new.
const SMALL_FILE: u64 = 8 << 20;

/// What a layer blob must hash to; `None` where the source does not say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    /// The blob's name in its source, for errors.
    pub blob: String,
    /// sha256 of the blob.
    pub digest: Option<Sha256>,
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
        progress: Option<&dyn ImportProgress>,
    ) -> Result<Staged, StoreError> {
        let dir = self.new_tmp_dir("layer")?;
        let result = self.stage_layer_in(&dir, reader, expected, progress);
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
        progress: Option<&dyn ImportProgress>,
    ) -> Result<Staged, StoreError> {
        let mut stage = self.objects.stage(dir.join("objects"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(pipe::DEPTH);
        let (recycle, recycled) = std::sync::mpsc::channel();
        let (tar, summary) = std::thread::scope(|scope| {
            let producer = scope.spawn(move || pipe::decompress(reader, progress, tx, recycled));
            let tar = self.read_tar(&mut stage, pipe::ChunkReader::new(rx, recycle));
            let summary = producer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("decompression thread panicked")));
            (tar, summary)
        });
        // A failed read or decompression explains a failed tar best.
        let summary = summary.map_err(|source| ImportError::Read {
            blob: expected.blob.clone(),
            source,
        })?;
        let tar = tar?;
        tracing::debug!(blob = %expected.blob, "layer read");
        let (compression, digest, blob_size) = (summary.compression, summary.digest, summary.size);
        verify(expected, digest, blob_size, tar.diff_id)?;
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
    fn read_tar(&self, stage: &mut Stage, reader: impl Read) -> Result<TarResult, StoreError> {
        let mut tar = HashingReader::new(reader);
        let (mut new, mut existing) = (0u64, 0u64);
        let mut buf = Vec::new();
        let parts = tarstream::split(&mut tar, |file: &mut dyn Read, size| {
            let (id, inserted) = self.store_file(stage, file, size, &mut buf)?;
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
        size: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(ObjectId, Inserted), StoreError> {
        if size > SMALL_FILE {
            return self.objects.stage_stream(stage, file, size);
        }
        buf.clear();
        file.read_to_end(buf)
            .map_err(|source| tarstream::TarError::Io { offset: 0, source })?;
        if buf.len() as u64 != size {
            let source = io::Error::from(io::ErrorKind::UnexpectedEof);
            return Err(tarstream::TarError::Io { offset: 0, source }.into());
        }
        self.objects.stage_bytes(stage, buf)
    }
}

/// Checks the blob's digest, size and diff_id against what its source promised.
fn verify(
    expected: &Expected,
    digest: Sha256,
    size: u64,
    diff_id: Sha256,
) -> Result<(), ImportError> {
    let mismatch = |what: &'static str, want: String, got: String| ImportError::Mismatch {
        blob: expected.blob.clone(),
        what,
        expected: want,
        actual: got,
    };
    if let Some(want) = expected.size.filter(|&want| want != size) {
        return Err(mismatch("size", want.to_string(), size.to_string()));
    }
    if let Some(want) = expected.digest.filter(|&want| want != digest) {
        return Err(mismatch("digest", want.to_string(), digest.to_string()));
    }
    if let Some(want) = expected.diff_id.filter(|&want| want != diff_id) {
        return Err(mismatch("diff_id", want.to_string(), diff_id.to_string()));
    }
    Ok(())
}

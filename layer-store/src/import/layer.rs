//! Importing one layer blob: decompress → tar → objects, hashing the blob (digest) and the tar
//! (diff_id) on the way, and staging its record under `tmp/`.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::compress::{self, Format, PROBE_COMPRESSED_LEN, PROBE_LEN, Probe};
use crate::digest::{HashingReader, Sha256};
use crate::error::{IoContext, StoreError};
use crate::import::{ImportError, ImportProgress};
use crate::object::{Inserted, ObjectId};
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

/// A layer whose objects are in the store and whose record is staged in `tmp/`.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The staging directory holding `manifest`.
    pub dir: PathBuf,
    /// The record.
    pub record: LayerRecord,
    /// Its `layers` table row.
    pub meta: LayerMeta,
    /// Objects staged by this layer.
    pub objects_new: u64,
    /// Objects the store or this layer already had.
    pub objects_existing: u64,
}

/// Remembers the first `limit` bytes read through it.
struct Tee<R> {
    inner: R,
    kept: Vec<u8>,
    limit: usize,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let room = self.limit - self.kept.len();
        self.kept.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }
}

/// Reports bytes read to the progress sink.
struct Counted<'p, R> {
    inner: R,
    progress: Option<&'p dyn ImportProgress>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress {
            p.advance(n as u64);
        }
        Ok(n)
    }
}

/// What reading the tar produced.
struct TarResult {
    parts: Parts,
    diff_id: Sha256,
    tar_size: u64,
    raw_prefix: Vec<u8>,
    objects_new: u64,
    objects_existing: u64,
}

impl Store {
    /// Imports the layer blob read from `reader`, verifying it against `expected`; on error
    /// nothing is staged (objects written stay, unreferenced, for GC).
    pub(crate) fn stage_layer(
        &self,
        reader: impl Read,
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
        reader: impl Read,
        expected: &Expected,
        progress: Option<&dyn ImportProgress>,
    ) -> Result<Staged, StoreError> {
        let stage = dir.join("objects");
        fs::create_dir(&stage).at(&stage)?;
        let counted = Counted {
            inner: reader,
            progress,
        };
        let mut blob = HashingReader::new(Tee {
            inner: counted,
            kept: Vec::new(),
            limit: PROBE_COMPRESSED_LEN,
        });
        let mut buffered = BufReader::with_capacity(1 << 20, &mut blob);
        let read_err = |source: io::Error| ImportError::Read {
            blob: expected.blob.clone(),
            source,
        };
        let format = compress::detect(buffered.fill_buf().map_err(read_err)?);
        let tar = match format {
            Format::Plain => self.read_tar(&stage, &mut buffered)?,
            Format::Gzip => {
                self.read_tar(&stage, flate2::bufread::MultiGzDecoder::new(&mut buffered))?
            }
            Format::Zstd => self.read_tar(
                &stage,
                zstd::stream::read::Decoder::with_buffer(&mut buffered).map_err(read_err)?,
            )?,
        };
        // Whatever follows the compressed stream is part of the blob and its digest.
        io::copy(&mut buffered, &mut io::sink()).map_err(read_err)?;
        drop(buffered);
        let probe_compressed = std::mem::take(&mut blob.get_mut().kept);
        let (digest, blob_size) = blob.finish();
        verify(expected, digest, blob_size, tar.diff_id)?;
        let probe = Probe {
            compressed: &probe_compressed,
            raw: &tar.raw_prefix,
            raw_len: tar.tar_size,
        };
        let compression = compress::identify(format, &probe);
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
    fn read_tar(&self, stage: &Path, reader: impl Read) -> Result<TarResult, StoreError> {
        let mut tar = HashingReader::new(Tee {
            inner: reader,
            kept: Vec::new(),
            limit: PROBE_LEN,
        });
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
        let raw_prefix = std::mem::take(&mut tar.get_mut().kept);
        let (diff_id, tar_size) = tar.finish();
        Ok(TarResult {
            parts,
            diff_id,
            tar_size,
            raw_prefix,
            objects_new: new,
            objects_existing: existing,
        })
    }

    fn store_file(
        &self,
        stage: &Path,
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

//! A [`ChangeSet`] as a deterministic OCI layer stream.

mod emit;
pub mod hash;
mod header;
mod pipe;
mod source;

use std::io::{self, Write};
use std::path::PathBuf;

use crate::change::{ChangeSet, Threads};
use crate::compress::{Compressor, GZIP_HEADER, GZIP_LEVEL, ZSTD_LEVEL};
use hash::{HashingWriter, oci_digest};

/// The compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// A plain tar (`application/vnd.oci.image.layer.v1.tar`).
    #[default]
    None,
    /// gzip (`…tar+gzip`): [`GZIP_LEVEL`](crate::compress::GZIP_LEVEL) and
    /// [`GZIP_HEADER`](crate::compress::GZIP_HEADER) (no name or mtime).
    Gzip,
    /// zstd (`…tar+zstd`) at [`ZSTD_LEVEL`](crate::compress::ZSTD_LEVEL).
    Zstd,
}

/// How a layer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Compression of the blob.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are written as this (reproducible builds).
    pub source_date_epoch: Option<i64>,
    /// [`Threads::Sequential`]: everything on the calling thread (the 1-thread baseline).
    /// Otherwise (the default) a helper thread reads the source files and builds the tar stream
    /// while the calling thread hashes, compresses and writes it. The bytes are the same.
    pub threads: Threads,
}

impl WriteOptions {
    /// Options with this compression and no mtime clamp.
    pub fn new(compression: Compression) -> Self {
        WriteOptions {
            compression,
            source_date_epoch: None,
            threads: Threads::default(),
        }
    }

    /// With [`source_date_epoch`](WriteOptions::source_date_epoch) set to `epoch`.
    pub fn with_source_date_epoch(mut self, epoch: Option<i64>) -> Self {
        self.source_date_epoch = epoch;
        self
    }

    /// With [`threads`](WriteOptions::threads) set to `threads`.
    pub fn with_threads(mut self, threads: Threads) -> Self {
        self.threads = threads;
        self
    }

    /// Takes the mtime clamp from the `SOURCE_DATE_EPOCH` environment variable, if it is set
    /// to a number of seconds.
    pub fn with_source_date_epoch_from_env(mut self) -> Self {
        self.source_date_epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        self
    }
}

/// The identity of a written layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LayerDigests {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// `sha256:<hex>` of the blob as written.
    pub digest: String,
    /// Size in bytes of the blob as written.
    pub size: u64,
}

/// Why writing a layer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Reading a source entry failed.
    #[error("reading {path}")]
    Read {
        /// The source entry at fault.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A source file changed size while it was being written.
    #[error("{path} changed while being written (expected {expected} bytes)")]
    Changed {
        /// The source entry at fault.
        path: PathBuf,
        /// The size its metadata said.
        expected: u64,
    },
    /// A source entry is not what the diff walk saw: a directory on its path became a symlink
    /// or a non-directory, or the file opened is another inode. A running container can do
    /// this to make the layer read a host file; the layer is refused instead.
    #[error("{path} was replaced while the layer was written")]
    Swapped {
        /// The source entry at fault.
        path: PathBuf,
    },
    /// A source name starts with `.wh.`, which a layer reserves for whiteouts.
    #[error("{path}: names starting with .wh. are reserved for whiteouts")]
    ReservedName {
        /// The entry at fault.
        path: PathBuf,
    },
    /// A unix socket cannot be stored in a layer.
    #[error("{path}: sockets cannot be stored in a layer")]
    Socket {
        /// The entry at fault.
        path: PathBuf,
    },
    /// Writing the output failed.
    #[error("writing the layer")]
    Output(#[source] io::Error),
    /// The helper thread that reads the source files could not be started.
    #[error("starting the layer reader thread")]
    Thread(#[source] io::Error),
}

/// Writes `set` as an OCI layer to `out` and returns its digests.
///
/// The bytes depend only on the change set and the source tree: entries in walk order, each
/// missing parent directory once before its first child, deletions as `.wh.<name>` whiteouts
/// (at the epoch), hardlinks keyed by (dev, ino), PAX records for long or non-ASCII names, big
/// sizes and ids, and xattrs (`SCHILY.xattr.*`, without `trusted.overlay.*`, `user.overlay.*`
/// and `security.selinux`; v3 file capabilities are written as v2), and no user or group names,
/// atime or ctime.
///
/// The source may belong to a running container that changes it meanwhile: every directory on
/// a path is opened from its parent's handle without following a symlink, and every file read
/// must be the inode (dev, ino) the diff recorded, or the write fails with
/// [`WriteError::Swapped`] rather than read something outside the source.
pub fn write_layer(
    set: &ChangeSet,
    options: &WriteOptions,
    out: impl Write,
) -> Result<LayerDigests, WriteError> {
    let mut blob = HashingWriter::new(out);
    let diff_id = match options.compression {
        Compression::None => {
            stream(set, options, &mut blob)?;
            None
        }
        Compression::Gzip => Some(compressed(
            set,
            options,
            Compressor::gzip(&mut blob, &GZIP_HEADER, GZIP_LEVEL),
        )?),
        Compression::Zstd => Some(compressed(
            set,
            options,
            Compressor::zstd(&mut blob, ZSTD_LEVEL, false, None),
        )?),
    };
    blob.flush().map_err(WriteError::Output)?;
    let (digest, size, _) = blob.finish();
    let digest = oci_digest(&digest);
    Ok(LayerDigests {
        diff_id: diff_id.unwrap_or_else(|| digest.clone()),
        digest,
        size,
    })
}

/// Streams `set` through `compressor`; returns the diff_id.
fn compressed<W: Write>(
    set: &ChangeSet,
    options: &WriteOptions,
    compressor: io::Result<Compressor<W>>,
) -> Result<String, WriteError> {
    let mut tar = HashingWriter::new(compressor.map_err(WriteError::Output)?);
    stream(set, options, &mut tar)?;
    let (diff_id, _, compressor) = tar.finish();
    compressor.finish().map_err(WriteError::Output)?;
    Ok(oci_digest(&diff_id))
}

/// The tar stream of `set` into `tar` in fixed chunks, overlapped with its consumer unless
/// sequential.
fn stream(set: &ChangeSet, options: &WriteOptions, tar: &mut impl Write) -> Result<(), WriteError> {
    match options.threads {
        Threads::Sequential => pipe::sequential(tar, |chunks| emit::emit(set, options, chunks)),
        Threads::Rayon => pipe::overlapped(tar, |chunks| emit::emit(set, options, chunks)),
    }
}

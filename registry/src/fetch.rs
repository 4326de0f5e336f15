//! Fetching one layer blob: its bytes stream from the registry straight into the store's
//! verifying import, and are appended to `tmp/pull/<digest hex>` on the way (see `download`).
//! When a pull is interrupted, the next one feeds that file to the import first (rehashing it:
//! the sha256 state is rebuilt from the bytes, never trusted) and asks the registry only for the
//! rest, with an HTTP range request. The file is locked while in use, so concurrent pulls of one
//! blob take turns, and the second finds the layer already in the store.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::stream::BoxStream;
use oci_client::client::BlobResponse;
use oci_client::errors::OciDistributionError;
use rustix::fs::FlockOperation;
use strata_layer_store::{
    ImportError, LayerBlob, Part, PartEnd, Progress, StagedLayer, StoreError,
};

use crate::download::Download;
use crate::pull::Pull;
use crate::session::Session;
use crate::task;
use crate::{PullError, RegistryError};

/// A layer fetched and staged.
pub(crate) struct Fetched {
    /// Taken by the commit.
    pub staged: Option<StagedLayer>,
    /// The partial-download file, removed once the image is committed.
    pub partial: PathBuf,
    /// Bytes downloaded now.
    pub network: u64,
    /// Bytes found on disk from an earlier, interrupted pull.
    pub resumed: u64,
}

/// Forwards the bytes of one layer (the store's import, an upload) to the operation's
/// observer as that layer's.
pub(crate) struct LayerProgress {
    pub index: usize,
    pub sink: Arc<dyn Progress>,
}

impl Progress for LayerProgress {
    fn advance(&self, _index: usize, bytes: u64) {
        self.sink.advance(self.index, bytes);
    }
}

/// The partial download of one blob, locked.
struct Partial {
    /// Open and locked until the layer is staged.
    file: File,
    path: PathBuf,
    /// Bytes of the blob it holds.
    have: u64,
}

/// Fetches layer `index` of `pull` into a staged import; `None` when another pull committed
/// the layer while this one waited for the blob's lock.
pub(crate) async fn fetch_layer(
    pull: &Arc<Pull>,
    index: usize,
) -> Result<Option<Fetched>, RegistryError> {
    let blob = pull.blobs[index];
    let locker = pull.clone();
    let Some(Partial {
        file,
        path,
        mut have,
    }) = task::blocking(move || lock(&locker, &blob)).await??
    else {
        return Ok(None);
    };
    let stream = if have == blob.size {
        None
    } else {
        let from = have;
        let fail = pull
            .session
            .fail(format!("blob {} from byte {from}", blob.digest));
        Some(
            request(&pull.session, &blob, &mut have)
                .await
                .map_err(fail)?,
        )
    };
    // `file` itself stays open, holding the lock, until the layer is staged.
    let network = match stream {
        Some(stream) => {
            let append = file
                .try_clone()
                .map_err(|e| layer_err(pull, &blob, io_at(&path, e)))?;
            Some(Download::start(stream, append, pull.stop.clone()))
        }
        None => None,
    };
    let importer = pull.clone();
    task::blocking(move || import(&importer, index, &blob, file, path, have, network)).await?
}

/// Opens and locks the partial download of `blob`, waiting for another pull that holds it;
/// `None` once the layer is in the store from this blob (that pull committed it).
fn lock(pull: &Pull, blob: &LayerBlob) -> Result<Option<Partial>, RegistryError> {
    let fail = |e: StoreError| layer_err(pull, blob, e);
    let dir = pull.store.scratch_dir("pull").map_err(fail)?;
    let path = dir.join(blob.digest.hex());
    let file = lock_partial(&path).map_err(|e| fail(io_at(&path, e)))?;
    if pull.store.has_layer_blob(&blob.diff_id, &blob.digest)? {
        return Ok(None);
    }
    let mut have = file.metadata().map_err(|e| fail(io_at(&path, e)))?.len();
    if have > blob.size {
        file.set_len(0).map_err(|e| fail(io_at(&path, e)))?;
        have = 0;
    }
    Ok(Some(Partial { file, path, have }))
}

/// Stages layer `index` (`blob`) from the first `have` bytes of `file` followed by what
/// `network` brings.
fn import(
    pull: &Pull,
    index: usize,
    blob: &LayerBlob,
    file: File,
    path: PathBuf,
    have: u64,
    mut network: Option<Download>,
) -> Result<Option<Fetched>, RegistryError> {
    let fail = |e: io::Error| layer_err(pull, blob, io_at(&path, e));
    if have == 0 {
        file.set_len(0).map_err(fail)?;
    }
    (&file).seek(SeekFrom::Start(have)).map_err(fail)?;
    let sink = pull.progress.as_deref();
    if let Some(p) = sink {
        let digest = blob.digest.to_string();
        let of = pull.blobs.len();
        p.part_started(&Part::new(index, of, &digest, blob.size).with_done(have));
    }
    let on_disk = Prefix {
        file: &file,
        pos: 0,
        end: have,
    };
    let progress = pull
        .progress
        .clone()
        .map(|sink| LayerProgress { index, sink });
    let rest: Box<dyn Read + Send> = match network.as_mut() {
        Some(download) => Box::new(download),
        None => Box::new(io::empty()),
    };
    let result = pull.store.stage_layer_blob(
        on_disk.chain(rest),
        blob,
        progress.as_ref().map(|p| p as &dyn Progress),
    );
    match result {
        Ok(staged) => {
            if let Some(p) = sink {
                p.part_finished(index, PartEnd::Done);
            }
            Ok(Some(Fetched {
                staged: Some(staged),
                partial: path,
                network: network.as_ref().map_or(0, |d| d.received),
                resumed: have,
            }))
        }
        Err(e) => {
            if pull.stop.is_set() {
                return Err(PullError::Cancelled {
                    reference: pull.session.name.clone(),
                }
                .into());
            }
            // Keep what a broken connection left, to resume from; bytes that failed to verify
            // or decode are wrong and must not be resumed from.
            let transient = network.as_ref().is_some_and(|d| d.interrupted)
                && matches!(e, ImportError::Read { .. });
            if !transient {
                let _ = fs::remove_file(&path);
            }
            Err(layer_err(pull, blob, e))
        }
    }
}

/// An import (or store) error while fetching `blob`, named as such.
fn layer_err(pull: &Pull, blob: &LayerBlob, source: impl Into<ImportError>) -> RegistryError {
    PullError::Layer {
        reference: pull.session.name.clone(),
        digest: blob.digest.to_string(),
        source: Box::new(source.into()),
    }
    .into()
}

/// An I/O error on the partial download at `path`.
fn io_at(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The first `end` bytes of a file, read without moving its offset (where the download
/// appends), and from the locked file itself: another pull may unlink its path meanwhile.
struct Prefix<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Prefix<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Opens and exclusively locks the partial download at `path`, waiting for another pull that
/// holds it; retries if that pull removed the file meanwhile.
///
/// # References
/// - [`flock(2)`](https://man7.org/linux/man-pages/man2/flock.2.html)
fn lock_partial(path: &Path) -> io::Result<File> {
    loop {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)?;
        let held = file.metadata()?;
        match fs::metadata(path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(file),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Asks for blob `blob` from byte `have` on: a range request even from byte 0, so that the
/// response is the bytes as they come (the import verifies them; the client's own check
/// would hash the blob a second time). `have` drops to 0 if the registry ignores the range.
async fn request(
    session: &Session,
    blob: &LayerBlob,
    have: &mut u64,
) -> Result<BoxStream<'static, io::Result<bytes::Bytes>>, OciDistributionError> {
    let digest = blob.digest.to_string();
    let response = session
        .client
        .pull_blob_stream_partial(&session.reference, digest.as_str(), *have, None)
        .await?;
    Ok(match response {
        BlobResponse::Partial(s) => s.stream,
        BlobResponse::Full(s) => {
            *have = 0;
            s.stream
        }
    })
}

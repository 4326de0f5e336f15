//! Fetching one layer blob: its bytes stream from the registry straight into the store's
//! verifying import, and are appended to `tmp/pull/<digest hex>` on the way (see `download`).
//! When a pull is interrupted, the next one feeds that file to the import first (rehashing it:
//! the sha256 state is rebuilt from the bytes, never trusted) and asks the registry only for the
//! rest, with an HTTP range request. The file is locked while in use, so concurrent pulls of one
//! blob take turns, and the second finds the layer already in the store.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use futures_util::stream::BoxStream;
use oci_client::client::BlobResponse;
use oci_client::errors::OciDistributionError;
use rustix::fs::FlockOperation;

use crate::error::{IoContext, StoreError};
use crate::import::{ImportError, ImportProgress, LayerBlob, StagedLayer};
use crate::registry::RegistryError;
use crate::registry::download::Download;
use crate::registry::pull::{PullOptions, PullProgress};
use crate::registry::session::Session;
use crate::store::Store;

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

/// Forwards import progress of one layer to the pull's observer.
struct LayerProgress<'a> {
    index: usize,
    sink: &'a dyn PullProgress,
}

impl ImportProgress for LayerProgress<'_> {
    fn start(&self, _total: u64) {}
    fn advance(&self, bytes: u64) {
        self.sink.layer_advance(self.index, bytes);
    }
}

/// Fetches layer `index` (`blob`) into a staged import; `None` when another pull committed
/// the layer while this one waited for the blob's lock.
pub(crate) fn fetch_layer(
    store: &Store,
    session: &Session,
    index: usize,
    blob: &LayerBlob,
    options: &PullOptions<'_>,
) -> Result<Option<Fetched>, RegistryError> {
    let layer_err = |source: StoreError| RegistryError::Layer {
        reference: session.name.clone(),
        digest: blob.digest.to_string(),
        source: Box::new(source),
    };
    let dir = store.tmp_dir().join("pull");
    fs::create_dir_all(&dir).at(&dir).map_err(layer_err)?;
    let path = dir.join(blob.digest.hex());
    let file = lock_partial(&path).map_err(layer_err)?;
    if store.has_layer(&blob.diff_id)? {
        return Ok(None);
    }
    let mut have = file.metadata().at(&path).map_err(layer_err)?.len();
    if have > blob.size {
        file.set_len(0).at(&path).map_err(layer_err)?;
        have = 0;
    }
    let stream = if have == blob.size {
        None
    } else {
        Some(
            request(session, blob, &mut have)
                .map_err(session.fail(format!("blob {} from byte {have}", blob.digest)))?,
        )
    };
    if have == 0 {
        file.set_len(0).at(&path).map_err(layer_err)?;
    }
    (&file)
        .seek(SeekFrom::Start(have))
        .at(&path)
        .map_err(layer_err)?;
    if let Some(p) = options.progress {
        p.layer_start(index, &blob.digest, blob.size, have);
    }
    let on_disk = Prefix {
        file: &file,
        pos: 0,
        end: have,
    };
    // `file` itself stays open, holding the lock, until the layer is staged.
    let mut network = match stream {
        Some(stream) => {
            let append = file.try_clone().at(&path).map_err(layer_err)?;
            Some(Download::start(session, stream, append, options.cancel))
        }
        None => None,
    };
    let progress = options.progress.map(|sink| LayerProgress { index, sink });
    let rest: Box<dyn Read + Send> = match network.as_mut() {
        Some(download) => Box::new(download),
        None => Box::new(io::empty()),
    };
    let result = store.stage_layer_blob(
        on_disk.chain(rest),
        blob,
        progress.as_ref().map(|p| p as &dyn ImportProgress),
    );
    match result {
        Ok(staged) => {
            if let Some(p) = options.progress {
                p.layer_done(index);
            }
            Ok(Some(Fetched {
                staged: Some(staged),
                partial: path,
                network: network.as_ref().map_or(0, |d| d.received),
                resumed: have,
            }))
        }
        Err(e) => {
            if options.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(RegistryError::Cancelled {
                    reference: session.name.clone(),
                });
            }
            // Keep what a broken connection left, to resume from; bytes that failed to verify
            // or decode are wrong and must not be resumed from.
            let transient = network.as_ref().is_some_and(|d| d.interrupted)
                && matches!(e, StoreError::Import(ImportError::Read { .. }));
            if !transient {
                let _ = fs::remove_file(&path);
            }
            Err(layer_err(e))
        }
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
fn lock_partial(path: &std::path::Path) -> Result<File, StoreError> {
    loop {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .at(path)?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive).at(path)?;
        let held = file.metadata().at(path)?;
        match fs::metadata(path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(file),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at(path),
        }
    }
}

/// Asks for blob `blob` from byte `have` on: a range request even from byte 0, so that the
/// response is the bytes as they come (the import verifies them; the client's own check
/// would hash the blob a second time). `have` drops to 0 if the registry ignores the range.
fn request(
    session: &Session,
    blob: &LayerBlob,
    have: &mut u64,
) -> Result<BoxStream<'static, io::Result<bytes::Bytes>>, OciDistributionError> {
    let digest = blob.digest.to_string();
    let response = session.block_on(session.client.pull_blob_stream_partial(
        &session.reference,
        digest.as_str(),
        *have,
        None,
    ))?;
    Ok(match response {
        BlobResponse::Partial(s) => s.stream,
        BlobResponse::Full(s) => {
            *have = 0;
            s.stream
        }
    })
}

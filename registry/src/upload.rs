//! Uploading one layer blob without holding it in memory: the store's export writes it on a
//! thread of its own into a bounded channel, and the registry client sends what arrives as the
//! body of one monolithic `PUT` (its length and digest go in the request, so they must be
//! known first). A blob whose compression the record says export reproduces streams straight
//! from the export; any other (or one that came out different after all) is exported into an
//! unnamed file under `tmp/` first, to learn its digest, and streamed from there. Memory stays
//! at [`DEPTH`] × [`CHUNK`] per upload in flight.

use std::io::{self, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use oci_client::errors::OciDistributionError;
use strata_layer_store::digest::Sha256;

use strata_layer_store::{ExportError, LayerRecord, Progress, Store, StoreError};
use tokio::sync::mpsc;

use crate::session::Session;
use crate::task;
use crate::{PushError, RegistryError};

/// Bytes per message to the uploading side.
const CHUNK: usize = 1 << 20;
/// Messages in flight.
const DEPTH: usize = 4;

type Item = Result<Bytes, OciDistributionError>;

/// Where an uploaded blob came from.
pub(crate) struct UploadedBlob {
    pub digest: Sha256,
    pub size: u64,
}

/// Uploads blob `blob` of layer `record`, as the export of `store` writes it.
pub(crate) async fn upload_layer(
    store: &Arc<Store>,
    session: &Session,
    record: LayerRecord,
    blob: Sha256,
    progress: Option<Arc<dyn Progress>>,
) -> Result<UploadedBlob, RegistryError> {
    let record = Arc::new(record);
    let failed = |source: ExportError| -> RegistryError {
        PushError::Export {
            reference: session.name.clone(),
            digest: record.diff_id.to_string(),
            source: Box::new(source),
        }
        .into()
    };
    if let Some(size) = store.layer_blob_size(&record, &blob) {
        // Digest and size known up front: stream straight from the export.
        let (store, record) = (store.clone(), record.clone());
        let (exported, sent) = upload(session, &blob, size, progress.clone(), move |out| {
            store.write_layer_blob(&record, &blob, out)
        })
        .await?;
        let exported = exported.map_err(failed)?;
        if exported == (blob, size) {
            sent?;
            return Ok(UploadedBlob { digest: blob, size });
        }
        // The registry refused bytes that did not hash to the digest asked for.
        tracing::debug!(digest = %blob, "export did not reproduce the blob; staging it");
    }
    let (exporter, exported) = (store.clone(), record.clone());
    let (mut file, digest, size) = task::blocking(move || {
        let tmp = exporter.scratch_dir("push")?;
        let mut file = tempfile::tempfile_in(&tmp).map_err(|e| io_at(&tmp, e))?;
        let (digest, size) = exporter.write_layer_blob(&exported, &blob, &mut file)?;
        file.rewind().map_err(|e| io_at(&tmp, e))?;
        Ok::<_, ExportError>((file, digest, size))
    })
    .await?
    .map_err(failed)?;
    let (copied, sent) = upload(session, &digest, size, progress, move |out| {
        io::copy(&mut file, out).map_err(|e| io_at(Path::new("<staged blob>"), e))?;
        Ok(())
    })
    .await?;
    copied.map_err(failed)?;
    sent?;
    Ok(UploadedBlob { digest, size })
}

/// An I/O error at `path`, as the store names them.
fn io_at(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs `produce` on a blocking thread, writing into the body of a `PUT` of blob `digest`
/// (`size` bytes); returns what each side ended with.
async fn upload<T: Send + 'static>(
    session: &Session,
    digest: &Sha256,
    size: u64,
    progress: Option<Arc<dyn Progress>>,
    produce: impl FnOnce(&mut ChannelWriter) -> Result<T, ExportError> + Send + 'static,
) -> Result<(Result<T, ExportError>, Result<(), RegistryError>), RegistryError> {
    let (tx, rx) = mpsc::channel::<Item>(DEPTH);
    let digest = digest.to_string();
    let producer = task::blocking(move || {
        let mut out = ChannelWriter {
            tx,
            buf: BytesMut::new(),
            progress,
        };
        let result = produce(&mut out).and_then(|t| {
            out.flush().map_err(|e| io_at(Path::new("<upload>"), e))?;
            Ok(t)
        });
        if let Err(e) = &result {
            // Fail the request rather than let it end short.
            let _ = out
                .tx
                .blocking_send(Err(OciDistributionError::GenericError(Some(e.to_string()))));
        }
        result
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let sending = async {
        session
            .client
            .push_blob_stream(&session.reference, body, &digest, Some(size))
            .await
            .map(drop)
            .map_err(session.fail(format!("upload {digest}")))
    };
    // Both at once: the producer fills the channel the request drains.
    let (produced, sent) = tokio::join!(producer, sending);
    Ok((produced?, sent))
}

/// Collects writes into [`CHUNK`]-sized messages for the uploading side.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Item>,
    buf: BytesMut,
    progress: Option<Arc<dyn Progress>>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        let len = chunk.len() as u64;
        self.tx
            .blocking_send(Ok(chunk))
            // The request ended (the registry failed it): it says why.
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        if let Some(progress) = &self.progress {
            progress.advance(0, len);
        }
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(CHUNK);
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

//! Uploading one layer blob without holding it in memory: the store's export writes it on a
//! thread of its own into a bounded channel, and the registry client sends what arrives as the
//! body of one monolithic `PUT` (its length and digest go in the request, so they must be
//! known first). A blob whose compression the record says export reproduces streams straight
//! from the export; any other (or one that came out different after all) is exported into an
//! unnamed file under `tmp/` first, to learn its digest, and streamed from there. Memory stays
//! at [`DEPTH`] × [`CHUNK`] per upload in flight.

use std::io::{self, Seek, Write};
use std::path::Path;
use std::thread;

use bytes::{Bytes, BytesMut};
use oci_client::errors::OciDistributionError;
use tokio::sync::mpsc;

use crate::digest::Sha256;
use crate::error::{IoContext, StoreError};
use crate::record::{Compression, LayerRecord};
use crate::registry::RegistryError;
use crate::registry::session::Session;
use crate::store::Store;

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

impl Store {
    /// Uploads the blob the export writes for `record`.
    pub(crate) fn upload_layer(
        &self,
        session: &Session,
        record: &LayerRecord,
    ) -> Result<UploadedBlob, RegistryError> {
        if reproducible(&record.compression) {
            let (digest, size) = (record.blob_digest, record.blob_size);
            let (exported, sent) = upload(session, &digest, size, |out| {
                self.write_layer_blob(record, out)
            });
            let exported = exported?;
            if exported == (digest, size) {
                sent?;
                return Ok(UploadedBlob { digest, size });
            }
            // The registry refused bytes that did not hash to the digest asked for.
            tracing::debug!(digest = %digest, "export did not reproduce the blob; staging it");
        }
        let tmp = self.tmp_dir();
        let mut file = tempfile::tempfile_in(&tmp).at(&tmp)?;
        let (digest, size) = self.write_layer_blob(record, &mut file)?;
        file.rewind().at(&tmp)?;
        let (copied, sent) = upload(session, &digest, size, |out| {
            io::copy(&mut file, out).at(&tmp)?;
            Ok(())
        });
        copied?;
        sent?;
        Ok(UploadedBlob { digest, size })
    }
}

/// Whether the export is expected to reproduce a blob of `compression` bit for bit.
fn reproducible(compression: &Compression) -> bool {
    match compression {
        Compression::None => true,
        Compression::Gzip { level, .. } => level.is_some(),
        Compression::Zstd { level, .. } => level.is_some(),
    }
}

/// Runs `produce` on a thread of its own, writing into the body of a `PUT` of blob `digest`
/// (`size` bytes); returns what each side ended with.
fn upload<T: Send>(
    session: &Session,
    digest: &Sha256,
    size: u64,
    produce: impl FnOnce(&mut ChannelWriter) -> Result<T, StoreError> + Send,
) -> (Result<T, StoreError>, Result<(), RegistryError>) {
    let (tx, rx) = mpsc::channel::<Item>(DEPTH);
    let digest = digest.to_string();
    thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut out = ChannelWriter {
                tx,
                buf: BytesMut::new(),
            };
            let result = produce(&mut out).and_then(|t| {
                out.flush().at(Path::new("<upload>"))?;
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
        let sent = session
            .block_on(session.client.push_blob_stream(
                &session.reference,
                body,
                &digest,
                Some(size),
            ))
            .map(drop)
            .map_err(session.fail(format!("upload {digest}")));
        let produced = producer.join().unwrap_or_else(|_| {
            Err(StoreError::Io {
                path: "<upload>".into(),
                source: io::Error::other("export thread panicked"),
            })
        });
        (produced, sent)
    })
}

/// Collects writes into [`CHUNK`]-sized messages for the uploading side.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Item>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(Ok(chunk))
            // The request ended (the registry failed it): it says why.
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
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

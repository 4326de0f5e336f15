//! The network half of a layer fetch. A task on the client's runtime reads the blob's response
//! ahead of the import, into a channel bounded by bytes ([`READ_AHEAD`]), and does nothing else,
//! so the download never waits on decompression or hashing, nor they on a request round trip.
//! The importing side reads from the channel and appends what it read to the partial-download
//! file in large vectored writes (no copy, no fsync: the file only has to be a prefix of the
//! blob), and whenever the network has nothing new for it, so that a process killed while the
//! download stalls leaves everything received so far on disk.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::task::JoinHandle;

use crate::task::Stop;

/// Bytes of a response read ahead of the import, per layer.
const READ_AHEAD: usize = 16 << 20;
/// Read-ahead is counted in units of this many bytes (semaphore permits).
const UNIT: usize = 1 << 10;
/// Bytes gathered before one write to the partial-download file.
const WRITE_BATCH: usize = 1 << 20;

type Chunk = io::Result<Bytes>;

/// The rest of a blob, read from the network and recorded in its partial-download file.
pub(crate) struct Download {
    rx: mpsc::Receiver<Chunk>,
    /// Read-ahead still allowed, in [`UNIT`]s.
    budget: Arc<Semaphore>,
    task: JoinHandle<()>,
    /// What is being handed to the reader.
    chunk: Bytes,
    file: File,
    /// Received but not yet written to `file`.
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Bytes received.
    pub received: u64,
    /// Whether the connection failed or the pull was cancelled (the bytes so far are good).
    pub interrupted: bool,
    stop: Stop,
}

impl Download {
    /// Starts reading `stream` on a task of the current runtime; what is read is appended to
    /// `file`. Read it from a blocking thread.
    pub fn start(stream: BoxStream<'static, Chunk>, file: File, stop: Stop) -> Download {
        // Enough messages for the byte budget to be the only limit.
        let (tx, rx) = mpsc::channel(READ_AHEAD / UNIT);
        let budget = Arc::new(Semaphore::new(READ_AHEAD / UNIT));
        let task = tokio::spawn(read_ahead(stream, tx, budget.clone()));
        Download {
            rx,
            budget,
            task,
            chunk: Bytes::new(),
            file,
            pending: Vec::new(),
            pending_len: 0,
            received: 0,
            interrupted: false,
            stop,
        }
    }

    /// The next chunk from the network, `None` at the end.
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if self.stop.is_set() {
            return Err(self.interrupt(io::Error::other("pull cancelled")));
        }
        let next = match self.rx.try_recv() {
            Ok(next) => Some(next),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                // The network is behind: a good moment to write.
                self.write_pending()?;
                self.rx.blocking_recv()
            }
        };
        match next {
            None => Ok(None),
            Some(Ok(chunk)) => {
                self.budget.add_permits(units(chunk.len()));
                self.received += chunk.len() as u64;
                self.pending_len += chunk.len();
                self.pending.push(chunk.clone());
                if self.pending_len >= WRITE_BATCH {
                    self.write_pending()?;
                }
                Ok(Some(chunk))
            }
            // Bytes that hash wrong are not worth keeping.
            Some(Err(e)) if is_digest_error(&e) => Err(e),
            Some(Err(e)) => Err(self.interrupt(e)),
        }
    }

    /// Records that the download stopped half way, keeping what arrived; returns `e`.
    fn interrupt(&mut self, e: io::Error) -> io::Error {
        self.interrupted = true;
        match self.write_pending() {
            Ok(()) => e,
            Err(write) => write,
        }
    }

    /// Appends what was received to the partial-download file.
    fn write_pending(&mut self) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self.pending.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        self.pending_len = 0;
        Ok(())
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.chunk.is_empty() {
            match self.next_chunk()? {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        // A failed import stops reading: stop downloading too.
        self.task.abort();
    }
}

/// Forwards `stream` into `tx` as long as the read-ahead budget allows.
async fn read_ahead(
    mut stream: BoxStream<'static, Chunk>,
    tx: mpsc::Sender<Chunk>,
    budget: Arc<Semaphore>,
) {
    while let Some(item) = stream.next().await {
        let needed = item.as_ref().map_or(0, |chunk| units(chunk.len()));
        let Ok(permits) = budget.acquire_many(needed as u32).await else {
            return;
        };
        permits.forget();
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Read-ahead units a chunk of `len` bytes takes (never more than the whole budget).
fn units(len: usize) -> usize {
    len.div_ceil(UNIT).min(READ_AHEAD / UNIT)
}

/// Whether the client's stream failed because the blob did not hash to its digest.
fn is_digest_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// However the response is chunked, the import reads the blob's bytes in order, and a
        /// connection that breaks leaves in the partial file exactly what arrived before it.
        #[test]
        fn the_partial_file_holds_what_arrived_before_a_break(
            sizes in prop::collection::vec(1usize..300_000, 1..24),
            break_at in proptest::option::of(0usize..24),
        ) {
            let total: usize = sizes.iter().sum();
            let blob: Vec<u8> = (0..total).map(|i| (i * 31 % 251) as u8).collect();
            let mut items = Vec::new();
            let mut sent = 0;
            // A break at `sizes.len()` comes after the last byte: still an error to report.
            let broken = break_at.is_some_and(|at| at <= sizes.len());
            for (i, &n) in sizes.iter().enumerate() {
                if break_at == Some(i) {
                    break;
                }
                items.push(Ok(Bytes::copy_from_slice(&blob[sent..sent + n])));
                sent += n;
            }
            if broken {
                items.push(Err(io::Error::other("connection reset")));
            }
            // A worker thread runs the read-ahead task while this thread reads.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("partial");
            let file = File::create(&path).unwrap();
            let stream = Box::pin(futures_util::stream::iter(items));
            let mut download = runtime.block_on(async { Download::start(stream, file, Stop::default()) });
            let mut read = Vec::new();
            let result = download.read_to_end(&mut read);
            let on_disk = std::fs::read(&path).unwrap();
            prop_assert_eq!(&read[..], &blob[..sent]);
            prop_assert_eq!(download.received, sent as u64);
            prop_assert_eq!(result.is_err(), broken);
            prop_assert_eq!(download.interrupted, broken);
            if broken {
                prop_assert_eq!(&on_disk[..], &blob[..sent]);
            } else {
                // At the end the file only has to be a prefix: the import has it all.
                prop_assert!(blob.starts_with(&on_disk));
            }
        }
    }
}

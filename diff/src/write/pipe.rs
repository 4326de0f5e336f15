//! The tar stream cut into fixed chunks, handed to its consumer (sha256, then compression and
//! the output) either on the calling thread or, overlapped, from a helper thread that produces
//! the stream (reading the source files, the kernel's copy out of the page cache) while the
//! calling thread consumes it. The consumer sees the very same writes either way, so a
//! compressor emits the same bytes whatever the thread setting.
//!
//! The helper is a scoped `std` thread rather than a rayon job because it blocks on a bounded
//! channel, which would stall a rayon worker.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};

use super::WriteError;

/// Bytes per chunk handed over: large enough to make the hand-over cost nothing, small enough
/// that a few in flight stay in the L2/L3 caches.
const CHUNK: usize = 128 * 1024;
/// Chunks queued between the two threads.
const IN_FLIGHT: usize = 4;

/// The producer's end: fills a chunk (written to, or read into straight from a file) and hands
/// it on when full.
pub(crate) struct ChunkWriter<'a> {
    /// Always `CHUNK` bytes long; `filled` of them are data.
    chunk: Vec<u8>,
    filled: usize,
    consumer: Consumer<'a>,
}

enum Consumer<'a> {
    /// On the calling thread.
    Direct(&'a mut dyn Write),
    /// On the other end of a channel, which hands used chunks back for reuse.
    Thread {
        full: SyncSender<(Vec<u8>, usize)>,
        empty: Receiver<Vec<u8>>,
    },
}

impl<'a> ChunkWriter<'a> {
    fn new(consumer: Consumer<'a>) -> Self {
        ChunkWriter {
            chunk: vec![0; CHUNK],
            filled: 0,
            consumer,
        }
    }

    /// The free part of the current chunk (handing a full one on first), to read data into;
    /// [`advance`](Self::advance) then counts what was put there.
    pub(crate) fn spare(&mut self) -> io::Result<&mut [u8]> {
        if self.filled == CHUNK {
            self.send()?;
        }
        Ok(&mut self.chunk[self.filled..])
    }

    /// Counts `n` bytes put into [`spare`](Self::spare) as data.
    pub(crate) fn advance(&mut self, n: usize) {
        self.filled += n;
        debug_assert!(self.filled <= CHUNK);
    }

    fn send(&mut self) -> io::Result<()> {
        let filled = std::mem::take(&mut self.filled);
        match &mut self.consumer {
            Consumer::Direct(out) => out.write_all(&self.chunk[..filled]),
            Consumer::Thread { full, empty } => {
                let next = empty.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
                // The consumer hung up: it failed writing and reports that error itself.
                full.send((std::mem::replace(&mut self.chunk, next), filled))
                    .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
            }
        }
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let spare = self.spare()?;
        let n = data.len().min(spare.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.advance(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        self.send()
    }
}

/// Runs `produce` on the calling thread, writing its chunks to `out` as they fill.
pub(crate) fn sequential<W: Write>(
    out: &mut W,
    produce: impl FnOnce(&mut ChunkWriter<'_>) -> Result<(), WriteError>,
) -> Result<(), WriteError> {
    let mut chunks = ChunkWriter::new(Consumer::Direct(out));
    produce(&mut chunks)?;
    chunks.flush().map_err(WriteError::Output)
}

/// Runs `produce` on a helper thread and writes everything it produces, in order, to `out` on
/// the calling thread. An error writing `out` wins over the producer's error (which is then
/// only the consequence of the consumer hanging up).
pub(crate) fn overlapped<W: Write>(
    out: &mut W,
    produce: impl FnOnce(&mut ChunkWriter<'_>) -> Result<(), WriteError> + Send,
) -> Result<(), WriteError> {
    let (full_tx, full_rx) = sync_channel(IN_FLIGHT);
    let (empty_tx, empty_rx) = channel();
    std::thread::scope(|scope| {
        let producer = std::thread::Builder::new()
            .name("strata-layer-read".into())
            .spawn_scoped(scope, move || {
                let mut chunks = ChunkWriter::new(Consumer::Thread {
                    full: full_tx,
                    empty: empty_rx,
                });
                produce(&mut chunks)?;
                chunks.flush().map_err(WriteError::Output)
            })
            .map_err(WriteError::Thread)?;
        let mut consumed = Ok(());
        // Ends when the producer is done and drops its sender.
        for (chunk, filled) in &full_rx {
            if let Err(e) = out.write_all(&chunk[..filled]) {
                consumed = Err(e);
                break;
            }
            // The producer may already be gone; the chunk is then simply freed.
            let _ = empty_tx.send(chunk);
        }
        // Unblocks a producer waiting to send after a failed write.
        drop(full_rx);
        let produced = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        consumed.map_err(WriteError::Output)?;
        produced
    })
}

//! Decompression on its own thread: the blob is read, hashed (digest) and decompressed there,
//! and the tar flows to the importing thread in 1 MiB chunks, so decompressing one layer and
//! hashing and storing its files overlap. The compression settings are probed there too, while
//! the importing thread still works through the last chunks.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use crate::compress::{self, Format, PROBE_COMPRESSED_LEN, PROBE_LEN, Probe};
use crate::digest::{HashingReader, Sha256};
use crate::import::Progress;
use crate::record::Compression;

/// Chunks in flight between the two threads.
pub(crate) const DEPTH: usize = 8;
const CHUNK: usize = 1 << 20;

/// What the decompressing thread learned about the blob.
pub(crate) struct BlobSummary {
    /// Compression detected by magic, with the settings that reproduce it where found.
    pub compression: Compression,
    /// sha256 of the blob.
    pub digest: Sha256,
    /// Length of the blob.
    pub size: u64,
}

/// The importing thread stopped reading: it failed, and its own error says why.
#[derive(Debug)]
struct ReaderStopped;

impl std::fmt::Display for ReaderStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the tar reader stopped")
    }
}

impl std::error::Error for ReaderStopped {}

/// Whether `err` only says that the importing thread stopped reading.
pub(crate) fn reader_stopped(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<ReaderStopped>())
}

/// Remembers the first `limit` bytes read through it, and reports progress.
struct Tee<'p, R> {
    inner: R,
    kept: Vec<u8>,
    progress: Option<&'p dyn Progress>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let room = PROBE_COMPRESSED_LEN - self.kept.len();
        self.kept.extend_from_slice(&buf[..n.min(room)]);
        if let Some(p) = self.progress {
            p.advance(0, n as u64);
        }
        Ok(n)
    }
}

/// Reads, hashes and decompresses `reader`, sending the tar down `tx`; a read or decompression
/// error is sent too (so the reader sees it) and returned.
pub(crate) fn decompress(
    reader: impl Read,
    progress: Option<&dyn Progress>,
    tx: SyncSender<io::Result<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
) -> io::Result<BlobSummary> {
    let mut blob = HashingReader::new(Tee {
        inner: reader,
        kept: Vec::new(),
        progress,
    });
    let mut raw_prefix = Vec::with_capacity(PROBE_LEN);
    let mut raw_len = 0u64;
    let result = (|| -> io::Result<Format> {
        let mut buffered = BufReader::with_capacity(CHUNK, &mut blob);
        let format = Format::sniff(buffered.fill_buf()?);
        let mut decoder = format.decoder(&mut buffered)?;
        loop {
            // Buffers come back from the reader once read: no allocation or zeroing per chunk.
            let mut chunk = recycled.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            chunk.resize(CHUNK, 0);
            let n = read_full(&mut decoder, &mut chunk)?;
            if n == 0 {
                break;
            }
            chunk.truncate(n);
            let room = PROBE_LEN - raw_prefix.len();
            raw_prefix.extend_from_slice(&chunk[..n.min(room)]);
            raw_len += n as u64;
            if tx.send(Ok(chunk)).is_err() {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, ReaderStopped));
            }
        }
        drop(decoder);
        // Whatever follows the compressed stream is part of the blob and its digest.
        io::copy(&mut buffered, &mut io::sink())?;
        Ok(format)
    })();
    match result {
        Ok(format) => {
            let compressed = std::mem::take(&mut blob.get_mut().kept);
            let probe = Probe {
                compressed: &compressed,
                raw: &raw_prefix,
                raw_len,
            };
            let compression = compress::identify(format, &probe);
            let (digest, size) = blob.finish();
            Ok(BlobSummary {
                compression,
                digest: Sha256(digest),
                size,
            })
        }
        Err(err) => {
            let _ = tx.send(Err(io::Error::new(err.kind(), err.to_string())));
            Err(err)
        }
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The importing thread's end: a reader over the chunks.
pub(crate) struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    /// Reads chunks from `rx`, handing each back through `recycle` once read.
    pub(crate) fn new(rx: Receiver<io::Result<Vec<u8>>>, recycle: Sender<Vec<u8>>) -> Self {
        ChunkReader {
            rx,
            recycle,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.chunk, chunk);
                    // The producer may be gone; then the buffer is simply dropped.
                    let _ = self.recycle.send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The sender finished cleanly: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

//! Progress of a long operation, for a caller that shows it (progress bars, step lines): one
//! shape for import, export, pull, push and build.

use std::io::{self, Write};

/// Receives the progress of an operation made of parts (an image's layers, bottom first; a
/// build's steps): its total bytes first (0 when unknown), then each part as it starts,
/// advances and ends, possibly from several threads. Every method does nothing by default: a
/// receiver implements what it shows. An import and a pull count the compressed bytes they
/// read, an export the uncompressed tar bytes it writes, a push the blob bytes it sends.
pub trait Progress: Send + Sync {
    /// The operation will process `total` bytes.
    fn start(&self, _total: u64) {}
    /// A part starts.
    fn part_started(&self, _part: &Part<'_>) {}
    /// `bytes` more of part `index` were processed.
    fn advance(&self, _index: usize, _bytes: u64) {}
    /// Part `index` ended.
    fn part_finished(&self, _index: usize, _end: PartEnd) {}
}

/// A part of an operation, as it starts.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Part<'a> {
    /// Its position, from 0.
    pub index: usize,
    /// How many parts the operation has (0 when unknown).
    pub of: usize,
    /// What it is: a layer's blob digest, a build step's instruction.
    pub name: &'a str,
    /// Its bytes (0 when unknown).
    pub size: u64,
    /// Of those, how many are done already (a download resumed from disk).
    pub done: u64,
}

impl<'a> Part<'a> {
    /// Part `index` of `of`, named `name`, of `size` bytes, none done yet.
    pub fn new(index: usize, of: usize, name: &'a str, size: u64) -> Self {
        Part {
            index,
            of,
            name,
            size,
            done: 0,
        }
    }

    /// With `done` of its bytes done already.
    pub fn with_done(mut self, done: u64) -> Self {
        self.done = done;
        self
    }
}

/// How a part ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartEnd {
    /// Its work was done.
    Done,
    /// Nothing was needed: its result was there already (a layer the store or the registry
    /// had, a build step from the cache).
    Reused,
}

/// `inner`, with every advance counted to part `index`: for code that reports the bytes of one
/// part and does not know which it is.
pub(crate) struct PartOf<'p> {
    pub(crate) index: usize,
    pub(crate) inner: &'p dyn Progress,
}

impl Progress for PartOf<'_> {
    fn advance(&self, _index: usize, bytes: u64) {
        self.inner.advance(self.index, bytes);
    }
}

/// A writer that reports what passes through it.
pub(crate) struct Reporting<'p, W> {
    pub(crate) inner: W,
    pub(crate) progress: Option<&'p dyn Progress>,
}

impl<W: Write> Write for Reporting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(progress) = self.progress {
            progress.advance(0, n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

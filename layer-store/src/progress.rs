//! Progress of a long operation, in bytes, for a caller that shows it (a progress bar).

use std::io::{self, Write};

/// Receives the progress of an operation: the total first (0 when unknown), then increments,
/// possibly from several threads. An import counts the compressed bytes it reads; an export
/// the uncompressed tar bytes it writes.
pub trait Progress: Sync {
    /// How many bytes the operation will process, when known.
    fn start(&self, total: u64);
    /// `bytes` more were processed.
    fn advance(&self, bytes: u64);
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
            progress.advance(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

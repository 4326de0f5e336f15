//! Streaming sha256, the OCI digest: a reader and a writer that hash and count every byte that
//! passes through them. The layer writer and the layer store's import and export all use these
//! two.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// A writer that hashes (sha256) and counts every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The sha256 of everything written, its length, and the inner writer.
    pub fn finish(self) -> ([u8; 32], u64, W) {
        (self.hasher.finalize().into(), self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes (sha256) and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.len
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The sha256 and length of everything read so far.
    pub fn finish(self) -> ([u8; 32], u64) {
        (self.hasher.finalize().into(), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::oci_digest;

    #[test]
    fn reader_and_writer_agree_with_a_one_shot_hash() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut writer = HashingWriter::new(Vec::new());
        for chunk in data.chunks(777) {
            writer.write_all(chunk).unwrap();
        }
        let (written, len, inner) = writer.finish();
        assert_eq!(
            (len, inner.as_slice()),
            (data.len() as u64, data.as_slice())
        );
        let mut reader = HashingReader::new(&data[..]);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(reader.count(), data.len() as u64);
        let (read, _) = reader.finish();
        let once: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!((written, read), (once, once));
        assert_eq!(
            oci_digest(&Sha256::digest(b"").into()),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

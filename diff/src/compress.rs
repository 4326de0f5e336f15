//! The one layer-blob compressor: what [`write_layer`](crate::write_layer) compresses with, and
//! what the layer store rebuilds blobs with on export, so a blob Strata wrote comes back byte
//! for byte.
//!
//! zlib-rs's deflate output depends on how its input is split into writes, so gzip input is
//! always fed in `GZIP_CHUNK`-byte writes, whatever the caller's write sizes.

use std::io::{self, Write};

use flate2::Crc;
use flate2::write::DeflateEncoder;

/// The gzip member header Strata writes: no name, mtime 0, OS unknown (what Go's
/// `compress/gzip` writes too).
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// The zlib level of the gzip blobs Strata writes.
pub const GZIP_LEVEL: u32 = 6;
/// The zstd level of the zstd blobs Strata writes (no checksum, no content size).
pub const ZSTD_LEVEL: i32 = 3;
/// The size of every write into the deflate encoder but the last.
const GZIP_CHUNK: usize = 64 << 10;

/// A writer that compresses a layer blob into `W`.
pub enum Compressor<W: Write> {
    /// No compression.
    Plain(W),
    /// A gzip member.
    Gzip {
        /// The deflate stream, after the member header.
        deflate: DeflateEncoder<W>,
        /// The CRC of the uncompressed bytes, for the trailer.
        crc: Crc,
        /// Input not yet fed to `deflate` (less than one chunk).
        pending: Vec<u8>,
    },
    /// A zstd frame.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// A gzip member with `header` (written as given) at zlib `level`.
    pub fn gzip(mut inner: W, header: &[u8], level: u32) -> io::Result<Self> {
        inner.write_all(header)?;
        Ok(Compressor::Gzip {
            deflate: DeflateEncoder::new(inner, flate2::Compression::new(level)),
            crc: Crc::new(),
            pending: Vec::with_capacity(GZIP_CHUNK),
        })
    }

    /// A zstd frame at `level`; with `content_size`, the frame header records `raw_len`.
    pub fn zstd(
        inner: W,
        level: i32,
        checksum: bool,
        content_size: Option<u64>,
    ) -> io::Result<Self> {
        let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
        enc.include_checksum(checksum)?;
        if let Some(len) = content_size {
            enc.set_pledged_src_size(Some(len))?;
        }
        enc.include_contentsize(content_size.is_some())?;
        Ok(Compressor::Zstd(enc))
    }

    /// The compressed bytes emitted so far.
    pub fn emitted(&self) -> &W {
        match self {
            Compressor::Plain(w) => w,
            Compressor::Gzip { deflate, .. } => deflate.get_ref(),
            Compressor::Zstd(enc) => enc.get_ref(),
        }
    }

    /// Ends the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(w) => Ok(w),
            Compressor::Gzip {
                mut deflate,
                crc,
                pending,
            } => {
                deflate.write_all(&pending)?;
                let mut w = deflate.finish()?;
                w.write_all(&crc.sum().to_le_bytes())?;
                w.write_all(&crc.amount().to_le_bytes())?;
                Ok(w)
            }
            Compressor::Zstd(enc) => enc.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip {
                deflate,
                crc,
                pending,
            } => {
                crc.update(buf);
                let mut rest = buf;
                while !rest.is_empty() {
                    let take = (GZIP_CHUNK - pending.len()).min(rest.len());
                    pending.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if pending.len() == GZIP_CHUNK {
                        deflate.write_all(pending)?;
                        pending.clear();
                    }
                }
                Ok(buf.len())
            }
            Compressor::Zstd(enc) => enc.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing would end a deflate or zstd block early and change the output.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text-like data: compressible, and long enough for many deflate blocks.
    fn text(len: usize) -> Vec<u8> {
        let mut state = 1u32;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefghij klmnop\n"[(state >> 16) as usize % 18]
            })
            .collect()
    }

    fn compress(mut c: Compressor<Vec<u8>>, data: &[u8], write_size: usize) -> Vec<u8> {
        for chunk in data.chunks(write_size) {
            c.write_all(chunk).unwrap();
        }
        c.finish().unwrap()
    }

    /// The digests of what Strata writes are pinned: a compression library update that changes
    /// its output would change the digest of every layer Strata ever wrote, which export could
    /// then no longer reproduce. This test fails first.
    #[test]
    fn the_bytes_strata_writes_do_not_change() {
        let data = text(1 << 20);
        let gzip = Compressor::gzip(Vec::new(), &GZIP_HEADER, GZIP_LEVEL).unwrap();
        let zstd = Compressor::zstd(Vec::new(), ZSTD_LEVEL, false, None).unwrap();
        let digests: Vec<String> = [gzip, zstd]
            .into_iter()
            .map(|c| {
                let blob = compress(c, &data, 10_000);
                let mut hashing = crate::hash::HashingWriter::new(std::io::sink());
                hashing.write_all(&blob).unwrap();
                crate::hash::oci_digest(&hashing.finish().0)
            })
            .collect();
        assert_eq!(
            digests,
            [
                "sha256:327133f60432b60c318244daa2d3981e5848e8e09ce3a1ae08f227d8a0fb0cfb"
                    .to_owned(),
                "sha256:4ddb14bf2d583da56aa5d0a8c3208a0edd4407aaacb3b759643214b8c94142a3"
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn write_sizes_do_not_change_the_bytes() {
        let data = text(600_000);
        for size in [1, 1000, 77_777, 1 << 20] {
            let gzip = || Compressor::gzip(Vec::new(), &GZIP_HEADER, 9).unwrap();
            assert!(compress(gzip(), &data, size) == compress(gzip(), &data, 4096));
            let zstd = || Compressor::zstd(Vec::new(), 5, true, Some(data.len() as u64)).unwrap();
            assert!(compress(zstd(), &data, size) == compress(zstd(), &data, 4096));
        }
    }
}

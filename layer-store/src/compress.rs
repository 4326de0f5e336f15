//! Layer blob compression: detecting it on import, finding settings that reproduce it, and
//! compressing again on export.
//!
//! Reproduction is found cheaply: the first [`PROBE_LEN`] uncompressed bytes are compressed at
//! candidate settings and the output compared with the start of the original stream. Export
//! verifies the whole digest anyway and falls back to a fresh compression when it differs.

use std::io::{self, Write};

use flate2::Crc;
use flate2::write::DeflateEncoder;

use crate::record::Compression;

/// How many uncompressed bytes the reproduction probe compresses.
pub(crate) const PROBE_LEN: usize = 256 << 10;
/// How many compressed bytes are kept for the probe to compare against.
pub(crate) const PROBE_COMPRESSED_LEN: usize = 256 << 10;

/// The format of a blob, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Plain,
    Gzip,
    Zstd,
}

/// The format of a blob starting with `prefix`.
pub(crate) fn detect(prefix: &[u8]) -> Format {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else {
        Format::Plain
    }
}

/// The start of a blob's two streams, for the reproduction probe.
pub(crate) struct Probe<'a> {
    /// The first compressed bytes.
    pub compressed: &'a [u8],
    /// The first uncompressed bytes.
    pub raw: &'a [u8],
    /// Whether `raw` is the whole uncompressed stream.
    pub complete: bool,
}

/// Finds the compression settings of a blob of `format`.
pub(crate) fn identify(format: Format, probe: &Probe<'_>) -> Compression {
    match format {
        Format::Plain => Compression::None,
        Format::Gzip => {
            let header_len = gzip_header_len(probe.compressed).unwrap_or(0);
            let header = probe.compressed[..header_len].to_vec();
            let deflate = &probe.compressed[header_len..];
            let level = (header_len > 0)
                .then(|| {
                    [6u32, 9, 1, 2, 3, 4, 5, 7, 8].into_iter().find(|&level| {
                        matches_prefix(&deflate_raw(probe.raw, level), deflate, probe.complete)
                    })
                })
                .flatten();
            Compression::Gzip { header, level }
        }
        Format::Zstd => {
            let level = [3i32, 1, 2, 4, 5, 6, 7, 8, 9, 19]
                .into_iter()
                .find(|&level| {
                    zstd_frame(probe.raw, level)
                        .is_ok_and(|out| matches_prefix(&out, probe.compressed, probe.complete))
                });
            Compression::Zstd { level }
        }
    }
}

/// Whether `ours` (compressed from a prefix of the input) agrees with `theirs` (the start of the
/// original stream). Only the first half of `ours` is final when the input was cut short.
fn matches_prefix(ours: &[u8], theirs: &[u8], complete: bool) -> bool {
    let n = if complete { ours.len() } else { ours.len() / 2 };
    n > 0 && theirs.len() >= n && ours[..n] == theirs[..n]
}

fn deflate_raw(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

fn zstd_frame(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), level)?;
    enc.write_all(data)?;
    enc.finish()
}

/// Length of the gzip member header at the start of `data` (RFC 1952), if it is all there.
fn gzip_header_len(data: &[u8]) -> Option<usize> {
    let flags = *data.get(3)?;
    let mut at = 10usize;
    if data.len() < at {
        return None;
    }
    if flags & 0x04 != 0 {
        let xlen = usize::from(u16::from_le_bytes([*data.get(at)?, *data.get(at + 1)?]));
        at += 2 + xlen;
    }
    for bit in [0x08, 0x10] {
        if flags & bit != 0 {
            at += data.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & 0x02 != 0 {
        at += 2;
    }
    (at <= data.len()).then_some(at)
}

/// A writer that compresses as a layer blob of `compression` into `inner`.
pub(crate) enum Compressor<W: Write> {
    Plain(W),
    Gzip {
        deflate: DeflateEncoder<W>,
        crc: Crc,
    },
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// The gzip header written when the original one is not reproducible: no name, mtime 0, OS
/// unknown (what Go's `compress/gzip` writes).
const PLAIN_GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl<W: Write> Compressor<W> {
    /// Starts a blob of `compression`; settings that were not reproducible get defaults
    /// (gzip level 6, zstd level 3).
    pub(crate) fn new(compression: &Compression, mut inner: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compressor::Plain(inner),
            Compression::Gzip { header, level } => {
                let header: &[u8] = if level.is_some() {
                    header
                } else {
                    &PLAIN_GZIP_HEADER
                };
                inner.write_all(header)?;
                let level = flate2::Compression::new(level.unwrap_or(6));
                Compressor::Gzip {
                    deflate: DeflateEncoder::new(inner, level),
                    crc: Crc::new(),
                }
            }
            Compression::Zstd { level } => Compressor::Zstd(zstd::stream::write::Encoder::new(
                inner,
                level.unwrap_or(3),
            )?),
        })
    }

    /// Ends the stream and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(w) => Ok(w),
            Compressor::Gzip { deflate, crc } => {
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
            Compressor::Gzip { deflate, crc } => {
                let n = deflate.write(buf)?;
                crc.update(&buf[..n]);
                Ok(n)
            }
            Compressor::Zstd(enc) => enc.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip { deflate, .. } => deflate.flush(),
            Compressor::Zstd(enc) => enc.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(compression: &Compression, data: &[u8]) -> Vec<u8> {
        let mut c = Compressor::new(compression, Vec::new()).unwrap();
        c.write_all(data).unwrap();
        c.finish().unwrap()
    }

    #[test]
    fn identifies_our_own_gzip_and_zstd() {
        // Text-like data: compressible, yet many deflate blocks fit in the probe.
        let mut state = 1u32;
        let data: Vec<u8> = (0..600_000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefghij klmnop\n"[(state >> 16) as usize % 18]
            })
            .collect();
        for compression in [
            Compression::Gzip {
                header: PLAIN_GZIP_HEADER.to_vec(),
                level: Some(9),
            },
            Compression::Zstd { level: Some(5) },
        ] {
            let blob = compress(&compression, &data);
            let format = detect(&blob);
            let probe = Probe {
                compressed: &blob[..blob.len().min(PROBE_COMPRESSED_LEN)],
                raw: &data[..PROBE_LEN],
                complete: false,
            };
            let found = identify(format, &probe);
            assert_eq!(found, compression);
            assert!(
                compress(&found, &data) == blob,
                "{compression:?} not reproduced"
            );
        }
    }

    #[test]
    fn gzip_header_with_name_is_measured() {
        let mut header = vec![0x1f, 0x8b, 8, 0x08, 1, 2, 3, 4, 0, 3];
        header.extend_from_slice(b"layer.tar\0");
        header.push(0xaa);
        assert_eq!(gzip_header_len(&header), Some(header.len() - 1));
        assert_eq!(gzip_header_len(&header[..12]), None);
    }
}

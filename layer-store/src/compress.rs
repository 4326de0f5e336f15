//! Layer blob compression: finding settings that reproduce a blob on import (its format is
//! sniffed by [`strata_codec::compression`]), and compressing again on export.
//!
//! Reproduction is found cheaply: the first [`PROBE_LEN`] uncompressed bytes are compressed at
//! candidate settings and the bytes the compressor has emitted so far (which are final) are
//! compared with the start of the original stream. Export verifies the whole digest anyway and
//! falls back to a fresh compression when it differs.
//!
//! The compressor itself is [`strata_diff::compress`]'s, the one that wrote every blob Strata
//! made, so those are reproduced exactly.

use std::io::{self, Write};

use strata_diff::compress::{Compressor, GZIP_HEADER, GZIP_LEVEL, ZSTD_LEVEL};

pub(crate) use strata_codec::compression::Format;

use crate::record::Compression;

/// How many uncompressed bytes the reproduction probe compresses.
pub(crate) const PROBE_LEN: usize = 256 << 10;
/// How many compressed bytes are kept for the probe to compare against.
pub(crate) const PROBE_COMPRESSED_LEN: usize = 256 << 10;
/// The size of the writes the probe feeds the compressor, so it can give up early.
const PROBE_CHUNK: usize = 64 << 10;
/// gzip levels tried, most common first.
const GZIP_LEVELS: [u32; 9] = [6, 9, 1, 2, 3, 4, 5, 7, 8];
/// zstd levels tried, most common first.
const ZSTD_LEVELS: [i32; 10] = [3, 1, 2, 4, 5, 6, 7, 8, 9, 19];

/// The start of a blob's two streams, for the reproduction probe.
pub(crate) struct Probe<'a> {
    /// The first compressed bytes.
    pub compressed: &'a [u8],
    /// The first uncompressed bytes.
    pub raw: &'a [u8],
    /// Length of the whole uncompressed stream.
    pub raw_len: u64,
}

impl Probe<'_> {
    /// Whether compressing the probe with `candidate` agrees with the original stream.
    fn agrees(&self, candidate: &Compression) -> bool {
        let Ok(mut c) = compressor(candidate, self.raw_len, Vec::new()) else {
            return false;
        };
        // Fed a chunk at a time, a wrong candidate is given up at its first emitted block
        // rather than after compressing the whole probe.
        for chunk in self.raw.chunks(PROBE_CHUNK) {
            if c.write_all(chunk).is_err() {
                return false;
            }
            let ours = c.emitted();
            let settled = ours.len().saturating_sub(1);
            if !self.compressed.starts_with(&ours[..settled]) {
                return false;
            }
        }
        if self.raw.len() as u64 == self.raw_len {
            return c
                .finish()
                .is_ok_and(|ours| self.compressed.starts_with(&ours) && !ours.is_empty());
        }
        // Emitted bytes are final, but for the last one, which may still gain bits.
        let ours = c.emitted();
        let n = ours.len().saturating_sub(1);
        n > 16 && self.compressed.len() >= n && ours[..n] == self.compressed[..n]
    }
}

/// Finds the compression settings of a blob of `format`.
pub(crate) fn identify(format: Format, probe: &Probe<'_>) -> Compression {
    match format {
        Format::Plain => Compression::None,
        Format::Gzip => {
            let header = gzip_header_len(probe.compressed)
                .map(|len| probe.compressed[..len].to_vec())
                .unwrap_or_default();
            let level = (!header.is_empty())
                .then(|| {
                    GZIP_LEVELS.into_iter().find(|&level| {
                        probe.agrees(&Compression::Gzip {
                            header: header.clone(),
                            level: Some(level),
                        })
                    })
                })
                .flatten();
            Compression::Gzip { header, level }
        }
        Format::Zstd => {
            // Frame header descriptor: bit 2 checksum, bits 6-7 content size field.
            let descriptor = probe.compressed.get(4).copied().unwrap_or(0);
            let checksum = descriptor & 0x04 != 0;
            let content_size = descriptor & 0xc0 != 0 || descriptor & 0x20 != 0;
            let level = ZSTD_LEVELS.into_iter().find(|&level| {
                probe.agrees(&Compression::Zstd {
                    level: Some(level),
                    checksum,
                    content_size,
                })
            });
            Compression::Zstd {
                level,
                checksum,
                content_size,
            }
        }
    }
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

/// Whether the import found settings expected to rebuild a blob of `compression` (a plain tar
/// needs none). Export still hashes what it writes: a probe's match is not proof.
pub(crate) fn settings_found(compression: &Compression) -> bool {
    match compression {
        Compression::None => true,
        Compression::Gzip { level, .. } => level.is_some(),
        Compression::Zstd { level, .. } => level.is_some(),
    }
}

/// A compressor for a blob of `compression` holding `raw_len` uncompressed bytes. Settings
/// that were not reproducible get what Strata writes itself (see [`strata_diff::compress`]).
pub(crate) fn compressor<W: Write>(
    compression: &Compression,
    raw_len: u64,
    inner: W,
) -> io::Result<Compressor<W>> {
    match compression {
        Compression::None => Ok(Compressor::Plain(inner)),
        Compression::Gzip {
            header,
            level: Some(level),
        } => Compressor::gzip(inner, header, *level),
        Compression::Gzip { level: None, .. } => Compressor::gzip(inner, &GZIP_HEADER, GZIP_LEVEL),
        Compression::Zstd {
            level: Some(level),
            checksum,
            content_size,
        } => Compressor::zstd(inner, *level, *checksum, content_size.then_some(raw_len)),
        Compression::Zstd { level: None, .. } => Compressor::zstd(inner, ZSTD_LEVEL, false, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(compression: &Compression, data: &[u8], write_size: usize) -> Vec<u8> {
        let mut c = compressor(compression, data.len() as u64, Vec::new()).unwrap();
        for chunk in data.chunks(write_size) {
            c.write_all(chunk).unwrap();
        }
        c.finish().unwrap()
    }

    #[test]
    fn identifies_our_own_gzip_and_zstd_however_the_input_was_split() {
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
                header: GZIP_HEADER.to_vec(),
                level: Some(9),
            },
            Compression::Zstd {
                level: Some(5),
                checksum: true,
                content_size: true,
            },
            Compression::Zstd {
                level: Some(3),
                checksum: false,
                content_size: false,
            },
        ] {
            let blob = compress(&compression, &data, 1000);
            assert!(
                compress(&compression, &data, 77_777) == blob,
                "write size matters"
            );
            let probe = Probe {
                compressed: &blob[..blob.len().min(PROBE_COMPRESSED_LEN)],
                raw: &data[..PROBE_LEN],
                raw_len: data.len() as u64,
            };
            assert_eq!(identify(Format::sniff(&blob), &probe), compression);
        }
    }

    #[test]
    fn foreign_gzip_is_not_claimed_reproducible() {
        let data = vec![b'x'; 100_000];
        // Stored blocks: a level no candidate has.
        let mut stored = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        stored.write_all(&data).unwrap();
        let blob = stored.finish().unwrap();
        let probe = Probe {
            compressed: &blob,
            raw: &data,
            raw_len: data.len() as u64,
        };
        let found = identify(Format::Gzip, &probe);
        assert!(
            matches!(found, Compression::Gzip { level: None, .. }),
            "{found:?}"
        );
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

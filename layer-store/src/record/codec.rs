//! The record frame: a fixed 72-byte header (magic, kind, version, feature flags, lengths, a
//! blake3 checksum) followed by zstd-compressed postcard. Layout in `docs/format.md`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// First 8 bytes of every record.
pub const MAGIC: [u8; 8] = *b"STRATA\0R";
/// Length of the frame header.
pub const HEADER_LEN: usize = 72;
/// The record format version this build writes.
pub const VERSION: u16 = 1;
/// Decoding refuses records claiming more than this many uncompressed bytes.
pub const MAX_RAW_LEN: u64 = 1 << 30;
/// zstd level of record payloads: records are written once and read often.
const ZSTD_LEVEL: i32 = 3;

/// What a record describes; each kind has its own payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A [`LayerRecord`](super::LayerRecord), the file `layers/<id>/manifest`.
    Layer = 1,
    /// An [`ImageRecord`](super::ImageRecord), a value of the `images` table.
    Image = 2,
    /// A [`LayerMeta`](super::LayerMeta), a value of the `layers` table.
    LayerMeta = 3,
}

/// Feature flags in the ext4 manner: unknown `compat` bits are ignored, unknown `ro_compat` bits
/// allow reading but not rewriting, unknown `incompat` bits refuse the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureFlags {
    /// Features an older reader may ignore.
    pub compat: u32,
    /// Features an older reader may read past but must not write.
    pub ro_compat: u32,
    /// Features an older reader cannot read.
    pub incompat: u32,
}

impl FeatureFlags {
    /// The `incompat` bits this build understands (none yet).
    pub const KNOWN_INCOMPAT: u32 = 0;
}

/// A record that cannot be decoded (or, rarely, encoded).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Shorter than its header says.
    #[error("record truncated: {len} bytes, header needs {needed}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the header calls for.
        needed: u64,
    },
    /// Does not start with the record magic.
    #[error("not a strata record (bad magic)")]
    BadMagic,
    /// Of another kind than asked for.
    #[error("record kind {found}, expected {expected:?}")]
    WrongKind {
        /// The kind byte found.
        found: u8,
        /// The kind asked for.
        expected: Kind,
    },
    /// Written by a newer format version.
    #[error("record version {found} is newer than {supported}, the newest this build reads")]
    UnsupportedVersion {
        /// Version found.
        found: u16,
        /// Newest version understood.
        supported: u16,
    },
    /// Uses incompatible features this build does not know.
    #[error("record uses unknown incompatible features {bits:#x}")]
    UnknownFeatures {
        /// The unknown bits.
        bits: u32,
    },
    /// Claims an absurd uncompressed size.
    #[error("record claims {len} uncompressed bytes, more than the limit {limit}")]
    TooLarge {
        /// Size claimed.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The payload's checksum does not match: the record is corrupt.
    #[error("record checksum mismatch")]
    Checksum,
    /// The payload does not decompress.
    #[error("record payload does not decompress")]
    Compression(#[source] std::io::Error),
    /// The payload does not decode as the record type.
    #[error("record payload does not decode")]
    Payload(#[source] postcard::Error),
}

/// Encodes `value` as a record of `kind` at the current version, with no feature flags.
///
/// The payload streams through zstd, never whole in memory uncompressed. A value whose
/// payload would be longer than [`MAX_RAW_LEN`] is refused here, since no reader would take it.
pub fn encode<T: Serialize>(kind: Kind, value: &T) -> Result<Vec<u8>, RecordError> {
    let mut out = vec![0u8; HEADER_LEN];
    let encoder =
        zstd::stream::Encoder::new(&mut out, ZSTD_LEVEL).map_err(RecordError::Compression)?;
    let mut raw = Counted {
        inner: encoder,
        count: 0,
    };
    raw = postcard::to_io(value, raw).map_err(RecordError::Payload)?;
    let raw_len = raw.count;
    raw.inner.finish().map_err(RecordError::Compression)?;
    if raw_len > MAX_RAW_LEN {
        return Err(RecordError::TooLarge {
            len: raw_len,
            limit: MAX_RAW_LEN,
        });
    }
    let payload_len = (out.len() - HEADER_LEN) as u64;
    let checksum = blake3::hash(&out[HEADER_LEN..]);
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    header.push(kind as u8);
    header.push(0);
    header.extend_from_slice(&VERSION.to_le_bytes());
    let flags = FeatureFlags::default();
    for word in [flags.compat, flags.ro_compat, flags.incompat] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    header.extend_from_slice(&payload_len.to_le_bytes());
    header.extend_from_slice(&raw_len.to_le_bytes());
    header.extend_from_slice(checksum.as_bytes());
    out[..HEADER_LEN].copy_from_slice(&header);
    Ok(out)
}

/// Counts the bytes written through it.
struct Counted<W> {
    inner: W,
    count: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Decodes a record of `kind`, checking magic, version, features and checksum first.
pub fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, RecordError> {
    let (payload, raw_len) = frame(kind, bytes)?;
    let raw =
        zstd::bulk::decompress(payload, raw_len as usize).map_err(RecordError::Compression)?;
    decode_payload(&raw)
}

/// Decodes a record of `kind` (checked as by [`decode`]) piece by piece with `read`, never
/// holding its uncompressed payload whole: for records of hundreds of MB.
pub(crate) fn decode_streaming<T>(
    kind: Kind,
    bytes: &[u8],
    read: impl FnOnce(&mut Window<'_>) -> Result<T, RecordError>,
) -> Result<T, RecordError> {
    let (payload, _) = frame(kind, bytes)?;
    let decoder =
        zstd::stream::read::Decoder::with_buffer(payload).map_err(RecordError::Compression)?;
    let mut window = Window {
        reader: Box::new(decoder),
        buf: vec![0; 1 << 16],
        start: 0,
        end: 0,
        eof: false,
    };
    read(&mut window)
}

/// The uncompressed payload, a window at a time.
pub(crate) struct Window<'a> {
    reader: Box<dyn std::io::Read + 'a>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl Window<'_> {
    /// Decodes the next value; the window grows to hold the largest single value.
    pub(crate) fn take<T: DeserializeOwned>(&mut self) -> Result<T, RecordError> {
        loop {
            match postcard::take_from_bytes::<T>(&self.buf[self.start..self.end]) {
                Ok((value, rest)) => {
                    self.start = self.end - rest.len();
                    return Ok(value);
                }
                Err(postcard::Error::DeserializeUnexpectedEnd) if !self.eof => self.fill()?,
                Err(e) => return Err(RecordError::Payload(e)),
            }
        }
    }

    /// Decodes a sequence (postcard: its length, then its items) with `take` per item.
    pub(crate) fn take_seq<T: DeserializeOwned>(&mut self) -> Result<Vec<T>, RecordError> {
        let len: usize = self.take()?;
        // The length is untrusted: grow as items arrive instead of trusting it up front.
        let mut out = Vec::with_capacity(len.min(1 << 16));
        for _ in 0..len {
            out.push(self.take()?);
        }
        Ok(out)
    }

    fn fill(&mut self) -> Result<(), RecordError> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self
            .reader
            .read(&mut self.buf[self.end..])
            .map_err(RecordError::Compression)?;
        self.eof = n == 0;
        self.end += n;
        Ok(())
    }
}

/// Checks a record's frame (magic, kind, version, features, lengths, checksum) and returns its
/// compressed payload and the uncompressed length it claims.
fn frame(kind: Kind, bytes: &[u8]) -> Result<(&[u8], u64), RecordError> {
    let header = bytes.get(..HEADER_LEN).ok_or(RecordError::Truncated {
        len: bytes.len(),
        needed: HEADER_LEN as u64,
    })?;
    if header[..8] != MAGIC {
        return Err(RecordError::BadMagic);
    }
    if header[8] != kind as u8 {
        return Err(RecordError::WrongKind {
            found: header[8],
            expected: kind,
        });
    }
    let le_u16 = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let le_u32 = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap_or([0; 4]));
    let le_u64 = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
    let version = le_u16(10);
    if version > VERSION {
        return Err(RecordError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let unknown = le_u32(20) & !FeatureFlags::KNOWN_INCOMPAT;
    if unknown != 0 {
        return Err(RecordError::UnknownFeatures { bits: unknown });
    }
    let payload_len = le_u64(24);
    let raw_len = le_u64(32);
    if raw_len > MAX_RAW_LEN {
        return Err(RecordError::TooLarge {
            len: raw_len,
            limit: MAX_RAW_LEN,
        });
    }
    let needed = (HEADER_LEN as u64).saturating_add(payload_len);
    if (bytes.len() as u64) < needed {
        return Err(RecordError::Truncated {
            len: bytes.len(),
            needed,
        });
    }
    let payload = &bytes[HEADER_LEN..HEADER_LEN + payload_len as usize];
    if blake3::hash(payload).as_bytes()[..] != header[40..72] {
        return Err(RecordError::Checksum);
    }
    Ok((payload, raw_len))
}

/// Decodes an uncompressed postcard payload: the last step of [`decode`], exposed so fuzzers
/// can reach it without forging checksums.
pub fn decode_payload<T: DeserializeOwned>(raw: &[u8]) -> Result<T, RecordError> {
    postcard::from_bytes(raw).map_err(RecordError::Payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_tampering() {
        let value = (7u32, String::from("layer"));
        let bytes = encode(Kind::LayerMeta, &value).unwrap();
        assert_eq!(
            decode::<(u32, String)>(Kind::LayerMeta, &bytes).unwrap(),
            value
        );
        assert!(matches!(
            decode::<(u32, String)>(Kind::Image, &bytes),
            Err(RecordError::WrongKind { found: 3, .. })
        ));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode::<(u32, String)>(Kind::LayerMeta, &flipped),
            Err(RecordError::Checksum)
        ));
        let mut newer = bytes.clone();
        newer[10] = 9;
        assert!(matches!(
            decode::<(u32, String)>(Kind::LayerMeta, &newer),
            Err(RecordError::UnsupportedVersion { found: 9, .. })
        ));
        let mut incompat = bytes;
        incompat[20] = 1;
        assert!(matches!(
            decode::<(u32, String)>(Kind::LayerMeta, &incompat),
            Err(RecordError::UnknownFeatures { bits: 1 })
        ));
    }
}

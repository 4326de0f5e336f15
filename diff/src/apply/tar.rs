//! A streaming reader of the tar dialects layers use: ustar, PAX (records by length, so binary
//! xattr values may hold any byte), GNU long names and base-256 numbers.
//!
//! Our own rather than the `tar` crate's because that one splits PAX records at newlines and
//! so loses binary xattr values (file capabilities among them) and the records after them.

use std::io::{self, Read};

const BLOCK: u64 = 512;
/// Upper bound for a PAX or GNU long-name member: plenty for any name and xattr set, and a cap
/// on what a hostile layer can make us buffer.
const MAX_EXTENSION: u64 = 16 << 20;

/// A tar member's header, with PAX and GNU extensions applied.
#[derive(Debug, Default)]
pub(crate) struct Header {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A malformed archive: what is wrong and at which byte offset of the uncompressed stream.
#[derive(Debug)]
pub(crate) struct Malformed {
    pub offset: u64,
    pub reason: &'static str,
}

pub(crate) enum ReadError {
    Io(io::Error),
    Malformed(Malformed),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

pub(crate) struct TarReader<R> {
    inner: R,
    /// Offset of the next byte read from `inner`.
    offset: u64,
    /// Data bytes of the current member not read yet.
    remaining: u64,
    /// Padding after the current member's data.
    padding: u64,
}

/// Overrides collected from extension members for the next real member.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        TarReader {
            inner,
            offset: 0,
            remaining: 0,
            padding: 0,
        }
    }

    /// The next member's header, or `None` at the end of the archive.
    pub(crate) fn next_header(&mut self) -> Result<Option<Header>, ReadError> {
        let mut pending = Pending::default();
        loop {
            self.skip(self.remaining + self.padding)?;
            let start = self.offset;
            let mut block = [0u8; BLOCK as usize];
            if !self.read_block(&mut block)? {
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let bad = |reason| {
                ReadError::Malformed(Malformed {
                    offset: start,
                    reason,
                })
            };
            if !checksum_ok(&block) {
                return Err(bad("header checksum mismatch"));
            }
            let size = number(&block[124..136]).ok_or_else(|| bad("bad size field"))?;
            let kind = block[156];
            let data_size = match kind {
                b'x' | b'g' | b'L' | b'K' => size,
                _ => pending.size.unwrap_or(size),
            };
            // Links and directories carry no data whatever their size field says.
            self.remaining = if matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
                0
            } else {
                data_size
            };
            self.padding = (BLOCK - data_size % BLOCK) % BLOCK;
            match kind {
                b'x' | b'g' | b'L' | b'K' => {
                    if size > MAX_EXTENSION {
                        return Err(bad("extension member too large"));
                    }
                    let mut data = vec![0u8; size as usize];
                    self.read_data(&mut data)?;
                    match kind {
                        b'x' => parse_pax(&data, &mut pending).map_err(bad)?,
                        b'L' => pending.path = Some(trim_nul(&data).to_vec()),
                        b'K' => pending.link = Some(trim_nul(&data).to_vec()),
                        _ => {} // global PAX headers: nothing a layer needs
                    }
                    continue;
                }
                _ => {}
            }
            let ustar = &block[257..262] == b"ustar";
            let name = trim_nul(&block[..100]);
            let path = match pending.path {
                Some(path) => path,
                None if ustar && block[345] != 0 => {
                    let mut p = trim_nul(&block[345..500]).to_vec();
                    p.push(b'/');
                    p.extend_from_slice(name);
                    p
                }
                None => name.to_vec(),
            };
            let field = |range: std::ops::Range<usize>, what| {
                number(&block[range]).ok_or_else(|| bad(what))
            };
            return Ok(Some(Header {
                path,
                link: pending
                    .link
                    .unwrap_or_else(|| trim_nul(&block[157..257]).to_vec()),
                kind,
                mode: (field(100..108, "bad mode field")? & 0o7777) as u32,
                uid: pending
                    .uid
                    .map_or_else(|| field(108..116, "bad uid field"), Ok)?,
                gid: pending
                    .gid
                    .map_or_else(|| field(116..124, "bad gid field"), Ok)?,
                mtime: pending
                    .mtime
                    .map_or_else(|| field(136..148, "bad mtime field").map(|t| t as i64), Ok)?,
                dev_major: if ustar {
                    number(&block[329..337]).unwrap_or(0) as u32
                } else {
                    0
                },
                dev_minor: if ustar {
                    number(&block[337..345]).unwrap_or(0) as u32
                } else {
                    0
                },
                xattrs: pending.xattrs,
            }));
        }
    }

    /// Reads a full block; `false` at a clean end of stream.
    fn read_block(&mut self, block: &mut [u8]) -> Result<bool, ReadError> {
        let mut filled = 0;
        while filled < block.len() {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(self.truncated()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += block.len() as u64;
        Ok(true)
    }

    fn read_data(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.read(&mut buf[filled..])?;
            if n == 0 {
                return Err(self.truncated());
            }
            filled += n;
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<(), ReadError> {
        self.remaining = 0;
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => return Err(self.truncated()),
                Ok(k) => {
                    n -= k as u64;
                    self.offset += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.padding = 0;
        Ok(())
    }

    fn truncated(&self) -> ReadError {
        ReadError::Malformed(Malformed {
            offset: self.offset,
            reason: "archive ends inside a member",
        })
    }
}

/// The current member's data.
impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside a member",
            ));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

fn checksum_ok(block: &[u8]) -> bool {
    let Some(stored) = number(&block[148..156]) else {
        return false;
    };
    let unsigned: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    stored == unsigned || stored as i64 == signed
}

/// A numeric field: octal (padded with spaces or NULs) or GNU base-256.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let digits: &[u8] = {
        let start = field
            .iter()
            .position(|&b| b != b' ' && b != 0)
            .unwrap_or(field.len());
        let rest = &field[start..];
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == 0)
            .unwrap_or(rest.len());
        &rest[..end]
    };
    if digits.is_empty() {
        return Some(0);
    }
    let mut value = 0u64;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// Applies the records of a PAX header to `pending`.
fn parse_pax(data: &[u8], pending: &mut Pending) -> Result<(), &'static str> {
    for record in crate::pax::records(data) {
        let (key, value) = record?;
        let decimal = |v: &[u8]| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("PAX number is not a number")
        };
        match key {
            b"path" => pending.path = Some(value.to_vec()),
            b"linkpath" => pending.link = Some(value.to_vec()),
            b"size" => pending.size = Some(decimal(value)?),
            b"uid" => pending.uid = Some(decimal(value)?),
            b"gid" => pending.gid = Some(decimal(value)?),
            b"mtime" => {
                let secs = value.split(|&b| b == b'.').next().unwrap_or_default();
                let (neg, digits) = match secs.strip_prefix(b"-") {
                    Some(d) => (true, d),
                    None => (false, secs),
                };
                let v = decimal(digits)? as i64;
                pending.mtime = Some(if neg { -v } else { v });
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    pending.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base256() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"  644 \0"), Some(0o644));
        assert_eq!(number(b"\0\0\0"), Some(0));
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]),
            Some(2 << 32)
        );
        assert_eq!(number(b"0009"), None);
    }

    #[test]
    fn pax_values_may_hold_newlines() {
        let mut p = Pending::default();
        parse_pax(b"25 SCHILY.xattr.user.a=\n\n12 path=abc\n", &mut p).unwrap();
        assert_eq!(p.xattrs, [(b"user.a".to_vec(), b"\n".to_vec())]);
        assert_eq!(p.path.as_deref(), Some(&b"abc"[..]));
        assert!(parse_pax(b"99 path=abc\n", &mut Pending::default()).is_err());
    }
}

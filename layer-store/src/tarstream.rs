//! Splits a layer tar into what export needs to rebuild it bit for bit (every header block,
//! extension record and padding byte, verbatim) and what materialization needs (entries), while
//! regular files' contents go to a caller-supplied sink (the object store).
//!
//! The tar is untrusted: checksums are verified, paths are normalized and `..` refused, extension
//! records are bounded, and unsupported entry types are refused by name.

use std::io::{self, Read};

use tar::{EntryType, Header};

use crate::object::ObjectId;
use crate::record::{Chunk, Entry, EntryKind, Time};

const BLOCK: usize = 512;
/// Longest PAX or GNU long-name record accepted.
const MAX_EXTENSION: u64 = 1 << 20;
/// Longest run of bytes accepted after the end-of-archive marker.
const MAX_TRAILER: usize = 1 << 20;

/// A layer tar that cannot be taken apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// Reading the stream failed (including decompression and truncation).
    #[error("reading the tar at offset {offset}: {source}")]
    Io {
        /// Offset in the uncompressed tar.
        offset: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A header block's checksum is wrong.
    #[error("tar header at offset {offset} has a bad checksum")]
    BadChecksum {
        /// Offset of the header block.
        offset: u64,
    },
    /// A header field does not parse.
    #[error("tar header at offset {offset}: bad {field} field")]
    BadField {
        /// Offset of the header block.
        offset: u64,
        /// Which field.
        field: &'static str,
    },
    /// An entry path leaves the layer root.
    #[error("tar entry {path:?} at offset {offset} escapes the layer root")]
    UnsafePath {
        /// The path as written.
        path: String,
        /// Offset of its header.
        offset: u64,
    },
    /// An entry type the store does not support (sparse files, volume labels, …).
    #[error("tar entry {path:?} at offset {offset} has unsupported type {entry_type:?}")]
    Unsupported {
        /// The path.
        path: String,
        /// The type flag byte.
        entry_type: char,
        /// Offset of its header.
        offset: u64,
    },
    /// A PAX or GNU long-name record, or the trailer, is unreasonably large.
    #[error("tar extension at offset {offset} is {size} bytes, more than the limit")]
    TooLarge {
        /// Offset of its header.
        offset: u64,
        /// Its size.
        size: u64,
    },
    /// A hard link names an entry that does not precede it in this layer.
    #[error("hard link {path:?} names {target:?}, which is not an earlier file of the layer")]
    DanglingHardlink {
        /// The link.
        path: String,
        /// What it names.
        target: String,
    },
}

/// The parts of a layer tar: its byte stream with file contents as objects, and its entries.
#[derive(Debug, Default)]
pub struct Parts {
    /// The byte stream.
    pub stream: Vec<Chunk>,
    /// The entries, in order.
    pub entries: Vec<Entry>,
}

/// Extension values that apply to the next entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Vec<(String, Vec<u8>)>,
}

struct Splitter<R> {
    reader: R,
    offset: u64,
    raw: Vec<u8>,
    parts: Parts,
}

/// Takes the tar read from `reader` apart; `store_file(reader, size)` must consume exactly
/// `size` bytes and name the object holding them.
pub fn split<R: Read, E: From<TarError>>(
    reader: R,
    mut store_file: impl FnMut(&mut dyn Read, u64) -> Result<ObjectId, E>,
) -> Result<Parts, E> {
    let mut s = Splitter {
        reader,
        offset: 0,
        raw: Vec::new(),
        parts: Parts::default(),
    };
    let mut pending = Pending::default();
    let mut global_pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut block = [0u8; BLOCK];
    loop {
        let at = s.offset;
        if !s.read_block(&mut block)? {
            break;
        }
        if block.iter().all(|&b| b == 0) {
            s.read_trailer()?;
            break;
        }
        verify_checksum(&block, at)?;
        s.raw.extend_from_slice(&block);
        let header = Header::from_byte_slice(&block);
        let entry_type = header.entry_type();
        let mut size = header.entry_size().map_err(|_| bad(at, "size"))?;
        let is_extension = matches!(
            entry_type,
            EntryType::XHeader | EntryType::XGlobalHeader | EntryType::GNULongName
        ) || entry_type == EntryType::GNULongLink;
        if is_extension {
            let data = s.read_extension(size, at)?;
            match entry_type {
                EntryType::XHeader => {
                    pending.pax = parse_pax(&data).map_err(|_| bad(at, "pax record"))?
                }
                EntryType::XGlobalHeader => {
                    global_pax = parse_pax(&data).map_err(|_| bad(at, "pax record"))?
                }
                EntryType::GNULongName => pending.path = Some(trim_nul(data)),
                _ => pending.link = Some(trim_nul(data)),
            }
            continue;
        }
        let pax: Vec<&(String, Vec<u8>)> = global_pax.iter().chain(&pending.pax).collect();
        let pax_get = |key: &str| pax.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
        if let Some(v) = pax_get("size") {
            size = parse_decimal(v).ok_or_else(|| bad(at, "pax size"))?;
        }
        let raw_path = pax_get("path")
            .cloned()
            .or(pending.path.take())
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let path = normalize(&raw_path).ok_or_else(|| TarError::UnsafePath {
            path: lossy(&raw_path),
            offset: at,
        })?;
        let link = pax_get("linkpath")
            .cloned()
            .or(pending.link.take())
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let meta = Entry {
            path,
            kind: EntryKind::Dir,
            mode: numeric(&block, 100..108, header.mode().map(u64::from), at, "mode")? as u32
                & 0o7777,
            uid: id_field(
                pax_get("uid"),
                numeric(&block, 108..116, header.uid(), at, "uid"),
                at,
                "uid",
            )?,
            gid: id_field(
                pax_get("gid"),
                numeric(&block, 116..124, header.gid(), at, "gid"),
                at,
                "gid",
            )?,
            mtime: match pax_get("mtime") {
                Some(v) => parse_time(v).ok_or_else(|| bad(at, "pax mtime"))?,
                None => Time {
                    sec: numeric(&block, 136..148, header.mtime(), at, "mtime")? as i64,
                    nsec: 0,
                },
            },
            xattrs: xattrs(&pax),
        };
        pending.pax.clear();
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => {
                s.flush_raw();
                let id = store_file(&mut (&mut s.reader).take(size), size)?;
                s.offset += size;
                s.parts.stream.push(Chunk::Object { id, size });
                s.read_padding(size)?;
                s.push(meta, EntryKind::File { object: id, size });
                continue;
            }
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink {
                target: link.ok_or_else(|| bad(at, "linkname"))?,
            },
            EntryType::Link => {
                let target = link.ok_or_else(|| bad(at, "linkname"))?;
                let normalized = normalize(&target)
                    .filter(|t| s.parts.entries.iter().any(|e| &e.path == t))
                    .ok_or_else(|| TarError::DanglingHardlink {
                        path: lossy(&meta.path),
                        target: lossy(&target),
                    })?;
                EntryKind::Hardlink { target: normalized }
            }
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().map_err(|_| bad(at, "devmajor"))?;
                let minor = header.device_minor().map_err(|_| bad(at, "devminor"))?;
                let (major, minor) = (major.unwrap_or(0), minor.unwrap_or(0));
                if entry_type == EntryType::Char {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                }
            }
            EntryType::Fifo => EntryKind::Fifo,
            other => {
                return Err(TarError::Unsupported {
                    path: lossy(&meta.path),
                    entry_type: char::from(other.as_byte()),
                    offset: at,
                }
                .into());
            }
        };
        // Non-file entries carry no data in a sane tar; keep any verbatim for export.
        if size > 0 {
            s.read_extension(size, at)?;
        }
        s.push(meta, kind);
    }
    s.flush_raw();
    Ok(s.parts)
}

impl<R: Read> Splitter<R> {
    fn push(&mut self, meta: Entry, kind: EntryKind) {
        self.parts.entries.push(Entry { kind, ..meta });
    }

    fn flush_raw(&mut self) {
        if !self.raw.is_empty() {
            self.parts
                .stream
                .push(Chunk::Raw(std::mem::take(&mut self.raw)));
        }
    }

    fn io(&self, source: io::Error) -> TarError {
        TarError::Io {
            offset: self.offset,
            source,
        }
    }

    /// Reads one block; `false` at a clean end of stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.reader.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(self.io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        self.offset += BLOCK as u64;
        Ok(true)
    }

    /// Reads `len` bytes into the raw run and returns them.
    fn read_exact_raw(&mut self, len: usize) -> Result<&[u8], TarError> {
        let start = self.raw.len();
        self.raw.resize(start + len, 0);
        if let Err(e) = self.reader.read_exact(&mut self.raw[start..]) {
            return Err(self.io(e));
        }
        self.offset += len as u64;
        Ok(&self.raw[start..])
    }

    fn read_padding(&mut self, size: u64) -> Result<(), TarError> {
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.read_exact_raw(pad as usize).map(drop)
    }

    /// Reads an extension record (bounded) and its padding, keeping both verbatim.
    fn read_extension(&mut self, size: u64, at: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION {
            return Err(TarError::TooLarge { offset: at, size });
        }
        let data = self.read_exact_raw(size as usize)?.to_vec();
        self.read_padding(size)?;
        Ok(data)
    }

    /// Keeps the end-of-archive block just read and everything after it.
    fn read_trailer(&mut self) -> Result<(), TarError> {
        self.raw.extend_from_slice(&[0u8; BLOCK]);
        let start = self.raw.len();
        let limit = (MAX_TRAILER + 1) as u64;
        if let Err(e) = (&mut self.reader).take(limit).read_to_end(&mut self.raw) {
            return Err(self.io(e));
        }
        let read = self.raw.len() - start;
        self.offset += read as u64;
        if read > MAX_TRAILER {
            return Err(TarError::TooLarge {
                offset: self.offset - read as u64,
                size: read as u64,
            });
        }
        Ok(())
    }
}

fn bad(offset: u64, field: &'static str) -> TarError {
    TarError::BadField { offset, field }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn verify_checksum(block: &[u8; BLOCK], offset: u64) -> Result<(), TarError> {
    let field = &block[148..156];
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|b| *b != 0 && *b != b' ')
        .collect();
    let stored = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 8).ok())
        .ok_or(TarError::BadChecksum { offset })?;
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    if sum == stored {
        Ok(())
    } else {
        Err(TarError::BadChecksum { offset })
    }
}

fn trim_nul(mut data: Vec<u8>) -> Vec<u8> {
    while data.last() == Some(&0) {
        data.pop();
    }
    data
}

/// The records of a PAX header; keys that are not UTF-8 (none that we read) are skipped.
fn parse_pax(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, &'static str> {
    let mut out = Vec::new();
    for record in strata_diff::pax::records(data) {
        let (key, value) = record?;
        if let Ok(key) = std::str::from_utf8(key) {
            out.push((key.to_owned(), value.to_vec()));
        }
    }
    Ok(out)
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

fn parse_time(v: &[u8]) -> Option<Time> {
    let text = std::str::from_utf8(v).ok()?.trim();
    let (sec, frac) = text.split_once('.').unwrap_or((text, ""));
    let sec: i64 = sec.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some(Time { sec, nsec })
}

/// A numeric header field; an empty one (all NUL or spaces, as some writers leave them) is 0.
fn numeric(
    block: &[u8; BLOCK],
    field: std::ops::Range<usize>,
    parsed: io::Result<u64>,
    at: u64,
    name: &'static str,
) -> Result<u64, TarError> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if block[field].iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(_) => Err(bad(at, name)),
    }
}

fn id_field(
    pax: Option<&Vec<u8>>,
    header: Result<u64, TarError>,
    at: u64,
    field: &'static str,
) -> Result<u32, TarError> {
    let value = match pax {
        Some(v) => parse_decimal(v),
        None => Some(header?),
    };
    value
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| bad(at, field))
}

fn xattrs(pax: &[&(String, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = pax
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("SCHILY.xattr.")?;
            Some((name.as_bytes().to_vec(), v.clone()))
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// `./a//b/` → `a/b`; `None` for any `..` component. The root itself is the empty path.
pub fn normalize(path: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.len());
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            part => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(normalize(b"./a//b/").unwrap(), b"a/b");
        assert_eq!(normalize(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert!(normalize(b"a/../../x").is_none());
    }

    #[test]
    fn parses_fractional_pax_times() {
        assert_eq!(
            parse_time(b"1700000000.5"),
            Some(Time {
                sec: 1_700_000_000,
                nsec: 500_000_000
            })
        );
        assert_eq!(parse_time(b"12"), Some(Time { sec: 12, nsec: 0 }));
        assert_eq!(parse_time(b"1.x"), None);
    }
}

//! Splits a layer tar into what export needs to rebuild it bit for bit (every header block,
//! extension record and padding byte, verbatim) and what materialization needs (entries), while
//! regular files' contents go to a caller-supplied sink (the object store).
//!
//! The tar is untrusted: checksums are verified, paths are normalized and `..` refused, extension
//! records, xattrs and entries are bounded by [`Limits`], unsupported entry types are refused by
//! name, and a hard link must name a regular file the layer itself holds at that point.

use std::collections::BTreeMap;
use std::io::{self, Read};

/// An xattr: its name and its value.
type Xattr = (Vec<u8>, Vec<u8>);

use tar::{EntryType, Header};

use crate::limits::{Limit, Limits};
use crate::object::ObjectId;
use crate::record::{Chunk, Entry, EntryKind, Time};

const BLOCK: usize = 512;
/// Longest run of bytes accepted after the end-of-archive marker.
const MAX_TRAILER: usize = 1 << 20;
const WHITEOUT_PREFIX: &[u8] = b".wh.";

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
    /// Reading a regular file's data failed (truncation, or the store could not take it).
    #[error("reading tar entry {path:?} (data at offset {offset})")]
    EntryData {
        /// The entry.
        path: String,
        /// Offset of its data in the uncompressed tar.
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
    /// The bytes after the end-of-archive marker are unreasonably many.
    #[error("{size} bytes of data follow the end of the tar at offset {offset}")]
    TrailingData {
        /// Offset of the data.
        offset: u64,
        /// How many bytes.
        size: u64,
    },
    /// The layer goes over one of the import's [`Limits`].
    #[error(
        "tar entry at offset {offset}: {limit} would be {value}, over the limit of {max} \
         (raise it only for a trusted source)"
    )]
    OverLimit {
        /// Which limit.
        limit: Limit,
        /// Offset of the entry's (first) header.
        offset: u64,
        /// What the layer would need.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// A hard link names something other than a regular file this layer holds at that point.
    #[error("hard link {path:?} names {target:?}, which is not a regular file of the layer")]
    DanglingHardlink {
        /// The link.
        path: String,
        /// What it names.
        target: String,
    },
    /// An entry lies below something of the same layer that is not a directory (a symlink,
    /// say), which no file system can hold.
    #[error("tar entry {path:?} at offset {offset} lies below a non-directory of the layer")]
    BelowNonDirectory {
        /// The entry.
        path: String,
        /// Offset of its header.
        offset: u64,
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

/// What the layer holds at a path so far, for hard-link checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Dir,
    File,
    Other,
}

struct Splitter<'l, R> {
    reader: R,
    offset: u64,
    raw: Vec<u8>,
    parts: Parts,
    limits: &'l Limits,
    /// Extension bytes and xattr bytes of the layer so far.
    pax_bytes: u64,
    xattr_bytes: u64,
    /// What each path of the layer is, as later entries leave it.
    live: BTreeMap<Vec<u8>, Live>,
}

/// A regular file's data, as [`split`] hands it to be stored.
#[derive(Debug, Clone, Copy)]
pub struct FileData<'a> {
    /// The entry's path.
    pub path: &'a [u8],
    /// Its length in bytes.
    pub size: u64,
    /// Offset of the data in the uncompressed tar.
    pub offset: u64,
}

impl FileData<'_> {
    /// A failure to read this data, naming the entry and where it is.
    pub fn read_error(&self, source: io::Error) -> TarError {
        TarError::EntryData {
            path: lossy(self.path),
            offset: self.offset,
            source,
        }
    }
}

/// Takes the tar read from `reader` apart within `limits`; `store_file(reader, data)` must
/// consume exactly `data.size` bytes and name the object holding them.
pub fn split<R: Read, E: From<TarError>>(
    reader: R,
    limits: &Limits,
    mut store_file: impl FnMut(&mut dyn Read, FileData<'_>) -> Result<ObjectId, E>,
) -> Result<Parts, E> {
    let mut s = Splitter {
        reader,
        offset: 0,
        raw: Vec::new(),
        parts: Parts::default(),
        limits,
        pax_bytes: 0,
        xattr_bytes: 0,
        live: BTreeMap::new(),
    };
    let mut pending = Pending::default();
    let mut global_pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut global_size = 0u64;
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
                    global_pax = parse_pax(&data).map_err(|_| bad(at, "pax record"))?;
                    global_size = data.len() as u64;
                }
                EntryType::GNULongName => pending.path = Some(trim_nul(data)),
                _ => pending.link = Some(trim_nul(data)),
            }
            continue;
        }
        if s.parts.entries.len() as u64 >= limits.entries_per_layer {
            return Err(over(
                Limit::EntriesPerLayer,
                at,
                s.parts.entries.len() as u64 + 1,
                limits.entries_per_layer,
            )
            .into());
        }
        if !global_pax.is_empty() {
            // Applied to every entry: counted for every entry.
            s.add_pax_bytes(global_size, at)?;
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
            xattrs: s.xattrs(&pax, at)?,
        };
        pending.pax.clear();
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => {
                s.flush_raw();
                let data = FileData {
                    path: &meta.path,
                    size,
                    offset: s.offset,
                };
                let id = store_file(&mut (&mut s.reader).take(size), data)?;
                s.offset += size;
                s.parts.stream.push(Chunk::Object { id, size });
                s.read_padding(size)?;
                s.push(meta, EntryKind::File { object: id, size }, at)?;
                continue;
            }
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink {
                target: link.ok_or_else(|| bad(at, "linkname"))?,
            },
            EntryType::Link => {
                let target = link.ok_or_else(|| bad(at, "linkname"))?;
                let normalized = normalize(&target)
                    .filter(|t| *t != meta.path && s.live.get(t) == Some(&Live::File))
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
        s.push(meta, kind, at)?;
    }
    s.flush_raw();
    Ok(s.parts)
}

impl<R: Read> Splitter<'_, R> {
    fn push(&mut self, meta: Entry, kind: EntryKind, at: u64) -> Result<(), TarError> {
        self.track(&meta.path, &kind, at)?;
        self.parts.entries.push(Entry { kind, ..meta });
        Ok(())
    }

    /// Updates what the layer holds at `path`, which `kind` replaces (a directory replacing a
    /// directory keeps its children). Whiteouts hide only lower layers, so they change nothing.
    fn track(&mut self, path: &[u8], kind: &EntryKind, at: u64) -> Result<(), TarError> {
        let mut end = 0;
        while let Some(pos) = path[end..].iter().position(|&b| b == b'/') {
            if self
                .live
                .get(&path[..end + pos])
                .is_some_and(|&l| l != Live::Dir)
            {
                return Err(TarError::BelowNonDirectory {
                    path: lossy(path),
                    offset: at,
                });
            }
            end += pos + 1;
        }
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if name.starts_with(WHITEOUT_PREFIX) {
            return Ok(());
        }
        let live = match kind {
            EntryKind::Dir => Live::Dir,
            EntryKind::File { .. } | EntryKind::Hardlink { .. } => Live::File,
            _ => Live::Other,
        };
        if self.live.insert(path.to_vec(), live) == Some(Live::Dir) && live != Live::Dir {
            let mut start = path.to_vec();
            start.push(b'/');
            let mut stop = path.to_vec();
            stop.push(b'/' + 1);
            let below: Vec<Vec<u8>> = self
                .live
                .range(start..stop)
                .map(|(k, _)| k.clone())
                .collect();
            for key in below {
                self.live.remove(&key);
            }
        }
        Ok(())
    }

    /// Counts `bytes` of extension records against the layer's budget.
    fn add_pax_bytes(&mut self, bytes: u64, at: u64) -> Result<(), TarError> {
        self.pax_bytes = self.pax_bytes.saturating_add(bytes);
        let max = self.limits.pax_bytes_per_layer;
        if self.pax_bytes > max {
            return Err(over(Limit::PaxBytesPerLayer, at, self.pax_bytes, max));
        }
        Ok(())
    }

    /// The entry's xattrs (PAX `SCHILY.xattr.*`), sorted by name, within the limits.
    fn xattrs(&mut self, pax: &[&(String, Vec<u8>)], at: u64) -> Result<Vec<Xattr>, TarError> {
        let mut out: Vec<Xattr> = Vec::new();
        let mut bytes = 0u64;
        for (key, value) in pax {
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                bytes += (name.len() + value.len()) as u64;
                if bytes > self.limits.xattr_bytes_per_entry {
                    return Err(over(
                        Limit::XattrBytesPerEntry,
                        at,
                        bytes,
                        self.limits.xattr_bytes_per_entry,
                    ));
                }
                out.push((name.as_bytes().to_vec(), value.clone()));
            }
        }
        self.xattr_bytes += bytes;
        if self.xattr_bytes > self.limits.xattr_bytes_per_layer {
            return Err(over(
                Limit::XattrBytesPerLayer,
                at,
                self.xattr_bytes,
                self.limits.xattr_bytes_per_layer,
            ));
        }
        // The last of a name wins (an entry's own header after the global one).
        out.reverse();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
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
        let max = self.limits.pax_bytes_per_entry;
        if size > max {
            return Err(over(Limit::PaxBytesPerEntry, at, size, max));
        }
        self.add_pax_bytes(size, at)?;
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
            return Err(TarError::TrailingData {
                offset: self.offset - read as u64,
                size: read as u64,
            });
        }
        Ok(())
    }
}

fn over(limit: Limit, offset: u64, value: u64, max: u64) -> TarError {
    TarError::OverLimit {
        limit,
        offset,
        value,
        max,
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

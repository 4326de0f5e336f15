//! The streaming reader: header blocks and extension records in, [`Header`]s out.

use std::io::{self, Read};

use strata_cow::conventions::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

use super::block::{self, number};
use super::held::Held;
use super::pax::{self, Owned};
use super::{BLOCK, EntryType, Header, TarError, Time, lossy};
use crate::limits::{Limit, Limits};

/// Longest run of bytes accepted after the end-of-archive marker (tar writers pad to a record
/// of 10 KiB; some append a little more).
const MAX_TRAILER: u64 = 1 << 20;

/// Reads a layer tar entry by entry (see the [module docs](super) for what it refuses).
///
/// ```
/// use std::io::Read;
/// use strata_codec::Limits;
/// use strata_codec::tar::{EntryType, TarReader};
///
/// let mut builder = tar::Builder::new(Vec::new());
/// let mut header = tar::Header::new_ustar();
/// header.set_size(5);
/// header.set_mode(0o644);
/// builder.append_data(&mut header, "./etc/hostname", &b"box\n\n"[..])?;
/// let layer = builder.into_inner()?;
///
/// let mut reader = TarReader::new(&layer[..], Limits::default()).keep_raw();
/// let entry = reader.next_entry()?.expect("one entry");
/// assert_eq!((entry.path.as_slice(), &entry.kind, entry.size), (&b"etc/hostname"[..], &EntryType::File, 5));
/// let mut contents = String::new();
/// reader.read_to_string(&mut contents)?;
/// assert_eq!(contents, "box\n\n");
/// let header_block = reader.take_raw();
/// assert_eq!(header_block, layer[..512]);
/// assert!(reader.next_entry()?.is_none());
/// // Everything but the contents, verbatim: padding and the end-of-archive trailer.
/// assert_eq!(reader.take_raw(), layer[512 + 5..]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TarReader<R> {
    inner: R,
    limits: Limits,
    /// Offset of the next byte read from `inner`.
    offset: u64,
    /// Contents of the current file not read yet.
    remaining: u64,
    /// Padding after the current file's contents, not read yet.
    padding: u64,
    /// Every byte read that is not file contents, when asked to keep them.
    raw: Option<Vec<u8>>,
    /// The records of the last global PAX header, and its size.
    global: Owned,
    global_size: u64,
    /// Entries, extension bytes and xattr bytes so far, for the limits.
    entries: u64,
    pax_bytes: u64,
    xattr_bytes: u64,
    held: Held,
    /// The end of the archive was reached.
    done: bool,
}

/// Extensions (PAX records, GNU long names) for the next entry.
#[derive(Default)]
struct Pending {
    records: Owned,
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

impl<R: Read> TarReader<R> {
    /// A reader of the tar `inner` (uncompressed: see
    /// [`compression::decompressed`](crate::compression::decompressed)), within `limits`.
    pub fn new(inner: R, limits: Limits) -> Self {
        TarReader {
            inner,
            limits,
            offset: 0,
            remaining: 0,
            padding: 0,
            raw: None,
            global: Owned::new(),
            global_size: 0,
            entries: 0,
            pax_bytes: 0,
            xattr_bytes: 0,
            held: Held::default(),
            done: false,
        }
    }

    /// Keeps every byte that is not a regular file's contents, for [`TarReader::take_raw`].
    pub fn keep_raw(mut self) -> Self {
        self.raw = Some(Vec::new());
        self
    }

    /// The bytes kept since the last call (nothing unless [`TarReader::keep_raw`]): after
    /// [`TarReader::next_entry`], everything from the previous file's contents up to this
    /// entry's contents; after the end, the rest of the stream.
    pub fn take_raw(&mut self) -> Vec<u8> {
        self.raw.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Offset of the next byte of the uncompressed tar: for a file just returned by
    /// [`TarReader::next_entry`], where its contents start.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entry, or `None` at the end of the archive. Contents of the previous file not
    /// read are skipped.
    pub fn next_entry(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip_contents()?;
        let mut pending = Pending::default();
        let mut first = None;
        loop {
            let at = self.offset;
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? {
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.read_trailer()?;
                self.done = true;
                return Ok(None);
            }
            let start = *first.get_or_insert(at);
            if !block::checksum_ok(&block) {
                return Err(TarError::BadChecksum { offset: at });
            }
            let size = number(&block[block::SIZE]).ok_or_else(|| bad(at, "size"))?;
            let flag = block[block::TYPE];
            if matches!(flag, b'x' | b'g' | b'L' | b'K') {
                let data = self.read_extension(size, at)?;
                match flag {
                    b'x' => pax::parse_into(&data, &mut pending.records)
                        .map_err(|_| bad(at, "pax record"))?,
                    b'g' => {
                        let mut records = Owned::new();
                        pax::parse_into(&data, &mut records).map_err(|_| bad(at, "pax record"))?;
                        self.global = records;
                        self.global_size = size;
                    }
                    b'L' => pending.path = Some(block::trim_nul(&data).to_vec()),
                    _ => pending.link = Some(block::trim_nul(&data).to_vec()),
                }
                continue;
            }
            return self.entry(&block, size, start, pending).map(Some);
        }
    }

    /// Builds the entry whose (last) header block is `block`; `at` is its first header.
    fn entry(
        &mut self,
        block: &[u8; BLOCK],
        mut size: u64,
        at: u64,
        pending: Pending,
    ) -> Result<Header, TarError> {
        self.entries += 1;
        self.check(Limit::EntriesPerLayer, self.entries, at)?;
        if !self.global.is_empty() {
            // Applied to every entry: counted for every entry.
            self.pax_bytes = self.pax_bytes.saturating_add(self.global_size);
            self.check(Limit::PaxBytesPerLayer, self.pax_bytes, at)?;
        }
        let records: Owned = self.global.iter().cloned().chain(pending.records).collect();
        let get = |key: &[u8]| {
            records
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_slice())
        };
        if let Some(v) = get(b"size") {
            size = pax::decimal(v).ok_or_else(|| bad(at, "pax size"))?;
        }
        let raw_path = match get(b"path") {
            Some(p) => p.to_vec(),
            None => pending.path.unwrap_or_else(|| block::path(block)),
        };
        let path = crate::path::clean(&raw_path).ok_or_else(|| TarError::UnsafePath {
            path: lossy(&raw_path),
            offset: at,
        })?;
        let link = match get(b"linkpath") {
            Some(l) => l.to_vec(),
            None => pending
                .link
                .unwrap_or_else(|| block::trim_nul(&block[block::LINK]).to_vec()),
        };
        let field = |range: std::ops::Range<usize>, name| {
            number(&block[range]).ok_or_else(|| bad(at, name))
        };
        let id = |pax_key: &[u8], range, name, pax_name| {
            let value = match get(pax_key) {
                Some(v) => pax::decimal(v).ok_or_else(|| bad(at, pax_name))?,
                None => field(range, name)?,
            };
            u32::try_from(value).map_err(|_| bad(at, name))
        };
        let mode = (field(block::MODE, "mode")? & 0o7777) as u32;
        let uid = id(b"uid", block::UID, "uid", "pax uid")?;
        let gid = id(b"gid", block::GID, "gid", "pax gid")?;
        let mtime = match get(b"mtime") {
            Some(v) => pax::time(v).ok_or_else(|| bad(at, "pax mtime"))?,
            None => Time {
                sec: i64::try_from(field(block::MTIME, "mtime")?).map_err(|_| bad(at, "mtime"))?,
                nsec: 0,
            },
        };
        let xattrs = self.xattrs(&records, at)?;
        let kind = self.kind(block, &raw_path, &path, link, at)?;
        self.check_names(&path, &kind, at)?;
        self.held.track(&path, &kind, at)?;
        if kind == EntryType::File {
            self.remaining = size;
            self.padding = padding(size);
        } else {
            // Other types carry no contents in a sane tar; whatever is there is skipped (and
            // kept raw), within the extension limits.
            if size > 0 {
                self.read_extension(size, at)?;
            }
            size = 0;
        }
        Ok(Header {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
            size,
            offset: at,
        })
    }

    fn kind(
        &self,
        block: &[u8; BLOCK],
        raw_path: &[u8],
        path: &[u8],
        link: Vec<u8>,
        at: u64,
    ) -> Result<EntryType, TarError> {
        let flag = block[block::TYPE];
        let device = |range: std::ops::Range<usize>, name| -> Result<u32, TarError> {
            if !block::has_devices(block) {
                return Ok(0);
            }
            number(&block[range])
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(at, name))
        };
        let linked = |link: Vec<u8>| {
            if link.is_empty() {
                Err(bad(at, "linkname"))
            } else {
                Ok(link)
            }
        };
        Ok(match flag {
            // Pre-POSIX archives mark directories by a trailing slash only.
            b'0' | 0 if raw_path.ends_with(b"/") => EntryType::Dir,
            b'0' | 0 | b'7' => EntryType::File,
            b'5' => EntryType::Dir,
            b'2' => EntryType::Symlink {
                target: linked(link)?,
            },
            b'1' => {
                let written = linked(link)?;
                // The root is no file to link to.
                let target = crate::path::clean(&written)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| TarError::UnsafePath {
                        path: lossy(&written),
                        offset: at,
                    })?;
                let held = self.held.link_target(path, &target)?;
                EntryType::Hardlink { target, held }
            }
            b'3' => EntryType::CharDevice {
                major: device(block::DEV_MAJOR, "devmajor")?,
                minor: device(block::DEV_MINOR, "devminor")?,
            },
            b'4' => EntryType::BlockDevice {
                major: device(block::DEV_MAJOR, "devmajor")?,
                minor: device(block::DEV_MINOR, "devminor")?,
            },
            b'6' => EntryType::Fifo,
            other => {
                return Err(TarError::Unsupported {
                    path: lossy(path),
                    entry_type: char::from(other),
                    offset: at,
                });
            }
        })
    }

    /// Refuses a root that is not a directory and whiteouts that name nothing.
    fn check_names(&self, path: &[u8], kind: &EntryType, at: u64) -> Result<(), TarError> {
        if path.is_empty() && *kind != EntryType::Dir {
            return Err(TarError::RootNotDirectory { offset: at });
        }
        let name = crate::path::split(path).1;
        if name == OPAQUE_WHITEOUT {
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX)
            && (hidden.is_empty()
                || hidden == b"."
                || hidden == b".."
                || hidden.starts_with(WHITEOUT_PREFIX))
        {
            return Err(TarError::InvalidWhiteout {
                path: lossy(path),
                offset: at,
            });
        }
        Ok(())
    }

    /// The entry's xattrs (PAX `SCHILY.xattr.*`), sorted by name, within the limits.
    fn xattrs(&mut self, records: &[(Vec<u8>, Vec<u8>)], at: u64) -> Result<Owned, TarError> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for (key, value) in records {
            let Some(name) = key.strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            if name.is_empty() || name.contains(&0) {
                return Err(bad(at, "xattr name"));
            }
            bytes += (name.len() + value.len()) as u64;
            self.check(Limit::XattrBytesPerEntry, bytes, at)?;
            out.push((name.to_vec(), value.clone()));
        }
        self.xattr_bytes += bytes;
        self.check(Limit::XattrBytesPerLayer, self.xattr_bytes, at)?;
        // The last of a name wins (an entry's own header after the global one).
        out.reverse();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// An error if `value` goes over `limit`.
    fn check(&self, limit: Limit, value: u64, at: u64) -> Result<(), TarError> {
        let max = match limit {
            Limit::EntriesPerLayer => self.limits.entries_per_layer,
            Limit::PaxBytesPerEntry => self.limits.pax_bytes_per_entry,
            Limit::PaxBytesPerLayer => self.limits.pax_bytes_per_layer,
            Limit::XattrBytesPerEntry => self.limits.xattr_bytes_per_entry,
            Limit::XattrBytesPerLayer => self.limits.xattr_bytes_per_layer,
            _ => u64::MAX,
        };
        if value > max {
            return Err(TarError::OverLimit {
                limit,
                offset: at,
                value,
                max,
            });
        }
        Ok(())
    }

    /// Reads an extension record (or non-file contents) of `size` bytes and its padding,
    /// within the limits; keeps both raw.
    fn read_extension(&mut self, size: u64, at: u64) -> Result<Vec<u8>, TarError> {
        self.check(Limit::PaxBytesPerEntry, size, at)?;
        self.pax_bytes = self.pax_bytes.saturating_add(size);
        self.check(Limit::PaxBytesPerLayer, self.pax_bytes, at)?;
        let mut data = vec![0u8; size as usize];
        self.fill(&mut data)?;
        self.keep(&data);
        self.read_padding(padding(size))?;
        Ok(data)
    }

    /// Skips what the caller left of the current file's contents, then keeps its padding.
    fn skip_contents(&mut self) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while self.remaining > 0 {
            let want = self.remaining.min(buf.len() as u64) as usize;
            let n = self.read(&mut buf[..want]).map_err(|e| self.io(e))?;
            debug_assert!(n > 0, "read reports a truncated file as an error");
        }
        let padding = std::mem::take(&mut self.padding);
        self.read_padding(padding)
    }

    fn read_padding(&mut self, len: u64) -> Result<(), TarError> {
        let mut pad = [0u8; BLOCK];
        let pad = &mut pad[..len as usize];
        self.fill(pad)?;
        self.keep(pad);
        Ok(())
    }

    /// Reads one block (kept raw); `false` at a clean end of stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(TarError::Truncated {
                        offset: self.offset + filled as u64,
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        self.offset += BLOCK as u64;
        self.keep(block);
        Ok(true)
    }

    /// Keeps the rest of the stream after the end-of-archive block, refusing too much.
    fn read_trailer(&mut self) -> Result<(), TarError> {
        let start = self.offset;
        let mut rest = Vec::new();
        (&mut self.inner)
            .take(MAX_TRAILER + 1)
            .read_to_end(&mut rest)
            .map_err(|e| self.io(e))?;
        self.offset += rest.len() as u64;
        if rest.len() as u64 > MAX_TRAILER {
            return Err(TarError::TrailingData {
                offset: start,
                size: rest.len() as u64,
            });
        }
        self.keep(&rest);
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes (not kept).
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(TarError::Truncated {
                offset: self.offset,
            }),
            Err(e) => Err(self.io(e)),
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        if let Some(raw) = &mut self.raw {
            raw.extend_from_slice(bytes);
        }
    }

    fn io(&self, source: io::Error) -> TarError {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            return TarError::Truncated {
                offset: self.offset,
            };
        }
        TarError::Io {
            offset: self.offset,
            source,
        }
    }
}

/// The current file's contents; end of file after the last byte.
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
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Bytes of padding after `size` bytes of data.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn bad(offset: u64, field: &'static str) -> TarError {
    TarError::BadField { offset, field }
}

//! The tar dialects OCI layers use, read as a stream: ustar, PAX (records split by their
//! lengths, so binary xattr values keep every byte), GNU long names and base-256 numbers.
//!
//! [`TarReader`] yields one [`Header`] per entry with its extensions resolved and its path
//! cleaned; a regular file's contents are then read from the reader itself. Asked to
//! ([`TarReader::keep_raw`]), it also keeps every byte that is not file content (header
//! blocks, extension records, padding, the end-of-archive trailer) for a caller that must
//! rebuild the tar bit for bit.
//!
//! The tar is untrusted. What one reader accepts, every consumer accepts, so the layer store's
//! import and the applier cannot disagree about a layer:
//! - a header's checksum may be the unsigned or the signed sum of its bytes (GNU tar accepts
//!   both; old writers used the signed one);
//! - extension records, xattrs and entries are bounded by [`Limits`](crate::Limits): one PAX
//!   or long-name record, the layer's extension bytes (a global header counts once for every
//!   entry it applies to), xattr bytes per entry and per layer, entries per layer;
//! - paths are cleaned by [`path::clean`](crate::path::clean) (`..` and NUL refused), and so
//!   are hard-link targets;
//! - whiteout names must name something (`.wh.` alone, `.wh..`, `.wh..wh.x` are refused);
//! - entry types other than files, directories, links, devices and FIFOs are refused by name;
//! - no entry may lie below something of the same layer that is not a directory, and a hard
//!   link that names something of the same layer must name a regular file (one that names
//!   nothing of this layer is [`LinkTarget::Below`]: the caller decides);
//! - at most 1 MiB may follow the end-of-archive marker.

mod block;
mod held;
pub mod pax;
mod reader;

use std::io;

pub use reader::TarReader;

use crate::limits::Limit;

/// The size of a tar block: headers, and the unit data is padded to.
pub const BLOCK: usize = 512;

/// A modification time with nanoseconds (PAX `mtime` may carry a fraction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Time {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, below 10⁹.
    pub nsec: u32,
}

/// What a hard link's target is, as far as the layer itself tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkTarget {
    /// A regular file that this layer holds at that point.
    ThisLayer,
    /// Nothing this layer holds: a file of a layer below, or nothing at all.
    Below,
}

/// The type of an entry, with what only that type carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryType {
    /// A regular file; its contents ([`Header::size`] bytes) are read from the reader.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to `target` (as written: it may be absolute or climb).
    Symlink {
        /// The link's contents.
        target: Vec<u8>,
    },
    /// A hard link to `target`, a clean path of the layer.
    Hardlink {
        /// The path it names.
        target: Vec<u8>,
        /// Whether the layer itself holds that file.
        held: LinkTarget,
    },
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One entry of a layer, its PAX and GNU extensions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The clean path ([`path::clean`](crate::path::clean)); empty for the layer root.
    pub path: Vec<u8>,
    /// The type.
    pub kind: EntryType,
    /// Permission bits, with setuid, setgid and sticky (`& 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Time,
    /// Extended attributes (PAX `SCHILY.xattr.*`), sorted by name, one value per name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of contents: those of a regular file, 0 for every other type.
    pub size: u64,
    /// Offset in the tar of the entry's first header block (its extensions' included).
    pub offset: u64,
}

/// What a whiteout entry hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// `dir/.wh..wh..opq`: everything the layers below hold in `dir`.
    Opaque {
        /// The directory made opaque (empty for the root).
        dir: &'a [u8],
    },
    /// `parent/.wh.name`: `name` in `parent`, of the layers below.
    Hides {
        /// The directory holding it (empty for the root).
        parent: &'a [u8],
        /// The name hidden.
        name: &'a [u8],
    },
}

impl Header {
    /// What this entry hides if it is a whiteout (its name starts with
    /// [`WHITEOUT_PREFIX`](strata_cow::conventions::WHITEOUT_PREFIX)); the reader has already
    /// refused whiteouts that name nothing.
    pub fn whiteout(&self) -> Option<Whiteout<'_>> {
        use strata_cow::conventions::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
        let (parent, name) = crate::path::split(&self.path);
        if name == OPAQUE_WHITEOUT {
            return Some(Whiteout::Opaque { dir: parent });
        }
        let name = name.strip_prefix(WHITEOUT_PREFIX)?;
        Some(Whiteout::Hides { parent, name })
    }
}

/// A layer tar that cannot be read. Offsets count bytes of the uncompressed tar.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// Reading the stream failed (including decompression).
    #[error("reading the tar at offset {offset}")]
    Io {
        /// Where.
        offset: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The stream ends inside a header block, an extension record or an entry's contents.
    #[error("the tar ends inside an entry at offset {offset}")]
    Truncated {
        /// Where it ends.
        offset: u64,
    },
    /// Reading or storing a regular file's contents failed.
    #[error("reading the contents of tar entry {path:?} (at offset {offset})")]
    EntryData {
        /// The entry.
        path: String,
        /// Offset of its contents.
        offset: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A header block's checksum is neither its unsigned nor its signed sum.
    #[error("tar header at offset {offset} has a bad checksum")]
    BadChecksum {
        /// Offset of the header block.
        offset: u64,
    },
    /// A header field or extension record does not parse.
    #[error("tar header at offset {offset}: bad {field} field")]
    BadField {
        /// Offset of the entry's first header.
        offset: u64,
        /// Which field.
        field: &'static str,
    },
    /// An entry path (or hard-link target) leaves the layer root, or holds a NUL byte (or a
    /// hard link names the root).
    #[error("tar entry {path:?} at offset {offset} escapes the layer root")]
    UnsafePath {
        /// The path as written.
        path: String,
        /// Offset of the entry's first header.
        offset: u64,
    },
    /// A whiteout that names nothing (`.wh.`, `.wh..`, `.wh..wh.x`).
    #[error("tar entry {path:?} at offset {offset} is not a valid whiteout")]
    InvalidWhiteout {
        /// The entry.
        path: String,
        /// Offset of the entry's first header.
        offset: u64,
    },
    /// An entry type layers may not carry (sparse files, volume labels, …).
    #[error("tar entry {path:?} at offset {offset} has unsupported type {entry_type:?}")]
    Unsupported {
        /// The entry.
        path: String,
        /// The type flag byte.
        entry_type: char,
        /// Offset of the entry's first header.
        offset: u64,
    },
    /// An entry for the layer root that is not a directory.
    #[error("tar entry at offset {offset} makes the layer root something other than a directory")]
    RootNotDirectory {
        /// Offset of the entry's first header.
        offset: u64,
    },
    /// A hard link to itself, or to something of the layer that is not a regular file.
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
        /// Offset of the entry's first header.
        offset: u64,
    },
    /// Too many bytes follow the end-of-archive marker.
    #[error("{size} bytes of data follow the end of the tar at offset {offset}")]
    TrailingData {
        /// Where they start.
        offset: u64,
        /// How many were read before giving up.
        size: u64,
    },
    /// The layer goes over one of the reader's [`Limits`](crate::Limits).
    #[error(
        "tar entry at offset {offset}: {limit} would be {value}, over the limit of {max} \
         (raise it only for a trusted source)"
    )]
    OverLimit {
        /// Which limit.
        limit: Limit,
        /// Offset of the entry's first header.
        offset: u64,
        /// What the layer would need.
        value: u64,
        /// The limit.
        max: u64,
    },
}

/// Lossy text of a path, for errors.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

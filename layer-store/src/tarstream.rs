//! Splits a layer tar into what export needs to rebuild it bit for bit (every header block,
//! extension record and padding byte, verbatim) and what materialization needs (entries), while
//! regular files' contents go to a caller-supplied sink (the object store).
//!
//! The tar is read by [`strata_codec::tar::TarReader`], the reader `apply` uses too, so the
//! two accept the same layers. The store refuses what the reader leaves to its caller, a hard
//! link to a file the layer does not hold ([`LinkTarget::Below`]), since a layer's tree is
//! built alone; so applying such a layer onto an empty directory fails too.

use std::io::Read;

pub use strata_codec::path::clean as normalize;
pub use strata_codec::tar::TarError;
use strata_codec::tar::{EntryType, Header, LinkTarget, TarReader};

use crate::object::ObjectId;
use crate::record::{Chunk, Entry, EntryKind, Time};
use strata_codec::Limits;

/// The parts of a layer tar: its byte stream with file contents as objects, and its entries.
#[derive(Debug, Default)]
pub struct Parts {
    /// The byte stream.
    pub stream: Vec<Chunk>,
    /// The entries, in order.
    pub entries: Vec<Entry>,
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
    pub fn read_error(&self, source: std::io::Error) -> TarError {
        TarError::EntryData {
            path: String::from_utf8_lossy(self.path).into_owned(),
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
    let mut tar = TarReader::new(reader, *limits).keep_raw();
    let mut parts = Parts::default();
    // Header blocks of consecutive entries without contents stay one raw chunk.
    let mut raw = Vec::new();
    while let Some(header) = tar.next_entry()? {
        let taken = tar.take_raw();
        if raw.is_empty() {
            raw = taken;
        } else {
            raw.extend_from_slice(&taken);
        }
        let kind = match &header.kind {
            EntryType::File => {
                if !raw.is_empty() {
                    parts.stream.push(Chunk::Raw(std::mem::take(&mut raw)));
                }
                let data = FileData {
                    path: &header.path,
                    size: header.size,
                    offset: tar.offset(),
                };
                let object = store_file(&mut (&mut tar).take(header.size), data)?;
                parts.stream.push(Chunk::Object {
                    id: object,
                    size: header.size,
                });
                EntryKind::File {
                    object,
                    size: header.size,
                }
            }
            EntryType::Hardlink { target, held } => {
                // A whiteout's type means nothing: only a real link must name a file it holds.
                if *held != LinkTarget::ThisLayer && header.whiteout().is_none() {
                    return Err(TarError::DanglingHardlink {
                        path: String::from_utf8_lossy(&header.path).into_owned(),
                        target: String::from_utf8_lossy(target).into_owned(),
                    }
                    .into());
                }
                EntryKind::Hardlink {
                    target: target.clone(),
                }
            }
            other => entry_kind(other),
        };
        parts.entries.push(entry(header, kind));
    }
    raw.extend_from_slice(&tar.take_raw());
    if !raw.is_empty() {
        parts.stream.push(Chunk::Raw(raw));
    }
    Ok(parts)
}

/// The record's kind for an entry without contents or links.
fn entry_kind(kind: &EntryType) -> EntryKind {
    match kind {
        EntryType::Symlink { target } => EntryKind::Symlink {
            target: target.clone(),
        },
        EntryType::CharDevice { major, minor } => EntryKind::CharDevice {
            major: *major,
            minor: *minor,
        },
        EntryType::BlockDevice { major, minor } => EntryKind::BlockDevice {
            major: *major,
            minor: *minor,
        },
        EntryType::Fifo => EntryKind::Fifo,
        _ => EntryKind::Dir,
    }
}

fn entry(header: Header, kind: EntryKind) -> Entry {
    Entry {
        path: header.path,
        kind,
        mode: header.mode,
        uid: header.uid,
        gid: header.gid,
        mtime: Time {
            sec: header.mtime.sec,
            nsec: header.mtime.nsec,
        },
        xattrs: header.xattrs,
    }
}

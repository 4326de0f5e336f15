//! Walks a change set in order and writes its tar entries.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::header::{EntryHeader, TypeFlag, padding, write_header, write_trailer};
use super::pipe::ChunkWriter;
use super::source::Source;
use super::{WriteError, WriteOptions};
use crate::change::{ChangeKind, ChangeSet};
use crate::meta::{FileKind, Meta};
use strata_cow::conventions::WHITEOUT_PREFIX;

struct Emitter<'a, 'c> {
    source: Source<'a>,
    options: &'a WriteOptions,
    out: &'a mut ChunkWriter<'c>,
    /// Every archive path written, so that none is written twice.
    written: HashSet<PathBuf>,
    /// The first path written for each (dev, ino) of a hardlinked file.
    links: HashMap<(u64, u64), PathBuf>,
}

pub(crate) fn emit(
    set: &ChangeSet,
    options: &WriteOptions,
    out: &mut ChunkWriter<'_>,
) -> Result<(), WriteError> {
    let mut emitter = Emitter {
        source: Source::open(&set.source)?,
        options,
        out,
        written: HashSet::new(),
        links: HashMap::new(),
    };
    for change in &set.changes {
        let path = change.path.as_path();
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(WriteError::ReservedName {
                path: set.source.join(path),
            });
        }
        emitter.parents(path)?;
        match (&change.kind, &change.meta) {
            (ChangeKind::Deleted, _) | (_, None) => emitter.whiteout(path)?,
            (_, Some(meta)) => emitter.entry(path, meta)?,
        }
    }
    write_trailer(&mut emitter.out).map_err(WriteError::Output)
}

impl Emitter<'_, '_> {
    /// Writes each ancestor directory of `path` not written yet, from the source tree.
    fn parents(&mut self, path: &Path) -> Result<(), WriteError> {
        let ancestors: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .collect();
        for dir in ancestors.into_iter().rev() {
            if self.written.contains(dir) {
                continue;
            }
            let meta = self.source.dir_meta(dir)?;
            self.entry(dir, &meta)?;
        }
        Ok(())
    }

    fn whiteout(&mut self, path: &Path) -> Result<(), WriteError> {
        let mut name = WHITEOUT_PREFIX.to_vec();
        name.extend_from_slice(path.file_name().unwrap_or_default().as_bytes());
        let whiteout = path.with_file_name(std::ffi::OsStr::from_bytes(&name));
        if !self.written.insert(whiteout.clone()) {
            return Ok(());
        }
        self.header(&EntryHeader {
            path: whiteout.as_os_str().as_bytes(),
            flag: TypeFlag::File,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        })
    }

    fn entry(&mut self, path: &Path, meta: &Meta) -> Result<(), WriteError> {
        if !self.written.insert(path.to_path_buf()) {
            return Ok(());
        }
        let (flag, size) = match meta.kind {
            FileKind::File => (TypeFlag::File, meta.size),
            FileKind::Dir => (TypeFlag::Dir, 0),
            FileKind::Symlink => (TypeFlag::Symlink, 0),
            FileKind::CharDevice => (TypeFlag::Char, 0),
            FileKind::BlockDevice => (TypeFlag::Block, 0),
            FileKind::Fifo => (TypeFlag::Fifo, 0),
            FileKind::Socket => {
                tracing::warn!(path = %self.source.full(path).display(), "skipping a socket");
                return Ok(());
            }
        };
        let mut archive_path = path.as_os_str().as_bytes().to_vec();
        if flag == TypeFlag::Dir {
            archive_path.push(b'/');
        }
        let xattrs = layer_xattrs(&meta.xattrs);
        let mut header = EntryHeader {
            path: &archive_path,
            flag,
            mode: meta.mode,
            uid: meta.uid.into(),
            gid: meta.gid.into(),
            size,
            mtime: match self.options.source_date_epoch {
                Some(epoch) => meta.mtime.sec.min(epoch),
                None => meta.mtime.sec,
            },
            link: meta.link_target.as_deref().unwrap_or_default(),
            dev_major: rustix::fs::major(meta.rdev),
            dev_minor: rustix::fs::minor(meta.rdev),
            xattrs: &xattrs,
        };
        let first_link;
        if flag == TypeFlag::File && meta.nlink > 1 {
            match self.links.get(&(meta.dev, meta.ino)) {
                Some(first) => {
                    first_link = first.as_os_str().as_bytes().to_vec();
                    header.flag = TypeFlag::Link;
                    header.size = 0;
                    header.link = &first_link;
                    return self.header(&header);
                }
                None => {
                    self.links.insert((meta.dev, meta.ino), path.to_path_buf());
                }
            }
        }
        self.header(&header)?;
        if flag == TypeFlag::File {
            self.data(path, meta)?;
        }
        Ok(())
    }

    fn header(&mut self, header: &EntryHeader<'_>) -> Result<(), WriteError> {
        write_header(&mut self.out, header).map_err(WriteError::Output)
    }

    /// Copies exactly `meta.size` bytes of the source file `path`, then the block padding.
    fn data(&mut self, path: &Path, meta: &Meta) -> Result<(), WriteError> {
        let size = meta.size;
        let mut file = self.source.file(path, meta)?;
        // The full path only when there is an error to name it in.
        let root = self.source.root_path();
        let read_err = |source: io::Error| WriteError::Read {
            path: root.join(path),
            source,
        };
        let mut left = size;
        while left > 0 {
            let spare = self.out.spare().map_err(WriteError::Output)?;
            let want = usize::try_from(left).map_or(spare.len(), |left| left.min(spare.len()));
            // Straight into the chunk the consumer hashes: no copy of our own.
            let n = match file.read(&mut spare[..want]) {
                Ok(0) => {
                    return Err(WriteError::Changed {
                        path: root.join(path),
                        expected: size,
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            self.out.advance(n);
            left -= n as u64;
        }
        self.out
            .write_all(&[0u8; 512][..padding(size)])
            .map_err(WriteError::Output)
    }
}

/// The xattrs a layer carries: no overlay markers (already split off by `Meta`), no SELinux
/// label (the host's policy relabels), and file capabilities as v2 (v3 binds them to a user
/// namespace's root, which the layer's consumer does not share).
fn layer_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    xattrs
        .iter()
        .filter(|(name, _)| name.as_slice() != b"security.selinux")
        .map(|(name, value)| {
            if name.as_slice() == b"security.capability" {
                (name.clone(), capability_v2(value))
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect()
}

const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// A `security.capability` value as v2: a v3 value (24 bytes, with a root uid) loses its root
/// uid; anything else is kept as is.
pub(crate) fn capability_v2(value: &[u8]) -> Vec<u8> {
    let Some(magic) = value.get(..4) else {
        return value.to_vec();
    };
    let magic = u32::from_le_bytes(magic.try_into().expect("4 bytes"));
    if magic & VFS_CAP_REVISION_MASK != VFS_CAP_REVISION_3 || value.len() != 24 {
        return value.to_vec();
    }
    let mut v2 = Vec::with_capacity(20);
    v2.extend_from_slice(&(VFS_CAP_REVISION_2 | (magic & VFS_CAP_FLAGS_EFFECTIVE)).to_le_bytes());
    v2.extend_from_slice(&value[4..20]);
    v2
}

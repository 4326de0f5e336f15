//! The source tree of a layer, read through directory handles only.
//!
//! A running container owns its upper dir while its layer is written: it can swap a directory
//! for a symlink to a host directory at any moment (`renameat2(RENAME_EXCHANGE)` in a loop), so
//! opening `source/a/b/file` by path, even with `O_NOFOLLOW` on the last component, may read a
//! host file into the layer (moby's CVE-2018-15664). Here every directory of a path is opened
//! from its parent's handle with `O_NOFOLLOW`, and every file opened is checked to be the very
//! inode (dev, ino) the diff walk recorded; anything else is [`WriteError::Swapped`].

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::WriteError;
use crate::dir::open_dir;
use crate::meta::{FileKind, Meta};

/// The source root and the chain of directories open below it.
pub(super) struct Source<'a> {
    path: &'a Path,
    root: OwnedFd,
    /// The directories from the root down to the last one used, each opened from the one
    /// before. Entries come in walk order, so consecutive entries share most of this chain and
    /// each directory is opened once, not once per file below it.
    open: Vec<(OsString, OwnedFd)>,
}

impl<'a> Source<'a> {
    /// Opens the source root `path` (which the caller names, so a symlink to it is refused
    /// like everywhere in a diff walk).
    pub(super) fn open(path: &'a Path) -> Result<Self, WriteError> {
        let root = open_dir(CWD, path).map_err(|source| WriteError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Source {
            path,
            root,
            open: Vec::new(),
        })
    }

    /// The source root's path, for messages.
    pub(super) fn root_path(&self) -> &'a Path {
        self.path
    }

    /// The full path of `rel`, for messages.
    pub(super) fn full(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// The metadata of the directory `rel`, read from its parent's handle.
    pub(super) fn dir_meta(&mut self, rel: &Path) -> Result<Meta, WriteError> {
        let full = self.full(rel);
        let (parent, name) = split(rel, &full)?;
        let dir = self.dir(parent)?;
        // The fallback for kernels without `listxattrat` goes by path: the parent's handle
        // through /proc, so no component is resolved by name again.
        let by_fd = || {
            let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            path.push(OsStr::from_bytes(name.to_bytes()));
            path
        };
        let meta = Meta::load(dir, &name, by_fd).map_err(|e| classify(&full, e))?;
        if meta.kind != FileKind::Dir {
            return Err(WriteError::Swapped { path: full });
        }
        Ok(meta)
    }

    /// Opens the regular file `rel` and checks that it is the inode `meta` describes.
    ///
    /// # References
    /// - [`openat(2)`](https://man7.org/linux/man-pages/man2/openat.2.html)
    pub(super) fn file(&mut self, rel: &Path, meta: &Meta) -> Result<File, WriteError> {
        // Paths for messages are built only on an error: this runs once per file.
        let root = self.path;
        let full = || root.join(rel);
        let name = rel.file_name().ok_or_else(|| WriteError::Read {
            path: full(),
            source: io::ErrorKind::InvalidInput.into(),
        })?;
        let dir = self.dir(rel.parent().unwrap_or(Path::new("")))?;
        // NONBLOCK: a fifo swapped in must not hang the writer (the check below refuses it).
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
            .map_err(|e| classify(&full(), e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| WriteError::Read {
            path: full(),
            source: e.into(),
        })?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
            || stat.st_dev != meta.dev
            || stat.st_ino != meta.ino
        {
            return Err(WriteError::Swapped { path: full() });
        }
        Ok(File::from(fd))
    }

    /// The handle of directory `rel`, opening what the chain does not hold yet.
    fn dir(&mut self, rel: &Path) -> Result<BorrowedFd<'_>, WriteError> {
        let mut depth = 0;
        for component in rel.components() {
            let Component::Normal(name) = component else {
                return Err(WriteError::Read {
                    path: self.full(rel),
                    source: io::ErrorKind::InvalidInput.into(),
                });
            };
            if self.open.get(depth).is_some_and(|(open, _)| open == name) {
                depth += 1;
                continue;
            }
            self.open.truncate(depth);
            let parent = self
                .open
                .last()
                .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
            let fd = open_dir(parent, name).map_err(|e| {
                let walked: PathBuf = self.open.iter().map(|(n, _)| n.as_os_str()).collect();
                classify(&self.path.join(walked).join(name), e)
            })?;
            self.open.push((name.to_owned(), fd));
            depth += 1;
        }
        self.open.truncate(depth);
        Ok(self
            .open
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd()))
    }
}

/// `rel` as its parent and its last name.
fn split<'r>(rel: &'r Path, full: &Path) -> Result<(&'r Path, CString), WriteError> {
    let invalid = |kind: io::ErrorKind| WriteError::Read {
        path: full.to_path_buf(),
        source: kind.into(),
    };
    let name = rel
        .file_name()
        .ok_or_else(|| invalid(io::ErrorKind::InvalidInput))?;
    let name = CString::new(name.as_bytes()).map_err(|_| invalid(io::ErrorKind::InvalidInput))?;
    Ok((rel.parent().unwrap_or(Path::new("")), name))
}

/// A symlink where the walk saw a directory or a file (`ELOOP` under `O_NOFOLLOW`), or a
/// non-directory where it saw one, is a swap; anything else a read error.
fn classify(full: &Path, source: io::Error) -> WriteError {
    match source.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::LOOP | Errno::NOTDIR) => WriteError::Swapped {
            path: full.to_path_buf(),
        },
        _ => WriteError::Read {
            path: full.to_path_buf(),
            source,
        },
    }
}

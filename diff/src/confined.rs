//! A directory that image content is written into, as a handle, and the operations that keep
//! every write inside it. The applier and the layer store's materializer both build trees
//! through it.
//!
//! Paths are resolved by the kernel with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`:
//! `..`, absolute symlinks and symlink chains are all confined to the root, so no name in a
//! layer can reach outside it. Final components are then handled with `*at` calls that do not
//! follow symlinks.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::dir::{open_dir, sorted_names};

/// An open directory inside which every path is resolved by the kernel.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    /// One cached parent directory: layers list a directory's entries together. Shared, so
    /// that a caller holds it without a `dup`.
    cached: Option<(PathBuf, Arc<OwnedFd>)>,
}

impl Root {
    /// Opens the directory at `path` (refusing a symlink there).
    pub fn open(path: &Path) -> io::Result<Root> {
        Ok(Root {
            fd: open_dir(CWD, path)?,
            cached: None,
        })
    }

    /// The directory `rel` (relative to the root, resolved inside it), or `NotFound`.
    ///
    /// # References
    /// - [`openat2(2)`](https://man7.org/linux/man-pages/man2/openat2.2.html)
    pub fn dir(&mut self, rel: &Path) -> io::Result<Arc<OwnedFd>> {
        if let Some((path, fd)) = &self.cached {
            if path == rel {
                return Ok(Arc::clone(fd));
            }
        }
        let fd = Arc::new(self.open_dir(rel)?);
        self.cached = Some((rel.to_path_buf(), Arc::clone(&fd)));
        Ok(fd)
    }

    /// The directory `rel` (resolved inside the root) as a fresh `O_PATH` handle, without the
    /// cache: for callers on several threads.
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return Ok(rustix::fs::openat(
                &self.fd,
                c".",
                dir_flags(),
                Mode::empty(),
            )?);
        }
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        Ok(rustix::fs::openat2(
            &self.fd,
            rel,
            dir_flags(),
            Mode::empty(),
            resolve,
        )?)
    }

    /// Like [`Root::dir`], creating missing directories (mode 0755) on the way.
    pub fn dir_creating(&mut self, rel: &Path) -> io::Result<Arc<OwnedFd>> {
        match self.dir(rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            let parent = self.open_dir(&prefix)?;
            match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => rustix::fs::chmodat(
                    &parent,
                    name,
                    Mode::from_raw_mode(0o755),
                    AtFlags::empty(),
                )?,
                Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            prefix.push(name);
        }
        self.dir(rel)
    }

    /// Forgets cached handles: after a removal, a cached directory may no longer be the one
    /// its path names.
    pub fn invalidate(&mut self) {
        self.cached = None;
    }
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// The `lstat` type of `name` in `dir`, or `None` when it does not exist.
pub fn file_type_at(dir: impl AsFd, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `dir`, with everything below it if it is a directory. Never follows a
/// symlink: a symlink is removed, not its target.
///
/// # References
/// - [`unlinkat(2)`](https://man7.org/linux/man-pages/man2/unlinkat.2.html)
pub fn remove_all_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let child = open_dir(dir.as_fd(), name)?;
    remove_children(&child, |_| true)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes every child of the directory `dir` for which `remove(name)` says so.
fn remove_children(dir: &OwnedFd, remove: impl Fn(&CStr) -> bool) -> io::Result<()> {
    for name in sorted_names(dir)? {
        if remove(&name) {
            remove_all_at(dir, OsStr::from_bytes(name.to_bytes()))?;
        }
    }
    Ok(())
}

/// The path under `/proc/self/fd` that names `name` inside the open directory `dir`: the
/// kernel resolves the fd itself, never the path it was opened by. Used for the xattr calls,
/// which have no `*at` form.
pub fn proc_path(dir: impl AsFd, name: &OsStr) -> PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_fd().as_raw_fd().to_string())
        .join(name)
}

//! A directory output (an exported layout, a saved archive's tree) staged next to its
//! destination and renamed into place whole, safe in a parent that others can write, such as
//! `/tmp`.
//!
//! Nothing is ever resolved by a name someone else could plant: the staging directory gets a
//! fresh random name, is created `0700` and opened `O_NOFOLLOW` and checked to be ours, and
//! everything in it is created relative to directory handles with `O_EXCL | O_NOFOLLOW`. The
//! final `renameat2(RENAME_NOREPLACE)` refuses a destination that appeared meanwhile (a
//! symlink, a directory, a file) instead of replacing or following it.
//!
//! The staging directory sits next to the destination rather than in the store's `tmp/`
//! because only a rename inside one file system is atomic, and the destination may be anywhere.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::error::{IoContext, StoreError};

/// Attempts at a free random staging name before giving up.
const ATTEMPTS: usize = 16;

/// A staging directory that becomes `dest` on [`publish`](Self::publish), and is removed if
/// dropped unpublished.
#[derive(Debug)]
pub(crate) struct StagedDir {
    parent: OwnedFd,
    parent_path: PathBuf,
    staging: OsString,
    dest: OsString,
    root: OwnedFd,
    published: bool,
}

impl StagedDir {
    /// Creates a fresh staging directory next to `dest`, which must not exist.
    ///
    /// # References
    /// - [`mkdirat(2)`](https://man7.org/linux/man-pages/man2/mkdirat.2.html)
    pub(crate) fn create(dest: &Path) -> Result<StagedDir, StoreError> {
        let invalid = || StoreError::Io {
            path: dest.to_path_buf(),
            source: io::ErrorKind::InvalidInput.into(),
        };
        let name = dest.file_name().ok_or_else(invalid)?;
        let parent_path = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // The parent is the caller's own choice of place, so it is opened like any path given.
        let parent = rustix::fs::openat(
            CWD,
            &parent_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .at(&parent_path)?;
        match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {
                return Err(StoreError::Io {
                    path: dest.to_path_buf(),
                    source: io::ErrorKind::AlreadyExists.into(),
                });
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e).at(dest),
        }
        let mut attempt = 0;
        let staging = loop {
            let mut staging = OsString::from(".");
            staging.push(name);
            staging.push(format!(".strata-staging.{}", random_hex()));
            match rustix::fs::mkdirat(&parent, &staging, Mode::RWXU) {
                Ok(()) => break staging,
                Err(Errno::EXIST) if attempt + 1 < ATTEMPTS => attempt += 1,
                Err(e) => return Err(e).at(&parent_path.join(&staging)),
            }
        };
        let staging_path = parent_path.join(&staging);
        let root = match open_own_dir(&parent, &staging) {
            Ok(root) => root,
            Err(e) => {
                // Only an entry we made may be removed, and only if it is still a directory.
                let _ = rustix::fs::unlinkat(&parent, &staging, AtFlags::REMOVEDIR);
                return Err(e).at(&staging_path);
            }
        };
        Ok(StagedDir {
            parent,
            parent_path,
            staging,
            dest: name.to_owned(),
            root,
            published: false,
        })
    }

    /// The staging directory's handle, to create the output in.
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The staging directory's path, for messages.
    pub(crate) fn path(&self) -> PathBuf {
        self.parent_path.join(&self.staging)
    }

    /// Makes the staging directory readable by all (`0755`) and renames it to the
    /// destination, which must still not exist.
    ///
    /// # References
    /// - [`renameat2(2)`](https://man7.org/linux/man-pages/man2/rename.2.html)
    pub(crate) fn publish(mut self) -> Result<(), StoreError> {
        let dest = self.parent_path.join(&self.dest);
        rustix::fs::fchmod(&self.root, Mode::from_raw_mode(0o755)).at(&self.path())?;
        rustix::fs::renameat_with(
            &self.parent,
            &self.staging,
            &self.parent,
            &self.dest,
            RenameFlags::NOREPLACE,
        )
        .at(&dest)?;
        self.published = true;
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.published {
            // Never follows a symlink, so a swapped-in one at worst is what gets removed.
            let _ = std::fs::remove_dir_all(self.path());
        }
    }
}

/// Opens the directory `name` in `dir` without following a symlink, and checks that it is
/// ours: a directory another user planted there would let them see and change the output.
fn open_own_dir(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory
        || stat.st_uid != rustix::process::geteuid().as_raw()
    {
        return Err(io::ErrorKind::PermissionDenied.into());
    }
    Ok(fd)
}

/// Creates the directory `name` in `dir` and opens it, never following a symlink.
pub(crate) fn create_dir_at(dir: impl AsFd, name: &str) -> io::Result<OwnedFd> {
    rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755))?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Creates the new file `name` in `dir` for writing: fails if anything already has that name,
/// a symlink included.
pub(crate) fn create_file_at(dir: impl AsFd, name: &str) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o644))?;
    Ok(File::from(fd))
}

/// Renames `from` to `to` inside `dir`, refusing to replace anything.
pub(crate) fn rename_at(dir: impl AsFd, from: &str, to: &str) -> io::Result<()> {
    let dir = dir.as_fd();
    Ok(rustix::fs::renameat_with(
        dir,
        from,
        dir,
        to,
        RenameFlags::NOREPLACE,
    )?)
}

/// 64 random bits in hex: std's hasher keys come from the OS random source.
fn random_hex() -> String {
    let bits = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{bits:016x}")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn a_destination_that_appears_before_publish_is_neither_replaced_nor_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (dest, outside) = (tmp.path().join("out"), tmp.path().join("outside"));
        std::fs::create_dir(&outside).unwrap();
        let staged = StagedDir::create(&dest).unwrap();
        create_file_at(staged.root(), "index.json").unwrap();
        let staging = staged.path();
        symlink(&outside, &dest).unwrap();
        let err = staged.publish().unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert!(std::fs::symlink_metadata(&dest).unwrap().is_symlink());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(!staging.exists(), "the unpublished staging dir is removed");
    }

    #[test]
    fn names_are_fresh_and_files_never_replace_or_follow_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        let (a, b) = (
            StagedDir::create(&dest).unwrap(),
            StagedDir::create(&dest).unwrap(),
        );
        assert_ne!(a.path(), b.path());
        symlink(tmp.path().join("victim"), a.path().join("planted")).unwrap();
        let err = create_file_at(a.root(), "planted").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!tmp.path().join("victim").exists());
        a.publish().unwrap();
        assert!(dest.join("planted").is_symlink());
        drop(b);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_someone_else_owns_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        let ours = rustix::process::geteuid().as_raw();
        let other = ours.wrapping_add(1);
        if std::os::unix::fs::chown(&theirs, Some(other), None).is_err() {
            // Not root: a directory we create is always ours, nothing to check.
            return;
        }
        let parent = std::fs::File::open(tmp.path()).unwrap();
        let err = open_own_dir(&parent, OsStr::new("theirs")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }
}

//! Staging directories under `tmp/`, each owned by one [`Store`](crate::Store) handle.
//!
//! A handle makes `tmp/<pid>.<random>/` the first time it stages anything and holds a shared
//! `flock` on it for its life. GC removes an entry of `tmp/` only while it holds an exclusive
//! `flock` on it, which it cannot get while the owner lives: so no process ever removes the
//! staging of another (or of another handle in the same process) that is in use, and what a
//! crashed process left is removed by the next GC.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::error::{IoContext, StoreError};

/// A handle's own directory under `tmp/`; removed when dropped.
#[derive(Debug)]
pub(crate) struct OwnedTmp {
    dir: PathBuf,
    /// Holds the shared lock that keeps GC away.
    _lock: File,
}

impl OwnedTmp {
    /// Makes and locks a fresh directory in `tmp`.
    pub(crate) fn create(tmp: &Path) -> Result<OwnedTmp, StoreError> {
        loop {
            let dir = tempfile::Builder::new()
                .prefix(&format!("{}.", std::process::id()))
                .rand_bytes(10)
                .tempdir_in(tmp)
                .map(tempfile::TempDir::keep)
                .at(tmp)?;
            let lock = match File::open(&dir) {
                Ok(lock) => lock,
                // A GC removed it before we could lock it: make another.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&dir),
            };
            rustix::fs::flock(&lock, FlockOperation::LockShared).at(&dir)?;
            // A GC may have locked and removed the directory between its creation and our
            // lock; once we hold the lock on the directory the path names, no GC can.
            let ours = lock.metadata().at(&dir)?;
            match fs::symlink_metadata(&dir) {
                Ok(now) if (now.dev(), now.ino()) == (ours.dev(), ours.ino()) => {
                    return Ok(OwnedTmp { dir, _lock: lock });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&dir),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for OwnedTmp {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.dir)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), %err, "cannot remove staging dir; gc will");
        }
    }
}

/// An exclusive lock on entry `path` of `tmp/` if nobody holds one: the entry is then
/// abandoned (or a plain scratch entry) and may be removed while the lock is held. `None`:
/// in use by a live handle.
pub(crate) fn claim_abandoned(path: &Path) -> Result<Option<File>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        // Gone meanwhile (its owner dropped it), or a dangling symlink: nothing to keep.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e).at(path),
    }
}

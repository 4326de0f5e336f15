//! The store lock: an `flock` on `<root>/lock`, shared by writers that add (imports,
//! materialization), exclusive for those that remove (GC, fsck repair).

use std::fs::File;
use std::path::Path;

use rustix::fs::FlockOperation;

use crate::error::{IoContext, StoreError};

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once; excludes [`LockMode::Exclusive`].
    Shared,
    /// One holder, nobody else.
    Exclusive,
}

/// A held store lock; dropping it (closing the descriptor) releases it.
#[derive(Debug)]
#[must_use = "the lock is released when the guard drops"]
pub struct LockGuard {
    _file: File,
}

/// Waits for and takes the lock on `path` (created if missing).
///
/// # References
/// - [`flock(2)`](https://man7.org/linux/man-pages/man2/flock.2.html)
pub(crate) fn acquire(path: &Path, mode: LockMode) -> Result<LockGuard, StoreError> {
    let file = open(path)?;
    let op = match mode {
        LockMode::Shared => FlockOperation::LockShared,
        LockMode::Exclusive => FlockOperation::LockExclusive,
    };
    rustix::fs::flock(&file, op).at(path)?;
    Ok(LockGuard { _file: file })
}

/// Takes the lock on `path` if nobody holds it in a conflicting mode; `None` otherwise.
pub(crate) fn try_acquire(path: &Path, mode: LockMode) -> Result<Option<LockGuard>, StoreError> {
    let file = open(path)?;
    let op = match mode {
        LockMode::Shared => FlockOperation::NonBlockingLockShared,
        LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    match rustix::fs::flock(&file, op) {
        Ok(()) => Ok(Some(LockGuard { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e).at(path),
    }
}

/// Waits for and takes an exclusive lock on the directory `dir`, which must exist: for work
/// on one directory that two writers must not do at once.
pub(crate) fn acquire_dir(dir: &Path) -> Result<LockGuard, StoreError> {
    let file = File::open(dir).at(dir)?;
    rustix::fs::flock(&file, FlockOperation::LockExclusive).at(dir)?;
    Ok(LockGuard { _file: file })
}

fn open(path: &Path) -> Result<File, StoreError> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)
}

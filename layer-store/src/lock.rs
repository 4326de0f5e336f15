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
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)?;
    let op = match mode {
        LockMode::Shared => FlockOperation::LockShared,
        LockMode::Exclusive => FlockOperation::LockExclusive,
    };
    rustix::fs::flock(&file, op).at(path)?;
    Ok(LockGuard { _file: file })
}

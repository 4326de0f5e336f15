//! The store lock: an `flock` on `<root>/lock`, shared by writers that add (imports,
//! materialization), exclusive for those that remove (GC, fsck repair).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use rustix::fs::FlockOperation;
use rustix::process::Pid;

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

fn open(path: &Path) -> Result<File, StoreError> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)
}

/// Takes `<root>/db.lock` for one transaction: waits while another transaction holds it, and
/// fails with [`StoreError::InUse`] when a [`DatabaseOwner`] holds it, which may be for hours.
pub(crate) fn acquire_database(root: &Path) -> Result<LockGuard, StoreError> {
    let file = wait_for_database(root)?;
    // Holding the lock, we know no owner is alive: forget a pid that one which crashed left
    // behind, lest a process reusing that pid make later waiters fail with `InUse`.
    file.set_len(0).at(&root.join("db.lock"))?;
    Ok(LockGuard { _file: file })
}

/// `<root>/db.lock`, held for the life of a handle that keeps `strata.redb` open (the
/// snapshotter; redb allows one open handle per file). Its process id is written in the lock
/// file, so that other processes fail with [`StoreError::InUse`] naming it instead of waiting
/// for it forever. Dropping it releases the lock.
#[derive(Debug)]
pub struct DatabaseOwner {
    file: File,
}

impl DatabaseOwner {
    /// Takes `<root>/db.lock` for as long as the returned owner lives, waiting for running
    /// transactions of other processes to finish.
    ///
    /// # Errors
    /// [`StoreError::InUse`] when another owner holds it; the lock file cannot be used.
    ///
    /// # References
    /// - [`flock(2)`](https://man7.org/linux/man-pages/man2/flock.2.html)
    pub fn acquire(root: &Path) -> Result<DatabaseOwner, StoreError> {
        let mut file = wait_for_database(root)?;
        let path = root.join("db.lock");
        file.set_len(0).at(&path)?;
        write!(file, "{}", rustix::process::getpid().as_raw_nonzero()).at(&path)?;
        Ok(DatabaseOwner { file })
    }
}

impl Drop for DatabaseOwner {
    fn drop(&mut self) {
        // Forget our pid before the lock goes with the descriptor. A crash leaves it behind;
        // `live_owner` then finds no such process.
        if let Err(err) = self.file.set_len(0) {
            tracing::warn!(%err, "clearing the owner of db.lock");
        }
    }
}

fn wait_for_database(root: &Path) -> Result<File, StoreError> {
    let path = root.join("db.lock");
    let file = open(&path)?;
    let mut pause = Duration::from_micros(200);
    loop {
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(err) => return Err(err).at(&path),
        }
        if let Some(pid) = live_owner(&file) {
            return Err(StoreError::InUse {
                root: root.to_owned(),
                pid: pid.as_raw_nonzero().get(),
            });
        }
        // Transactions hold the lock for milliseconds. Poll rather than block, so that an
        // owner taking the lock meanwhile is noticed instead of waited for forever.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The live process whose id a [`DatabaseOwner`] wrote in the lock file, if any.
fn live_owner(file: &File) -> Option<Pid> {
    let mut buf = [0u8; 16];
    let len = file.read_at(&mut buf, 0).ok()?;
    let pid: i32 = std::str::from_utf8(&buf[..len]).ok()?.parse().ok()?;
    let pid = Pid::from_raw(pid)?;
    match rustix::process::test_kill_process(pid) {
        Ok(()) | Err(rustix::io::Errno::PERM) => Some(pid),
        Err(_) => None,
    }
}

//! Making what a commit is about to name durable before the database names it.
//!
//! One `syncfs` is the cheapest way to flush thousands of new files, but it also waits for every
//! other process's dirty data on the same file system: on a shared root file system under a
//! build, a syncfs after importing three files took 0.3–1.7 s. So a small batch fsyncs exactly
//! what it wrote, and only a large one (where per-file fsyncs would cost more) uses `syncfs`.
//!
//! Every flush goes through a [`SyncSeam`], so that tests can model a power cut: a seam that
//! remembers only what was flushed, and "reboots" the store from that.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{IoContext, StoreError};

/// The one way the layer store and the snapshotter make writes durable: every fsync of a file
/// or directory, every `syncfs`, and a notice after each committed database transaction (the
/// database flushes itself; the notice says when it has).
///
/// [`KernelSync`] asks the kernel; the default. Another implementation is a test seam
/// ([`Store::with_sync`](crate::Store::with_sync)): it may count the flushes and keep only
/// what was flushed, to check that a store survives a power cut after any of them.
pub trait SyncSeam: Send + Sync + std::fmt::Debug {
    /// Makes the data and metadata of regular file `file` (open at `path`) durable.
    fn sync_file(&self, file: &File, path: &Path) -> io::Result<()>;
    /// Makes the entries of directory `dir` (open at `path`) durable.
    fn sync_dir(&self, dir: &File, path: &Path) -> io::Result<()>;
    /// Makes everything written to the file system holding `root` (open as `fd`) durable.
    fn syncfs(&self, fd: &File, root: &Path) -> io::Result<()>;
    /// The metadata database `db` committed a write transaction durably.
    fn committed(&self, db: &Path) {
        let _ = db;
    }
}

/// The [`SyncSeam`] that asks the kernel: `fsync(2)` and `syncfs(2)`.
///
/// # References
/// - [`fsync(2)`](https://man7.org/linux/man-pages/man2/fsync.2.html)
/// - [`syncfs(2)`](https://man7.org/linux/man-pages/man2/syncfs.2.html)
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelSync;

impl SyncSeam for KernelSync {
    fn sync_file(&self, file: &File, _path: &Path) -> io::Result<()> {
        file.sync_all()
    }

    fn sync_dir(&self, dir: &File, _path: &Path) -> io::Result<()> {
        rustix::fs::fsync(dir).map_err(io::Error::from)
    }

    fn syncfs(&self, fd: &File, _root: &Path) -> io::Result<()> {
        rustix::fs::syncfs(fd).map_err(io::Error::from)
    }
}

/// The seam a store uses unless told otherwise.
pub(crate) fn kernel() -> Arc<dyn SyncSeam> {
    Arc::new(KernelSync)
}

/// Above this many files and directories, one `syncfs` beats an fsync each.
pub(crate) const FSYNC_EACH_MAX: usize = 128;

/// The files and directories one commit wrote.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Regular files and directories to fsync (other entry kinds are covered by their parent
    /// directory's fsync on journaling file systems).
    paths: Vec<PathBuf>,
    /// More than [`FSYNC_EACH_MAX`]: stop collecting, flush the whole file system.
    whole_fs: bool,
}

impl Written {
    /// Adds one file or directory.
    pub(crate) fn add(&mut self, path: PathBuf) {
        if !self.whole_fs {
            self.paths.push(path);
            self.check_size();
        }
    }

    /// Adds `dir` and every regular file and directory below it.
    pub(crate) fn add_tree(&mut self, dir: &Path) -> Result<(), StoreError> {
        self.add(dir.to_path_buf());
        if self.whole_fs {
            return Ok(());
        }
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let kind = entry.file_type().at(&entry.path())?;
            if kind.is_dir() {
                self.add_tree(&entry.path())?;
            } else if kind.is_file() {
                self.add(entry.path());
            }
            if self.whole_fs {
                break;
            }
        }
        Ok(())
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.whole_fs
    }

    fn check_size(&mut self) {
        if self.paths.len() > FSYNC_EACH_MAX {
            self.whole_fs = true;
            self.paths = Vec::new();
        }
    }

    /// Whether [`sync`](Written::sync) will flush the whole file system.
    #[cfg(test)]
    pub(crate) fn is_whole_fs(&self) -> bool {
        self.whole_fs
    }

    /// Flushes what was written through `seam`: an fsync of each path (in parallel, so the
    /// file system can batch them into few journal commits), or one `syncfs` of the file
    /// system holding `root`.
    pub(crate) fn sync(self, root: &Path, seam: &dyn SyncSeam) -> Result<(), StoreError> {
        if self.whole_fs {
            let fd = File::open(root).at(root)?;
            return seam.syncfs(&fd, root).at(root);
        }
        self.paths.par_iter().try_for_each(|path| {
            let file = File::open(path).at(path)?;
            let is_dir = file.metadata().at(path)?.is_dir();
            let synced = if is_dir {
                seam.sync_dir(&file, path)
            } else {
                seam.sync_file(&file, path)
            };
            match synced {
                // Some file systems refuse to fsync a directory; its entries are then as
                // durable as that file system makes them.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
                other => other.at(path),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No flush bypasses the seam: the kernel is asked here only, in this crate and in the
    /// snapshotter beside it.
    #[test]
    fn every_flush_goes_through_the_seam() {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut stack = vec![crate_dir.join("src"), crate_dir.join("../snapshotter/src")];
        let mut checked = 0;
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("src/durable.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for call in [
                    "sync_all(",
                    "sync_data(",
                    "fs::fsync(",
                    "fdatasync(",
                    "syncfs(",
                ] {
                    assert!(
                        !text.contains(call),
                        "{} calls {call}: flush through the SyncSeam instead",
                        path.display()
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 10, "only {checked} files checked");
    }

    #[test]
    fn a_big_batch_becomes_one_syncfs() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().at(Path::new("tempdir"))?;
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).at(&tree)?;
        for i in 0..10 {
            let path = tree.join(i.to_string());
            std::fs::write(&path, b"x").at(&path)?;
        }
        std::os::unix::fs::symlink("0", tree.join("link")).at(&tree)?;
        let mut small = Written::default();
        small.add_tree(&tree)?;
        // The directory and its ten files; the symlink rides on the directory.
        assert_eq!(small.paths.len(), 11);
        assert!(!small.is_whole_fs());
        small.sync(dir.path(), &KernelSync)?;

        let mut big = Written::default();
        for i in 0..=FSYNC_EACH_MAX {
            big.add(tree.join((i % 10).to_string()));
        }
        assert!(big.is_whole_fs());
        assert!(big.paths.is_empty());
        big.sync(dir.path(), &KernelSync)
    }
}

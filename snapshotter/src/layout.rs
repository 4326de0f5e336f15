//! Where snapshots live on disk, and the filesystem steps that make them appear and disappear.
//!
//! ```text
//! <root>/snapshots/<id>/fs     upper dir (or the whole tree of a parentless snapshot)
//! <root>/snapshots/<id>/work   overlay work dir (active snapshots with a parent)
//! <root>/tmp/<owner>/snapshot.* staging in the store handle's own staging dir; renamed
//!                              into snapshots/ at the commit point
//! ```

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_layer_store::SyncSeam;

use crate::error::{Error, Result};
use crate::info::Usage;

/// The paths of one store root.
#[derive(Debug)]
pub(crate) struct Layout {
    root: PathBuf,
    snapshots: PathBuf,
    /// The store handle's own staging dir (`Store::staging_dir`): no GC removes it while we
    /// live.
    tmp: PathBuf,
    staged: AtomicU64,
    /// Every fsync goes through it.
    sync: Arc<dyn SyncSeam>,
}

impl Layout {
    pub fn create(root: &Path, staging: PathBuf, sync: Arc<dyn SyncSeam>) -> Result<Layout> {
        let layout = Layout {
            root: root.to_owned(),
            snapshots: root.join("snapshots"),
            tmp: staging,
            staged: AtomicU64::new(0),
            sync,
        };
        for dir in [&layout.root, &layout.snapshots] {
            let existed = dir.is_dir();
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(Error::io("create", dir))?;
            // A name made now is durable once its parent is flushed: without it, a power cut
            // could take `snapshots/` (and every snapshot in it) away after a commit returned.
            if let Some(parent) = dir.parent().filter(|_| !existed) {
                fsync_dir(layout.sync.as_ref(), parent)?;
            }
        }
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The seam every flush goes through.
    pub fn sync(&self) -> &Arc<dyn SyncSeam> {
        &self.sync
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    pub fn upper(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    pub fn work(&self, id: u64) -> PathBuf {
        self.dir(id).join("work")
    }

    /// The materialized tree of layer-store layer `id` in the same root.
    pub fn layer_tree(&self, id: &str) -> PathBuf {
        strata_layer_store::Store::layer_tree_path(&self.root, id)
    }

    /// The layer store's objects dir in the same root.
    pub fn objects(&self) -> PathBuf {
        strata_layer_store::Store::objects_path(&self.root)
    }

    /// Builds a new snapshot dir under `tmp/`: `fs/` (0755, like a fresh root) and, when the
    /// snapshot will be an overlay upper, `work/`; durable, ready for [`Layout::publish`].
    pub fn stage(&self, with_work: bool) -> Result<PathBuf> {
        let dir = self.stage_unsynced(with_work)?;
        self.sync_staged(std::slice::from_ref(&dir))
            .inspect_err(|_| self.discard(&dir))?;
        Ok(dir)
    }

    /// `count` dirs as [`Layout::stage`] builds them, flushed in parallel (concurrent fsyncs
    /// share journal commits). On an error none is left.
    pub fn stage_many(&self, count: usize, with_work: bool) -> Result<Vec<PathBuf>> {
        let mut staged = Vec::with_capacity(count);
        let built = (0..count).try_for_each(|_| {
            staged.push(self.stage_unsynced(with_work)?);
            Ok(())
        });
        if let Err(err) = built.and_then(|()| self.sync_staged(&staged)) {
            staged.iter().for_each(|d| self.discard(d));
            return Err(err);
        }
        Ok(staged)
    }

    fn stage_unsynced(&self, with_work: bool) -> Result<PathBuf> {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        let dir = self.tmp.join(format!("snapshot.{n}"));
        let mut subdirs = vec!["fs"];
        if with_work {
            subdirs.push("work");
        }
        mkdir(&dir, 0o700)?;
        for sub in subdirs {
            mkdir(&dir.join(sub), 0o755)?;
        }
        Ok(dir)
    }

    /// Makes the entries of staged dirs durable before their renames into `snapshots/` are:
    /// after a power cut, a snapshot dir without `fs/` cannot be mounted.
    fn sync_staged(&self, staged: &[PathBuf]) -> Result<()> {
        const THREADS: usize = 8;
        let chunk = staged.len().div_ceil(THREADS).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = staged
                .chunks(chunk)
                .map(|dirs| {
                    scope.spawn(|| {
                        dirs.iter()
                            .try_for_each(|d| fsync_dir(self.sync.as_ref(), d))
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    }

    /// Moves a staged dir to `snapshots/<id>`; durable once [`Layout::sync_snapshots`] returns.
    pub fn publish(&self, staged: &Path, id: u64) -> Result<()> {
        let target = self.dir(id);
        fs::rename(staged, &target).map_err(Error::io("rename into place", target))
    }

    /// Makes renames into (and out of) `snapshots/` durable.
    pub fn sync_snapshots(&self) -> Result<()> {
        fsync_dir(self.sync.as_ref(), &self.snapshots)
    }

    /// Removes a snapshot's dir; a crash half-way leaves a dir no record names, which
    /// [`Layout::remove_unnamed`] finishes off.
    pub fn remove(&self, id: u64) {
        remove_tree(&self.dir(id));
    }

    pub fn discard(&self, staged: &Path) {
        remove_tree(staged);
    }

    /// Removes every snapshot dir whose id is not in `named` (staging left by a crash is the
    /// layer store's GC's to remove). Returns the highest id seen, so that ids are never
    /// reused after a crash.
    pub fn remove_unnamed(&self, named: &HashSet<u64>) -> Result<Option<u64>> {
        let mut highest = None;
        for entry in fs::read_dir(&self.snapshots).map_err(Error::io("list", &self.snapshots))? {
            let entry = entry.map_err(Error::io("list", &self.snapshots))?;
            let id = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                highest = highest.max(Some(id));
            }
            if !id.is_some_and(|id| named.contains(&id)) {
                tracing::info!(path = %entry.path().display(), "removing unnamed snapshot dir");
                remove_tree(&entry.path());
            }
        }
        Ok(highest)
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(Error::io("create", path))?;
    // The umask may have narrowed the mode; containerd's suite expects exactly 0755.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(Error::io("chmod", path))
}

/// Makes the entries of directory `path` durable through `sync`.
fn fsync_dir(sync: &dyn SyncSeam, path: &Path) -> Result<()> {
    let dir = fs::File::open(path).map_err(Error::io("open", path))?;
    sync.sync_dir(&dir, path).map_err(Error::io("fsync", path))
}

fn remove_tree(path: &Path) {
    if let Err(err) = fs::remove_dir_all(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %err, "cannot remove snapshot dir; cleanup retries");
    }
}

/// What `du` says of `dir`: allocated bytes and inodes, each hardlinked inode counted once.
pub(crate) fn disk_usage(dir: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).map_err(Error::io("stat", &path))?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.size += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).map_err(Error::io("list", &path))? {
                stack.push(entry.map_err(Error::io("list", &path))?.path());
            }
        }
    }
    Ok(usage)
}

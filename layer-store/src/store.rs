//! The [`Store`] handle: opening a root, its settings, its paths, staging and the store lock.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::blobs::BlobPolicy;
use crate::db::Db;
use crate::durable::{self, SyncSeam, Written};
use crate::error::{IoContext, StoreError};
use crate::lock::{self, LockGuard, LockMode};
use crate::object::Objects;
use crate::tmp::OwnedTmp;

/// A deduplicating layer store rooted at one directory. `Send + Sync`; open as many as you
/// like, in as many processes as you like: they share the root safely.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    pub(crate) objects: Objects,
    pub(crate) db: Db,
    durability: Durability,
    /// Every flush goes through it.
    sync: Arc<dyn SyncSeam>,
    /// This handle's staging dir under `tmp/`, made on first use.
    own_tmp: Mutex<Option<Arc<OwnedTmp>>>,
    /// Whether imports keep blobs export cannot reproduce.
    blobs: BlobPolicy,
}

/// Whether a commit waits for its files to reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Flush what a commit names before the database names it (the default): an fsync of each
    /// file and directory written, or one `syncfs` for large batches. A commit survives a power
    /// loss.
    #[default]
    Immediate,
    /// Skip the flush: after a power loss a committed layer may name objects whose data never
    /// reached the disk (`fsck` finds them). For tests, CI and throwaway stores.
    None,
}

impl Store {
    /// Opens (creating if needed) the store at `root`. Any number of handles, in any number
    /// of processes, may have the same root open at once; a root written by an earlier release
    /// (with `strata.redb`) is converted on first open.
    pub fn open(root: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_with_sync(root, durable::kernel())
    }

    /// Like [`Store::open`], with every flush (and a notice of each database commit) going
    /// through `sync` instead of the kernel, from the creation of the store's directories on:
    /// a test seam, e.g. to model a power cut after any flush.
    #[doc(hidden)]
    pub fn open_with_sync(
        root: impl AsRef<Path>,
        sync: Arc<dyn SyncSeam>,
    ) -> Result<Store, StoreError> {
        let (root, created) = create_root(root.as_ref())?;
        Store::init(root, created, sync)
    }

    /// This store with `durability` instead of [`Durability::Immediate`].
    pub fn with_durability(mut self, durability: Durability) -> Store {
        self.set_durability(durability);
        self
    }

    /// Sets how this handle commits (see [`Store::with_durability`]).
    pub fn set_durability(&mut self, durability: Durability) {
        if let Err(err) = self.db.set_durable(durability == Durability::Immediate) {
            // Commits then stay durable: slower, never less safe.
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "cannot change the database's durability"
            );
        }
        self.durability = durability;
    }

    /// This store with `policy` for the layer blobs that export cannot reproduce (see
    /// [`BlobPolicy`]; [`BlobPolicy::Keep`] by default).
    pub fn with_blob_policy(mut self, policy: BlobPolicy) -> Store {
        self.blobs = policy;
        self
    }

    /// What this handle does with blobs export cannot reproduce.
    pub fn blob_policy(&self) -> BlobPolicy {
        self.blobs
    }

    /// Whether `root` holds a store: a metadata database of this release or of an earlier
    /// one.
    pub fn exists(root: &Path) -> bool {
        strata_metadb::Database::exists(root)
    }

    /// This store with its flushes (and notices of database commits) going through `sync`
    /// instead of the kernel: a test seam, e.g. to model a power cut after any flush. The
    /// flushes of opening it went to the kernel; [`Store::open_with_sync`] routes those too.
    #[doc(hidden)]
    pub fn with_sync(mut self, sync: Arc<dyn SyncSeam>) -> Store {
        self.db.seam = sync.clone();
        self.sync = sync;
        self
    }

    /// Makes `written` durable before a commit, as the durability asks.
    pub(crate) fn sync(&self, written: Written) -> Result<(), StoreError> {
        match self.durability {
            Durability::Immediate => written.sync(&self.root, self.sync.as_ref()),
            Durability::None => Ok(()),
        }
    }

    /// Where the metadata database of the store at `root` lives.
    pub fn database_path(root: &Path) -> PathBuf {
        Db::path_in(root)
    }

    /// Creates the store's directories in `root` (`created`: the root itself is new) and
    /// opens it; names made now are flushed, or a power cut could take `layers/` away after
    /// the first import returned.
    fn init(root: PathBuf, created: bool, sync: Arc<dyn SyncSeam>) -> Result<Store, StoreError> {
        let mut written = Written::default();
        if let Some(parent) = root.parent().filter(|_| created) {
            // A relative root's parent may be "": the current directory.
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            written.add(parent.to_path_buf());
        }
        let mut made = false;
        for dir in ["objects", "layers", "tmp", "checkouts", "quarantine"] {
            let path = root.join(dir);
            match fs::create_dir(&path) {
                Ok(()) => made = true,
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e).at(&path),
                Err(_) => {}
            }
        }
        if made {
            written.add(root.clone());
        }
        if !written.is_empty() {
            written.sync(&root, sync.as_ref())?;
        }
        let objects = Objects::open(Store::objects_path(&root))?;
        let db = Db::open(&root, sync.clone())?;
        Ok(Store {
            root,
            objects,
            db,
            durability: Durability::default(),
            sync,
            own_tmp: Mutex::new(None),
            blobs: BlobPolicy::default(),
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The objects directory: the data-only lower of mounts over stub-materialized layers.
    pub fn objects_dir(&self) -> &Path {
        self.objects.dir()
    }

    /// `layers/<id>`: the layer's record file and materialized tree.
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        self.root.join("layers").join(id)
    }

    /// `layers/<id>/tree`: the materialized tree, an overlay lower once
    /// [`materialize`](Store::materialize)d.
    pub fn layer_tree(&self, id: &str) -> PathBuf {
        Store::layer_tree_path(&self.root, id)
    }

    /// Where layer `id`'s materialized tree of the store at `root` lives, for those that
    /// build mounts from a root without opening the store (the snapshotter).
    pub fn layer_tree_path(root: &Path, id: &str) -> PathBuf {
        root.join("layers").join(id).join("tree")
    }

    /// Where the objects directory of the store at `root` lives (see [`Store::objects_dir`]).
    pub fn objects_path(root: &Path) -> PathBuf {
        root.join("objects")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// This handle's own directory under `tmp/` (`tmp/<pid>.<random>/`): whatever the handle
    /// stages there, no GC of any process removes while the handle lives, and the handle
    /// removes it when dropped. A crash leaves it to the next GC.
    ///
    /// # Errors
    /// The directory cannot be made or locked.
    pub fn staging_dir(&self) -> Result<PathBuf, StoreError> {
        let mut own = self.own_tmp.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(own) = own.as_ref() {
            return Ok(own.path().to_owned());
        }
        let made = Arc::new(OwnedTmp::create(&self.tmp_dir())?);
        let path = made.path().to_owned();
        *own = Some(made);
        Ok(path)
    }

    /// Creates a fresh directory `<what>.<random>` in this handle's
    /// [`staging_dir`](Store::staging_dir).
    ///
    /// Names are random rather than counted: a name freed by a rename into place must not be
    /// taken again by a later staging dir whose cleanup would then remove it.
    pub(crate) fn new_tmp_dir(&self, what: &str) -> Result<PathBuf, StoreError> {
        let tmp = self.staging_dir()?;
        tempfile::Builder::new()
            .prefix(&format!("{what}."))
            .rand_bytes(12)
            .tempdir_in(&tmp)
            .map(tempfile::TempDir::keep)
            .at(&tmp)
    }

    /// `tmp/<owner>/`, created if missing: a directory on the store's file system for files a
    /// caller builds on the way into the store (a registry client's partial downloads), kept
    /// apart from the store's own staging.
    ///
    /// Unlike a handle's [`staging_dir`](Store::staging_dir), it is shared by every process and
    /// kept across them, so [`gc`](Store::gc) removes it: [`hold`](Store::hold) the store while
    /// the files matter, and expect them gone after a GC otherwise.
    ///
    /// ```
    /// # fn main() -> anyhow::Result<()> {
    /// let dir = tempfile::tempdir()?;
    /// let store = strata_layer_store::Store::open(dir.path())?;
    /// let _hold = store.hold()?;
    /// let scratch = store.scratch_dir("pull")?;
    /// assert_eq!(scratch, dir.path().join("tmp/pull"));
    /// assert!(store.scratch_dir("../layers").is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `owner` is not one plain path component, or the directory cannot be created.
    pub fn scratch_dir(&self, owner: &str) -> Result<PathBuf, StoreError> {
        let tmp = self.tmp_dir();
        let mut parts = Path::new(owner).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        ) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput)).at(&tmp.join(owner));
        }
        let dir = tmp.join(owner);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e).at(&dir),
            _ => Ok(dir),
        }
    }

    pub(crate) fn lock(&self, mode: LockMode) -> Result<LockGuard, StoreError> {
        lock::acquire(&self.root.join("lock"), mode)
    }

    /// Keeps GC and `fsck --repair` from removing anything, in any process, until the guard
    /// drops (they wait; imports and other holds do not).
    ///
    /// Take it before reading an image whose layers your own records will reference (e.g. a
    /// snapshotter registering GC roots) and drop it once those references are committed;
    /// otherwise a GC between the read and the commit may remove the layers.
    ///
    /// # Errors
    /// The lock file cannot be opened or locked.
    pub fn hold(&self) -> Result<LockGuard, StoreError> {
        self.lock(LockMode::Shared)
    }
}

/// Creates the store root `root` if it is missing (with its parents); a root that exists as
/// something other than a directory is refused by name rather than as "File exists".
/// Returns the root and whether it was created.
fn create_root(root: &Path) -> Result<(PathBuf, bool), StoreError> {
    let existed = root.is_dir();
    match fs::create_dir_all(root) {
        Err(_) if root.exists() && !root.is_dir() => Err(StoreError::RootNotADirectory {
            path: root.to_path_buf(),
        }),
        created => created.at(root).map(|()| (root.to_path_buf(), !existed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_that_is_a_file_is_refused_by_name() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().at(Path::new("tempdir"))?;
        let file = dir.path().join("file");
        fs::write(&file, "x").at(&file)?;
        let err = Store::open(&file).expect_err("a file is no store root");
        assert!(
            matches!(&err, StoreError::RootNotADirectory { path } if *path == file),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn staging_dirs_of_two_handles_never_share_a_name() -> Result<(), StoreError> {
        let root = tempfile::tempdir().at(Path::new("tempdir"))?;
        let first = Store::open(root.path())?;
        let second = Store::open(root.path())?;
        let a = first.new_tmp_dir("layer")?;
        // A commit renames staging into place, freeing its name.
        let placed = root.path().join("layers").join("placed");
        fs::rename(&a, &placed).at(&a)?;
        let b = second.new_tmp_dir("layer")?;
        assert_ne!(a, b, "a freed staging name was handed to another handle");
        Ok(())
    }
}

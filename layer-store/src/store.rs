//! The [`Store`] handle: layout, and lookups of images and layers.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use strata_metadb::Tx;

use crate::blobs::BlobPolicy;
use crate::db::{Db, IMAGES, LAYERS, gc_roots, names, object_roots};
use crate::durable::{self, SyncSeam, Written};
use crate::error::{IoContext, StoreError};
use crate::lock::{self, LockGuard, LockMode};
use crate::name;
use crate::object::Objects;
use crate::record::{self, ImageRecord, Kind, LayerMeta, LayerRecord};
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

    /// Every image, ordered by id.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.db.read(|tx| {
            IMAGES
                .all(tx)?
                .iter()
                .map(|(_, value)| Ok(record::decode(Kind::Image, value)?))
                .collect()
        })
    }

    /// The image named `name`: a reference, normalized as docker does (`busybox` is
    /// `docker.io/library/busybox:latest`), or a unique prefix of its id (the manifest digest,
    /// `sha256:` optional) of at least [`MIN_ID_PREFIX`] hex digits.
    ///
    /// # Errors
    /// [`StoreError::ImageNotFound`] when nothing matches, [`StoreError::AmbiguousImage`] when
    /// the prefix matches several images.
    pub fn image(&self, name: &str) -> Result<ImageRecord, StoreError> {
        self.db.read(|tx| {
            let id = resolve(tx, name)?;
            image_record(tx, &id, name)
        })
    }

    /// Tags image `source` (a name or id prefix, as [`Store::image`] takes) as `target` too;
    /// `target` moves from the image it named before, as `docker tag` does. Returns the
    /// normalized target.
    ///
    /// # Errors
    /// `target` is not a reference ([`StoreError::Name`]), or `source` names no image.
    pub fn tag(&self, source: &str, target: &str) -> Result<String, StoreError> {
        let target = name::normalize(target)?;
        self.db.write(|tx| {
            let id = resolve(tx, source)?;
            let previous = names::set(tx, &target, &id)?;
            if let Some(previous) = previous.filter(|p| *p != id) {
                crate::import::untag(tx, &previous, &target)?;
            }
            let mut image = image_record(tx, &id, source)?;
            if !image.tags.contains(&target) {
                image.tags.push(target.clone());
            }
            IMAGES.put(tx, &id, &record::encode(Kind::Image, &image)?)
        })?;
        Ok(target)
    }

    /// Every layer with its metadata row, ordered by id.
    pub fn layers(&self) -> Result<Vec<(String, LayerMeta)>, StoreError> {
        self.db.read(|tx| {
            LAYERS
                .all(tx)?
                .into_iter()
                .map(|(id, value)| Ok((id, record::decode(Kind::LayerMeta, &value)?)))
                .collect()
        })
    }

    /// The metadata row of layer `id`, if the store has it.
    pub fn layer_meta(&self, id: &str) -> Result<Option<LayerMeta>, StoreError> {
        Ok(self.layer_metas(&[id])?.pop().flatten())
    }

    /// The metadata rows of layers `ids`, in order, from one read of the database.
    pub(crate) fn layer_metas(&self, ids: &[&str]) -> Result<Vec<Option<LayerMeta>>, StoreError> {
        self.db.read(|tx| {
            ids.iter()
                .map(|id| match LAYERS.get(tx, id)? {
                    Some(v) => Ok(Some(record::decode(Kind::LayerMeta, &v)?)),
                    None => Ok(None),
                })
                .collect()
        })
    }

    /// The full record of layer `id` (read from `layers/<id>/manifest`).
    pub fn layer_record(&self, id: &str) -> Result<LayerRecord, StoreError> {
        if self.layer_meta(id)?.is_none() {
            return Err(StoreError::LayerNotFound { id: id.to_owned() });
        }
        self.read_layer_record(id)
    }

    /// `layers/<id>/manifest`, for a caller that knows the layer exists.
    pub(crate) fn read_layer_record(&self, id: &str) -> Result<LayerRecord, StoreError> {
        let path = self.layer_dir(id).join("manifest");
        let bytes = fs::read(&path).at(&path)?;
        Ok(record::decode_layer(&bytes)?)
    }

    /// Removes tag `name` and nothing else: an image left without tags stays, listed by its
    /// id (as docker keeps a dangling image), until [`remove_image`](Store::remove_image)
    /// names it by id.
    ///
    /// # Errors
    /// [`StoreError::ImageNotFound`] when no image has this tag.
    pub fn untag(&self, name: &str) -> Result<(), StoreError> {
        let tag = name::normalize(name)?;
        self.db.write(|tx| {
            let id = names::remove(tx, &tag)?.ok_or_else(|| StoreError::ImageNotFound {
                name: name.to_owned(),
            })?;
            crate::import::untag(tx, &id, &tag)
        })
    }

    /// Removes tag `name`; the image goes with its last tag. Its layers stay until
    /// [`gc`](Store::gc).
    ///
    /// # Errors
    /// [`StoreError::DatabaseDamaged`] when the metadata database fails SQLite's check: a
    /// write would build on damage.
    pub fn remove_image(&self, name: &str) -> Result<(), StoreError> {
        self.db.verify()?;
        self.db.write(|tx| {
            // Read inside the transaction that changes it: a concurrent import, tag or rmi
            // commits before or after, never in between.
            let id = resolve(tx, name)?;
            let image = image_record(tx, &id, name)?;
            let tag = name::normalize(name).ok();
            let named = |t: &String| t == name || Some(t) == tag.as_ref();
            let tags: Vec<String> = if image.tags.iter().any(named) {
                image.tags.iter().filter(|t| !named(t)).cloned().collect()
            } else {
                Vec::new()
            };
            for tag in image.tags.iter().filter(|t| !tags.contains(t)) {
                names::remove(tx, tag)?;
            }
            if tags.is_empty() {
                IMAGES.remove(tx, &id)
            } else {
                let updated = ImageRecord {
                    tags,
                    ..image.clone()
                };
                IMAGES.put(tx, &id, &record::encode(Kind::Image, &updated)?)
            }
        })
    }

    /// Registers layer `layer` as needed by `owner` (e.g. a snapshot); GC keeps it, and every
    /// object it references, until [`remove_gc_root`](Store::remove_gc_root).
    pub fn add_gc_root(&self, owner: &str, layer: &str) -> Result<(), StoreError> {
        self.db.write(|tx| gc_roots::add(tx, owner, layer))
    }

    /// Registers every layer of `layers` as needed by `owner`, in one transaction.
    pub fn add_gc_roots(&self, owner: &str, layers: &[String]) -> Result<(), StoreError> {
        self.db.write(|tx| {
            layers
                .iter()
                .try_for_each(|layer| gc_roots::add(tx, owner, layer))
        })
    }

    /// Undoes [`add_gc_root`](Store::add_gc_root).
    pub fn remove_gc_root(&self, owner: &str, layer: &str) -> Result<(), StoreError> {
        self.db.write(|tx| gc_roots::remove(tx, owner, layer))
    }

    /// Removes every GC root of `owner`, of layers and of objects
    /// ([`dedup_tree`](Store::dedup_tree)), in one transaction.
    pub fn remove_gc_roots_of(&self, owner: &str) -> Result<(), StoreError> {
        self.db.write(|tx| {
            gc_roots::remove_owner(tx, owner)?;
            object_roots::remove_owner(tx, owner)
        })
    }

    /// Removes the GC roots of every owner whose name starts with `prefix` and is not in the
    /// set `live` returns: roots a crash left behind after their owner went away. `live` is
    /// called while no process holds the store ([`hold`](Store::hold), imports, GC), so an
    /// owner that registers its roots under a hold before recording itself is never caught
    /// half-way. When some process holds the store, nothing is done and `false` returned.
    ///
    /// # Errors
    /// The lock or the database fails, or `live` does.
    pub fn prune_gc_roots<E: From<StoreError>>(
        &self,
        prefix: &str,
        live: impl FnOnce() -> Result<HashSet<String>, E>,
    ) -> Result<bool, E> {
        let Some(_lock) = lock::try_acquire(&self.root.join("lock"), LockMode::Exclusive)? else {
            return Ok(false);
        };
        let live = live()?;
        let stale: HashSet<String> = self
            .gc_roots()?
            .into_iter()
            .chain(self.object_roots()?)
            .map(|(owner, _)| owner)
            .filter(|owner| owner.starts_with(prefix) && !live.contains(owner))
            .collect();
        if !stale.is_empty() {
            tracing::info!(?stale, "dropping GC roots of owners that are gone");
            self.db.write(|tx| {
                stale.iter().try_for_each(|o| {
                    gc_roots::remove_owner(tx, o)?;
                    object_roots::remove_owner(tx, o)
                })
            })?;
        }
        Ok(true)
    }

    /// Every `(owner, layer)` GC root.
    pub fn gc_roots(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.read(gc_roots::all)
    }

    /// Every `(owner, object)` GC root: objects of deduplicated trees
    /// ([`dedup_tree`](Store::dedup_tree)), as hex ids.
    pub fn object_roots(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.read(object_roots::all)
    }
}

/// The fewest hex digits of an image id that name it.
pub const MIN_ID_PREFIX: usize = 4;

/// The record of image `id`, which `name` resolved to.
fn image_record(tx: &Tx<'_>, id: &str, name: &str) -> Result<ImageRecord, StoreError> {
    let value = IMAGES
        .get(tx, id)?
        .ok_or_else(|| StoreError::ImageNotFound {
            name: name.to_owned(),
        })?;
    Ok(record::decode(Kind::Image, &value)?)
}

/// The id of the image `name` names: its tag (normalized, or as stored by older versions),
/// else a unique id prefix.
fn resolve(tx: &Tx<'_>, name: &str) -> Result<String, StoreError> {
    let not_found = || StoreError::ImageNotFound {
        name: name.to_owned(),
    };
    let normalized = name::normalize(name).ok();
    for candidate in normalized.as_deref().into_iter().chain([name]) {
        if let Some(id) = names::get(tx, candidate)? {
            return Ok(id);
        }
    }
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    let hex = prefix.len() >= MIN_ID_PREFIX
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err(not_found());
    }
    let mut found = crate::db::image_ids_with_prefix(tx, prefix)?;
    match found.len() {
        0 => Err(not_found()),
        1 => Ok(found.remove(0)),
        _ => Err(StoreError::AmbiguousImage {
            prefix: prefix.to_owned(),
            candidates: found,
        }),
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

    #[test]
    fn an_id_prefix_of_several_images_is_ambiguous_and_lists_them() -> Result<(), StoreError> {
        let root = tempfile::tempdir().at(Path::new("tempdir"))?;
        let store = Store::open(root.path())?;
        let ids = [
            format!("abcd1{}", "0".repeat(59)),
            format!("abcd2{}", "0".repeat(59)),
        ];
        store
            .db
            .write(|tx| ids.iter().try_for_each(|id| IMAGES.put(tx, id, b"")))?;
        let err = store.image("sha256:abcd").expect_err("two images match");
        assert!(
            matches!(&err, StoreError::AmbiguousImage { prefix, candidates }
                if prefix == "abcd" && *candidates == ids),
            "{err}"
        );
        assert!(
            err.to_string().contains("abcd10000000, abcd20000000"),
            "{err}"
        );
        let short = store.image("abc").expect_err("3 digits are too few");
        assert!(matches!(short, StoreError::ImageNotFound { .. }), "{short}");
        Ok(())
    }
}

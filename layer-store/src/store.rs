//! The [`Store`] handle: layout, and lookups of images and layers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableMultimapTable, ReadableTable};

use crate::db::{self, DbAccess, GC_ROOTS, IMAGES, LAYERS, NAMES};
use crate::durable::{self, SyncSeam, Written};
use crate::error::{IoContext, StoreError};
use crate::lock::{self, LockGuard, LockMode};
use crate::name;
use crate::object::Objects;
use crate::record::{self, ImageRecord, Kind, LayerMeta, LayerRecord};

/// A deduplicating layer store rooted at one directory. `Send + Sync`; open as many as you like.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    pub(crate) objects: Objects,
    pub(crate) db: DbAccess,
    durability: Durability,
    /// Every flush goes through it.
    sync: Arc<dyn SyncSeam>,
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
    /// Opens (creating if needed) the store at `root`; the metadata database is opened per
    /// transaction, so other processes can use the store between them.
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
        let db = DbAccess::transient(&root);
        Store::init(root, created, db, sync)
    }

    /// Opens the store at `root` using `db`, the caller's open handle of
    /// `<root>/strata.redb` (see [`Store::database_path`]), shared with other crates.
    pub fn open_with_db(
        root: impl AsRef<Path>,
        db: Arc<redb::Database>,
    ) -> Result<Store, StoreError> {
        let (root, created) = create_root(root.as_ref())?;
        let access = DbAccess::shared(&root, db);
        Store::init(root, created, access, durable::kernel())
    }

    /// This store with `durability` instead of [`Durability::Immediate`].
    pub fn with_durability(mut self, durability: Durability) -> Store {
        self.durability = durability;
        self
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
        root.join("strata.redb")
    }

    /// Creates the store's directories in `root` (`created`: the root itself is new) and
    /// opens it; names made now are flushed, or a power cut could take `layers/` away after
    /// the first import returned.
    fn init(
        root: PathBuf,
        created: bool,
        mut db: DbAccess,
        sync: Arc<dyn SyncSeam>,
    ) -> Result<Store, StoreError> {
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
        db.seam = sync.clone();
        let store = Store {
            root,
            objects,
            db,
            durability: Durability::default(),
            sync,
        };
        store.db.prepare()?;
        Ok(store)
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

    /// Creates a fresh directory `tmp/<what>.<random>`.
    ///
    /// Names are random rather than counted: a counter per handle repeats across handles, and a
    /// name freed by a rename into place could then be taken by another handle's staging dir,
    /// which the first handle's cleanup would remove.
    pub(crate) fn new_tmp_dir(&self, what: &str) -> Result<PathBuf, StoreError> {
        let tmp = self.tmp_dir();
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
    /// [`gc`](Store::gc) removes everything under `tmp/`: [`hold`](Store::hold) the
    /// store while the files matter, and expect them gone after a GC otherwise.
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
        self.db.read(|txn| {
            let table = txn.open_table(IMAGES).map_err(|e| self.db.err(e))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| self.db.err(e))? {
                let (_, value) = row.map_err(|e| self.db.err(e))?;
                out.push(record::decode(Kind::Image, value.value())?);
            }
            Ok(out)
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
        self.db.read(|txn| {
            let names = txn.open_table(NAMES).map_err(|e| self.db.err(e))?;
            let images = txn.open_table(IMAGES).map_err(|e| self.db.err(e))?;
            let id = resolve(&self.db, &names, &images, name)?;
            image_record(&self.db, &images, &id, name)
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
        self.db.write(|txn| {
            let mut names = txn.open_table(NAMES).map_err(|e| self.db.err(e))?;
            let mut images = txn.open_table(IMAGES).map_err(|e| self.db.err(e))?;
            let id = resolve(&self.db, &names, &images, source)?;
            let previous = names
                .insert(target.as_str(), id.as_str())
                .map_err(|e| self.db.err(e))?
                .map(|v| v.value().to_owned());
            if let Some(previous) = previous.filter(|p| *p != id) {
                crate::import::untag(&mut images, &previous, &target, &self.db)?;
            }
            let mut image = image_record(&self.db, &images, &id, source)?;
            if !image.tags.contains(&target) {
                image.tags.push(target.clone());
            }
            let bytes = record::encode(Kind::Image, &image)?;
            images
                .insert(id.as_str(), bytes.as_slice())
                .map_err(|e| self.db.err(e))?;
            Ok(())
        })?;
        Ok(target)
    }

    /// Every layer with its metadata row, ordered by id.
    pub fn layers(&self) -> Result<Vec<(String, LayerMeta)>, StoreError> {
        self.db.read(|txn| {
            let table = txn.open_table(LAYERS).map_err(|e| self.db.err(e))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| self.db.err(e))? {
                let (key, value) = row.map_err(|e| self.db.err(e))?;
                out.push((
                    key.value().to_owned(),
                    record::decode(Kind::LayerMeta, value.value())?,
                ));
            }
            Ok(out)
        })
    }

    /// The metadata row of layer `id`, if the store has it.
    pub fn layer_meta(&self, id: &str) -> Result<Option<LayerMeta>, StoreError> {
        Ok(self.layer_metas(&[id])?.pop().flatten())
    }

    /// The metadata rows of layers `ids`, in order, from one read of the database.
    pub(crate) fn layer_metas(&self, ids: &[&str]) -> Result<Vec<Option<LayerMeta>>, StoreError> {
        self.db.read(|txn| {
            let table = txn.open_table(LAYERS).map_err(|e| self.db.err(e))?;
            ids.iter()
                .map(|id| match table.get(*id).map_err(|e| self.db.err(e))? {
                    Some(v) => Ok(Some(record::decode(Kind::LayerMeta, v.value())?)),
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
        self.db.write(|txn| {
            let mut names = txn.open_table(NAMES).map_err(|e| self.db.err(e))?;
            let mut images = txn.open_table(IMAGES).map_err(|e| self.db.err(e))?;
            let id = names
                .remove(tag.as_str())
                .map_err(|e| self.db.err(e))?
                .map(|v| v.value().to_owned())
                .ok_or_else(|| StoreError::ImageNotFound {
                    name: name.to_owned(),
                })?;
            crate::import::untag(&mut images, &id, &tag, &self.db)
        })
    }

    /// Removes tag `name`; the image goes with its last tag. Its layers stay until
    /// [`gc`](Store::gc).
    ///
    /// # Errors
    /// [`StoreError::DatabaseDamaged`] when the metadata database fails redb's integrity
    /// check: a write would build on damage.
    pub fn remove_image(&self, name: &str) -> Result<(), StoreError> {
        self.db.verify()?;
        self.db.write(|txn| {
            let mut names = txn.open_table(NAMES).map_err(|e| self.db.err(e))?;
            let mut images = txn.open_table(IMAGES).map_err(|e| self.db.err(e))?;
            // Read inside the transaction that changes it: a concurrent import, tag or rmi
            // commits before or after, never in between.
            let id = resolve(&self.db, &names, &images, name)?;
            let image = image_record(&self.db, &images, &id, name)?;
            let tag = name::normalize(name).ok();
            let named = |t: &String| t == name || Some(t) == tag.as_ref();
            let tags: Vec<String> = if image.tags.iter().any(named) {
                image.tags.iter().filter(|t| !named(t)).cloned().collect()
            } else {
                Vec::new()
            };
            for tag in image.tags.iter().filter(|t| !tags.contains(t)) {
                names.remove(tag.as_str()).map_err(|e| self.db.err(e))?;
            }
            if tags.is_empty() {
                images.remove(id.as_str()).map_err(|e| self.db.err(e))?;
            } else {
                let updated = ImageRecord {
                    tags,
                    ..image.clone()
                };
                let bytes = record::encode(Kind::Image, &updated)?;
                images
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(|e| self.db.err(e))?;
            }
            Ok(())
        })
    }

    /// Registers layer `layer` as needed by `owner` (e.g. a snapshot key); GC keeps it.
    pub fn add_gc_root(&self, owner: &str, layer: &str) -> Result<(), StoreError> {
        self.db
            .write(|txn| db::add_gc_root(txn, owner, layer).map_err(|e| self.db.err(e)))
    }

    /// Undoes [`add_gc_root`](Store::add_gc_root).
    pub fn remove_gc_root(&self, owner: &str, layer: &str) -> Result<(), StoreError> {
        self.db
            .write(|txn| db::remove_gc_root(txn, owner, layer).map_err(|e| self.db.err(e)))
    }

    /// Every `(owner, layer)` GC root.
    pub fn gc_roots(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.read(|txn| {
            let table = txn
                .open_multimap_table(GC_ROOTS)
                .map_err(|e| self.db.err(e))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| self.db.err(e))? {
                let (owner, layers) = row.map_err(|e| self.db.err(e))?;
                for layer in layers {
                    let layer = layer.map_err(|e| self.db.err(e))?;
                    out.push((owner.value().to_owned(), layer.value().to_owned()));
                }
            }
            Ok(out)
        })
    }
}

/// The fewest hex digits of an image id that name it.
pub const MIN_ID_PREFIX: usize = 4;

/// The id of the image `name` names: its tag (normalized, or as stored by older versions),
/// else a unique id prefix.
/// The record of image `id`, which `name` resolved to.
fn image_record(
    db: &DbAccess,
    images: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
    name: &str,
) -> Result<ImageRecord, StoreError> {
    let value =
        images
            .get(id)
            .map_err(|e| db.err(e))?
            .ok_or_else(|| StoreError::ImageNotFound {
                name: name.to_owned(),
            })?;
    Ok(record::decode(Kind::Image, value.value())?)
}

fn resolve(
    db: &DbAccess,
    names: &impl ReadableTable<&'static str, &'static str>,
    images: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<String, StoreError> {
    let not_found = || StoreError::ImageNotFound {
        name: name.to_owned(),
    };
    let normalized = name::normalize(name).ok();
    for candidate in normalized.as_deref().into_iter().chain([name]) {
        if let Some(id) = names.get(candidate).map_err(|e| db.err(e))? {
            return Ok(id.value().to_owned());
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
    let mut found = Vec::new();
    for row in images.range(prefix..).map_err(|e| db.err(e))? {
        let (key, _) = row.map_err(|e| db.err(e))?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        found.push(key.to_owned());
    }
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
        store.db.write(|txn| {
            let mut images = txn.open_table(IMAGES).map_err(|e| store.db.err(e))?;
            for id in &ids {
                images
                    .insert(id.as_str(), &b""[..])
                    .map_err(|e| store.db.err(e))?;
            }
            Ok(())
        })?;
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

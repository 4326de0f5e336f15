//! Every call the builder makes into the snapshotter and the layer store, in one place: how
//! they are opened and shared is the part of their API most likely to change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_layer_store::{
    Durability, ImageRecord, ImportOptions, ImportReport, LockGuard, Store, StoreError,
};
use strata_registry::{Connection, PullOptions};
use strata_snapshotter::{ImageCommit, Labels, MountGuard, Snapshotter};

use crate::error::{BuildError, Result};

/// The snapshotter namespace of the builder's transient snapshots, apart from the keys of the
/// command line and of containerd.
pub const NAMESPACE: &str = "strata-build";

/// The snapshotter (which owns the layer store) of one root.
#[derive(Debug)]
pub struct Backend {
    sn: Snapshotter,
    /// A handle of its own for the registry client, which takes an `Arc`.
    pull_store: Arc<Store>,
}

impl Backend {
    /// Opens the store at `root` (creating it if needed).
    pub fn open(root: &Path, durability: Durability) -> Result<Backend> {
        let sn = Snapshotter::open_in(root, NAMESPACE)
            .map_err(|source| BuildError::Snapshot {
                op: "open",
                key: root.display().to_string(),
                source: Box::new(source),
            })?
            .with_durability(durability);
        let pull_store = Store::open(root)
            .map_err(BuildError::store("open the layer store"))?
            .with_durability(durability);
        Ok(Backend {
            sn,
            pull_store: Arc::new(pull_store),
        })
    }

    /// The layer store.
    pub fn store(&self) -> &Store {
        self.sn.store()
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        self.store().root()
    }

    /// Keeps GC (in any process) from removing anything until the guard drops.
    pub fn hold(&self) -> Result<LockGuard> {
        self.store()
            .hold()
            .map_err(BuildError::store("hold the store"))
    }

    /// Image `name`, or `None` when the store has no such image.
    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>> {
        match self.store().image(name) {
            Ok(record) => Ok(Some(record)),
            Err(StoreError::ImageNotFound { .. }) => Ok(None),
            Err(source) => Err(image_error(name, source)),
        }
    }

    /// Pulls `reference` into the store.
    pub fn pull(&self, reference: &str, connection: &Connection) -> Result<ImageRecord> {
        let options = PullOptions::default().with_connection(connection.clone());
        let report = strata_registry::blocking::Client::new(Arc::clone(&self.pull_store))
            .pull(reference, &options)
            .map_err(|source| BuildError::Pull {
                image: reference.to_owned(),
                source: Box::new(source),
            })?;
        self.store()
            .image(&report.image)
            .map_err(|source| image_error(reference, source))
    }

    /// Imports the OCI layout `dir` (image blobs the store has may be absent) as `name`.
    pub fn import(&self, dir: &Path, name: &str) -> Result<ImportReport> {
        let options = ImportOptions::default().with_name(Some(name.to_owned()));
        self.store()
            .import(dir, &options)
            .map_err(|source| image_error(name, source))
    }

    /// Tags image `source` as `target` too; returns the normalized target.
    pub fn tag(&self, source: &str, target: &str) -> Result<String> {
        self.store()
            .tag(source, target)
            .map_err(|e| image_error(target, e))
    }

    /// Removes tag `name`, keeping its image (known by id).
    pub fn untag(&self, name: &str) -> Result<()> {
        self.store().untag(name).map_err(|e| image_error(name, e))
    }

    /// Removes image `name` (its layers stay while anything else needs them).
    pub fn remove_image(&self, name: &str) -> Result<()> {
        self.store()
            .remove_image(name)
            .map_err(|source| image_error(name, source))
    }

    /// Prepares active snapshot `key` on image `image`.
    pub fn prepare(&self, key: &str, image: &str) -> Result<()> {
        self.sn
            .prepare_on_image(key, image, Labels::new())
            .map(drop)
            .map_err(snapshot_error("prepare", key))
    }

    /// Mounts snapshot `key` at `target` until the guard drops.
    pub fn mount(&self, key: &str, target: &Path) -> Result<MountGuard> {
        self.sn
            .mount(key, target)
            .map_err(snapshot_error("mount", key))
    }

    /// Stores the changes of snapshot `key` as a layer on its image, as image `name`.
    pub fn commit(&self, key: &str, name: &str) -> Result<ImageCommit> {
        self.sn
            .commit_image(key, name)
            .map_err(snapshot_error("commit", key))
    }

    /// Removes snapshot `key`.
    pub fn remove_snapshot(&self, key: &str) -> Result<()> {
        self.sn.remove(key).map_err(snapshot_error("remove", key))
    }

    /// Every snapshot's key (or name).
    pub fn snapshots(&self) -> Result<Vec<String>> {
        let infos = self
            .sn
            .list::<&str>(&[])
            .map_err(snapshot_error("list", ""))?;
        Ok(infos.into_iter().map(|i| i.name).collect())
    }

    /// Every image's tags.
    pub fn tags(&self) -> Result<Vec<String>> {
        let images = self
            .store()
            .images()
            .map_err(BuildError::store("list images"))?;
        Ok(images.into_iter().flat_map(|i| i.tags).collect())
    }

    /// `tmp/<owner>` of the store, for the build's staging.
    pub fn scratch_dir(&self, owner: &str) -> Result<PathBuf> {
        self.store()
            .scratch_dir(owner)
            .map_err(BuildError::store("create a scratch dir"))
    }

    /// Whether the store holds layer `id`.
    pub fn has_layer(&self, id: &str) -> Result<bool> {
        Ok(self
            .store()
            .layer_meta(id)
            .map_err(BuildError::store("read a layer"))?
            .is_some())
    }

    /// Registers layer `layer` as needed by `owner`.
    pub fn add_gc_root(&self, owner: &str, layer: &str) -> Result<()> {
        self.store()
            .add_gc_root(owner, layer)
            .map_err(BuildError::store("add a GC root"))
    }
}

/// Removes the GC roots of owners starting with `prefix` that `live` does not name, while no
/// process holds the store; `false` when one does (nothing done).
pub fn prune_gc_roots(
    store: &Store,
    prefix: &str,
    live: impl FnOnce() -> Result<std::collections::HashSet<String>>,
) -> Result<bool> {
    store.prune_gc_roots(prefix, live)
}

/// Undoes [`Backend::add_gc_root`].
pub fn remove_gc_root(store: &Store, owner: &str, layer: &str) -> Result<()> {
    store
        .remove_gc_root(owner, layer)
        .map_err(BuildError::store("remove a GC root"))
}

fn image_error(image: &str, source: impl Into<StoreError>) -> BuildError {
    BuildError::Image {
        image: image.to_owned(),
        source: Box::new(source.into()),
    }
}

fn snapshot_error(
    op: &'static str,
    key: &str,
) -> impl FnOnce(strata_snapshotter::Error) -> BuildError {
    let key = key.to_owned();
    move |source| BuildError::Snapshot {
        op,
        key,
        source: Box::new(source),
    }
}

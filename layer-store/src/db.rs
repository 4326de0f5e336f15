//! The layer store's tables inside the shared metadata database `strata.redb`, and how a
//! [`Store`](crate::Store) reaches that database.
//!
//! redb allows one open handle per file, and locks the file against other processes. A store
//! opened with [`Store::open`](crate::Store::open) therefore opens the database only for the
//! length of each transaction, serialized across processes by an `flock` on `<root>/db.lock`; a
//! long-running process that keeps the database open (the snapshotter) passes its handle to
//! [`Store::open_with_db`](crate::Store::open_with_db) and holds `db.lock` for its life as a
//! [`DatabaseOwner`](crate::DatabaseOwner); transactions of other processes then fail with
//! [`StoreError::InUse`](crate::StoreError::InUse) rather than wait for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, MultimapTableDefinition, TableDefinition, WriteTransaction};

use crate::durable::{self, SyncSeam};
use crate::error::StoreError;
use crate::lock;

/// Layer id (diff_id hex) → [`LayerMeta`](crate::record::LayerMeta) record.
pub(crate) const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("layer_store.layers");
/// Image id (manifest digest hex) → [`ImageRecord`](crate::record::ImageRecord) record.
pub(crate) const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("layer_store.images");
/// Image name (tag) → image id.
pub(crate) const NAMES: TableDefinition<&str, &str> = TableDefinition::new("layer_store.names");
/// GC root owner → layer ids it keeps alive.
pub const GC_ROOTS: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("layer_store.gc_roots");

/// How the store reaches `strata.redb`, and whom it tells of each commit.
#[derive(Debug)]
pub(crate) struct DbAccess {
    handle: Handle,
    /// `strata.redb`.
    path: PathBuf,
    /// Told of every committed write transaction.
    pub(crate) seam: Arc<dyn SyncSeam>,
}

/// Whether the database is open for good or per transaction.
#[derive(Debug)]
enum Handle {
    /// A handle owned by someone else in this process, kept open.
    Shared(Arc<Database>),
    /// Opened per transaction under `db.lock` of the store root.
    Transient {
        /// The store root, whose `db.lock` serializes transactions across processes.
        root: PathBuf,
    },
}

impl DbAccess {
    /// The database of the store at `root`, opened per transaction.
    pub(crate) fn transient(root: &Path) -> Self {
        DbAccess {
            handle: Handle::Transient {
                root: root.to_owned(),
            },
            path: root.join("strata.redb"),
            seam: durable::kernel(),
        }
    }

    /// The database of the store at `root`, kept open by someone else as `db`.
    pub(crate) fn shared(root: &Path, db: Arc<Database>) -> Self {
        DbAccess {
            handle: Handle::Shared(db),
            path: root.join("strata.redb"),
            seam: durable::kernel(),
        }
    }

    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Runs `f` with the database open.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&Database) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match &self.handle {
            Handle::Shared(db) => f(db),
            Handle::Transient { root } => {
                let path = &self.path;
                let _guard = lock::acquire_database(root)?;
                let db = Database::create(path).map_err(|e| StoreError::db(path, e))?;
                // Here rather than at `Store::open`: each open and close of the file costs
                // redb several `fdatasync`s, and a command should pay for one.
                self.create_tables(&db)?;
                f(&db)
            }
        }
    }

    /// Runs `f` in a write transaction and commits it (durably: redb's default).
    pub(crate) fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let path = self.path();
        let out = self.with(|db| {
            let txn = db.begin_write().map_err(|e| StoreError::db(&path, e))?;
            let out = f(&txn)?;
            txn.commit().map_err(|e| StoreError::db(&path, e))?;
            Ok(out)
        })?;
        self.seam.committed(&path);
        Ok(out)
    }

    /// Runs `f` in a read transaction.
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        use redb::ReadableDatabase;
        let path = self.path();
        self.with(|db| f(&db.begin_read().map_err(|e| StoreError::db(&path, e))?))
    }

    /// Maps a redb error of this database.
    pub(crate) fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::db(&self.path(), e)
    }

    /// Prepares a handle for use: a shared one is open for good, so its tables are created now;
    /// a transient one gets them at each open.
    pub(crate) fn prepare(&self) -> Result<(), StoreError> {
        match &self.handle {
            Handle::Shared(db) => self.create_tables(db),
            Handle::Transient { .. } => Ok(()),
        }
    }

    /// Creates the tables so read transactions find them. Only a database missing one pays
    /// for a write transaction, whose durable commit costs several `fdatasync`s.
    fn create_tables(&self, db: &Database) -> Result<(), StoreError> {
        use redb::{MultimapTableHandle, ReadableDatabase, TableHandle};
        let read = db.begin_read().map_err(|e| self.err(e))?;
        let tables: Vec<String> = read
            .list_tables()
            .map_err(|e| self.err(e))?
            .map(|t| t.name().to_owned())
            .collect();
        let multimaps: Vec<String> = read
            .list_multimap_tables()
            .map_err(|e| self.err(e))?
            .map(|t| t.name().to_owned())
            .collect();
        let present = [LAYERS.name(), IMAGES.name(), NAMES.name()]
            .iter()
            .all(|name| tables.iter().any(|t| t == name))
            && multimaps.iter().any(|t| t == GC_ROOTS.name());
        if present {
            return Ok(());
        }
        drop(read);
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        txn.open_table(LAYERS).map_err(|e| self.err(e))?;
        txn.open_table(IMAGES).map_err(|e| self.err(e))?;
        txn.open_table(NAMES).map_err(|e| self.err(e))?;
        txn.open_multimap_table(GC_ROOTS).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))?;
        self.seam.committed(&self.path);
        Ok(())
    }
}

/// Registers layer `layer` (a diff_id hex) as needed by `owner`, inside the caller's
/// transaction; GC keeps it and every object it references.
pub fn add_gc_root(txn: &WriteTransaction, owner: &str, layer: &str) -> Result<(), redb::Error> {
    txn.open_multimap_table(GC_ROOTS)?.insert(owner, layer)?;
    Ok(())
}

/// Removes what [`add_gc_root`] registered; a no-op when it is not registered.
pub fn remove_gc_root(txn: &WriteTransaction, owner: &str, layer: &str) -> Result<(), redb::Error> {
    txn.open_multimap_table(GC_ROOTS)?.remove(owner, layer)?;
    Ok(())
}

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

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, MultimapTableDefinition, TableDefinition, WriteTransaction};

use crate::durable::{self, SyncSeam};
use crate::error::{IoContext, StoreError};
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
    ///
    /// redb trusts a cleanly closed file and panics on some damage (a malformed allocator
    /// state, a page that does not parse); such a panic is contained here, the one place the
    /// store reaches redb, and becomes [`StoreError::DatabaseDamaged`]. Operations that delete
    /// call [`verify`](DbAccess::verify) first, which finds damage a plain read would trust.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&Database) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.contained(|| match &self.handle {
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
        })
    }

    /// Checks every page of the database against its checksum (redb's
    /// [`Database::check_integrity`]). A file that fails it, or that redb had to repair (it
    /// rolls back to the last commit that verifies, which may drop acknowledged records), is
    /// [`StoreError::DatabaseDamaged`]: the caller must not act on what it holds. A handle
    /// shared with a long-running owner cannot be checked while open; that owner checks it.
    pub(crate) fn verify(&self) -> Result<(), StoreError> {
        let Handle::Transient { root } = &self.handle else {
            return Ok(());
        };
        let path = &self.path;
        let damaged = |detail: String| StoreError::DatabaseDamaged {
            path: path.clone(),
            detail,
        };
        self.contained(|| {
            let _guard = lock::acquire_database(root)?;
            let mut db = Database::create(path).map_err(|e| StoreError::db(path, e))?;
            let clean = db.check_integrity().map_err(|e| damaged(e.to_string()))?;
            if clean {
                Ok(())
            } else {
                self.seam.committed(path);
                Err(damaged(
                    "redb found damage and rolled it back to its last consistent commit; \
                     run `strata fsck` to see what the store still names"
                        .to_owned(),
                ))
            }
        })
    }

    /// Runs `f`, turning a panic inside it (redb's, on a damaged file) into
    /// [`StoreError::DatabaseDamaged`] and keeping the default panic message off stderr.
    fn contained<R>(&self, f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
        quiet::catch(f).unwrap_or_else(|detail| {
            tracing::debug!(path = %self.path.display(), %detail, "redb panicked");
            Err(StoreError::DatabaseDamaged {
                path: self.path.clone(),
                detail,
            })
        })
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
    ///
    /// A missing database is created (by the first transaction) only for a store that holds
    /// nothing yet: in one that holds layers or objects a fresh database would forget them
    /// all, and GC would delete them, so that is [`StoreError::DatabaseMissing`]. An import
    /// reads the database before it places anything, so a new store has its database before
    /// it has objects.
    pub(crate) fn prepare(&self) -> Result<(), StoreError> {
        match &self.handle {
            Handle::Shared(db) => self.contained(|| self.create_tables(db)),
            Handle::Transient { root } => {
                if self.path.try_exists().at(&self.path)? {
                    return Ok(());
                }
                for dir in ["layers", "objects"] {
                    let dir = root.join(dir);
                    if fs::read_dir(&dir).at(&dir)?.next().is_some() {
                        return Err(StoreError::DatabaseMissing {
                            path: self.path.clone(),
                        });
                    }
                }
                Ok(())
            }
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

/// Panics caught rather than printed: the process-wide panic hook is wrapped once so that a
/// panic on a thread inside [`catch`](quiet::catch) is not reported twice (once by the hook,
/// once as the typed error); every other panic reaches the previous hook unchanged.
mod quiet {
    use std::cell::Cell;
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::Once;

    thread_local! {
        static CATCHING: Cell<bool> = const { Cell::new(false) };
    }

    /// Runs `f`; a panic in it becomes `Err` with its message.
    pub(super) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                if !CATCHING.with(Cell::get) {
                    previous(info);
                }
            }));
        });
        let outer = CATCHING.with(|c| c.replace(true));
        // The database handle and its guard are dropped during the unwind; nothing of them is
        // used afterwards, so a broken invariant cannot be observed.
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        CATCHING.with(|c| c.set(outer));
        result.map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "redb panicked".to_owned())
        })
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

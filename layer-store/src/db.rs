//! The layer store's tables in the root's metadata database (`strata-metadb`, `strata.db`),
//! shared with the snapshotter and with every other process on the root.
//!
//! Each [`Store`](crate::Store) opens its own connections; SQLite serializes writers across
//! processes for the length of one transaction, and readers never wait. Queries on the layer
//! store's tables live here, so that no other module names SQL or SQLite.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use strata_metadb::{Database, Tx};

use crate::durable::SyncSeam;
use crate::error::{DatabaseError, IoContext, StoreError};

/// The layer store's handle on the database, and whom it tells of each commit.
#[derive(Debug)]
pub(crate) struct Db {
    inner: Database,
    /// Told of every committed write transaction.
    pub(crate) seam: Arc<dyn SyncSeam>,
}

/// Turns a SQLite failure inside a transaction into a [`StoreError`]; [`Db::read`] and
/// [`Db::write`] then name damage and long waits.
pub(crate) trait Sql<T> {
    fn sql(self) -> Result<T, StoreError>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn sql(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Database(DatabaseError(strata_metadb::Error::Sqlite(e))))
    }
}

impl Db {
    /// Opens the database of the store at `root`.
    ///
    /// A missing database is created only for a store that holds nothing yet: in one that
    /// holds layers or objects a fresh database would forget them all, and GC would delete
    /// them, so that is [`StoreError::DatabaseMissing`].
    pub(crate) fn open(root: &Path, seam: Arc<dyn SyncSeam>) -> Result<Db, StoreError> {
        let fresh = !Database::exists(root);
        if fresh {
            for dir in ["layers", "objects"] {
                let dir = root.join(dir);
                if fs::read_dir(&dir).at(&dir)?.next().is_some() {
                    return Err(StoreError::DatabaseMissing {
                        path: Db::path_in(root),
                    });
                }
            }
        }
        let inner = Database::open(root).map_err(|e| lift(root, e))?;
        if fresh {
            // The new file's name (and its log's) must outlive a power cut, or a later import
            // would leave layers that no database names.
            let dir = fs::File::open(root).at(root)?;
            seam.sync_dir(&dir, root).at(root)?;
            seam.committed(inner.path());
        }
        Ok(Db { inner, seam })
    }

    /// Where the database of the store at `root` is.
    pub(crate) fn path_in(root: &Path) -> PathBuf {
        root.join(strata_metadb::FILE)
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }

    /// Whether commits wait for the disk (see [`Durability`](crate::Durability)).
    pub(crate) fn set_durable(&self, durable: bool) -> Result<(), StoreError> {
        self.inner.set_durable(durable).map_err(|e| self.lift(e))
    }

    /// Runs `f` in a write transaction and commits it durably.
    pub(crate) fn write<R>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let out = self
            .inner
            .write(|tx| f(tx).map_err(Wrapped::Store))
            .map_err(|e| self.unwrap(e))?;
        self.seam.committed(self.path());
        Ok(out)
    }

    /// Runs `f` in a read transaction.
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.inner
            .read(|tx| f(tx).map_err(Wrapped::Store))
            .map_err(|e| self.unwrap(e))
    }

    /// Checks the database file's structure; damage is [`StoreError::DatabaseDamaged`]. Run
    /// before an operation that deletes on the strength of what the database says.
    pub(crate) fn verify(&self) -> Result<(), StoreError> {
        self.inner.check().map_err(|e| self.lift(e))
    }

    fn unwrap(&self, err: Wrapped) -> StoreError {
        match err {
            Wrapped::Db(e) | Wrapped::Store(StoreError::Database(DatabaseError(e))) => self.lift(e),
            Wrapped::Store(e) => e,
        }
    }

    fn lift(&self, err: strata_metadb::Error) -> StoreError {
        let err = match err {
            strata_metadb::Error::Sqlite(e) => self.inner.error(e),
            other => other,
        };
        lift(self.path().parent().unwrap_or(Path::new("/")), err)
    }
}

/// A metadata failure as a [`StoreError`]: damage is [`StoreError::DatabaseDamaged`].
fn lift(root: &Path, err: strata_metadb::Error) -> StoreError {
    match err {
        strata_metadb::Error::Damaged { detail, .. } => StoreError::DatabaseDamaged {
            path: Db::path_in(root),
            detail,
        },
        other => StoreError::Database(DatabaseError(other)),
    }
}

/// An error inside a transaction: the store's own, or the database's.
enum Wrapped {
    Store(StoreError),
    Db(strata_metadb::Error),
}

impl From<strata_metadb::Error> for Wrapped {
    fn from(err: strata_metadb::Error) -> Self {
        Wrapped::Db(err)
    }
}

/// A table of records keyed by id: `layers` (layer id, the diff_id hex → a
/// [`LayerMeta`](crate::record::LayerMeta) record) and `images` (image id, the manifest digest
/// hex → an [`ImageRecord`](crate::record::ImageRecord) record).
pub(crate) struct Records {
    get: &'static str,
    put: &'static str,
    remove: &'static str,
    all: &'static str,
}

pub(crate) const LAYERS: Records = Records {
    get: "SELECT meta FROM layers WHERE id = ?1",
    put: "INSERT INTO layers (id, meta) VALUES (?1, ?2)
          ON CONFLICT (id) DO UPDATE SET meta = excluded.meta",
    remove: "DELETE FROM layers WHERE id = ?1",
    all: "SELECT id, meta FROM layers ORDER BY id",
};

pub(crate) const IMAGES: Records = Records {
    get: "SELECT record FROM images WHERE id = ?1",
    put: "INSERT INTO images (id, record) VALUES (?1, ?2)
          ON CONFLICT (id) DO UPDATE SET record = excluded.record",
    remove: "DELETE FROM images WHERE id = ?1",
    all: "SELECT id, record FROM images ORDER BY id",
};

impl Records {
    pub(crate) fn get(&self, tx: &Tx<'_>, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        value(tx, self.get, id)
    }

    pub(crate) fn put(&self, tx: &Tx<'_>, id: &str, record: &[u8]) -> Result<(), StoreError> {
        execute(tx, self.put, params![id, record])
    }

    pub(crate) fn remove(&self, tx: &Tx<'_>, id: &str) -> Result<(), StoreError> {
        execute(tx, self.remove, [id])
    }

    /// Every row, ordered by id.
    pub(crate) fn all(&self, tx: &Tx<'_>) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        rows(tx, self.all, [])
    }
}

/// Ids of the `images` table that start with `prefix` (lowercase hex), ordered.
pub(crate) fn image_ids_with_prefix(tx: &Tx<'_>, prefix: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx
        .prepare("SELECT id FROM images WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id")
        .sql()?;
    stmt.query_map([prefix], |r| r.get(0))
        .and_then(Iterator::collect)
        .sql()
}

/// Rows of the `names` table: image name (tag) → image id.
pub(crate) mod names {
    use super::*;

    pub(crate) fn get(tx: &Tx<'_>, name: &str) -> Result<Option<String>, StoreError> {
        tx.query_row("SELECT image FROM names WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .sql()
    }

    /// Points `name` at image `id`; returns the image it named before.
    pub(crate) fn set(tx: &Tx<'_>, name: &str, id: &str) -> Result<Option<String>, StoreError> {
        let previous = get(tx, name)?;
        tx.execute(
            "INSERT INTO names (name, image) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET image = excluded.image",
            params![name, id],
        )
        .sql()?;
        Ok(previous)
    }

    /// Removes `name`; returns the image it named.
    pub(crate) fn remove(tx: &Tx<'_>, name: &str) -> Result<Option<String>, StoreError> {
        let previous = get(tx, name)?;
        tx.execute("DELETE FROM names WHERE name = ?1", [name])
            .sql()?;
        Ok(previous)
    }

    /// Every `(name, image id)`, ordered by name.
    pub(crate) fn all(tx: &Tx<'_>) -> Result<Vec<(String, String)>, StoreError> {
        super::rows(tx, "SELECT name, image FROM names ORDER BY name", [])
    }
}

/// Rows of the `gc_roots` table: `(owner, layer)` pairs that GC keeps alive.
pub(crate) mod gc_roots {
    use super::*;

    pub(crate) fn add(tx: &Tx<'_>, owner: &str, layer: &str) -> Result<(), StoreError> {
        tx.execute(
            "INSERT OR IGNORE INTO gc_roots (owner, layer) VALUES (?1, ?2)",
            [owner, layer],
        )
        .sql()
        .map(drop)
    }

    pub(crate) fn remove(tx: &Tx<'_>, owner: &str, layer: &str) -> Result<(), StoreError> {
        tx.execute(
            "DELETE FROM gc_roots WHERE owner = ?1 AND layer = ?2",
            [owner, layer],
        )
        .sql()
        .map(drop)
    }

    /// Removes every root of `owner`.
    pub(crate) fn remove_owner(tx: &Tx<'_>, owner: &str) -> Result<(), StoreError> {
        tx.execute("DELETE FROM gc_roots WHERE owner = ?1", [owner])
            .sql()
            .map(drop)
    }

    /// Every `(owner, layer)`, ordered.
    pub(crate) fn all(tx: &Tx<'_>) -> Result<Vec<(String, String)>, StoreError> {
        super::rows(
            tx,
            "SELECT owner, layer FROM gc_roots ORDER BY owner, layer",
            [],
        )
    }
}

/// Rows of the `object_roots` table: `(owner, object)` pairs that GC keeps alive, for objects
/// that trees outside any layer record (deduplicated snapshots) point at.
pub(crate) mod object_roots {
    use super::*;

    pub(crate) fn add(tx: &Tx<'_>, owner: &str, object: &str) -> Result<(), StoreError> {
        execute(
            tx,
            "INSERT OR IGNORE INTO object_roots (owner, object) VALUES (?1, ?2)",
            [owner, object],
        )
    }

    /// Removes every root of `owner`.
    pub(crate) fn remove_owner(tx: &Tx<'_>, owner: &str) -> Result<(), StoreError> {
        execute(tx, "DELETE FROM object_roots WHERE owner = ?1", [owner])
    }

    /// Every `(owner, object)`, ordered.
    pub(crate) fn all(tx: &Tx<'_>) -> Result<Vec<(String, String)>, StoreError> {
        super::rows(
            tx,
            "SELECT owner, object FROM object_roots ORDER BY owner, object",
            [],
        )
    }
}

/// Every owner of a GC root, of layers or of objects, once each.
pub(crate) fn root_owners(tx: &Tx<'_>) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx
        .prepare_cached("SELECT owner FROM gc_roots UNION SELECT owner FROM object_roots")
        .sql()?;
    stmt.query_map([], |r| r.get(0))
        .and_then(Iterator::collect)
        .sql()
}

/// The one value a keyed query finds, if any.
fn value<T: rusqlite::types::FromSql>(
    tx: &Tx<'_>,
    sql: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    tx.prepare_cached(sql)
        .sql()?
        .query_row([key], |r| r.get(0))
        .optional()
        .sql()
}

/// Runs a statement that returns no rows.
fn execute(tx: &Tx<'_>, sql: &str, params: impl rusqlite::Params) -> Result<(), StoreError> {
    tx.prepare_cached(sql)
        .sql()?
        .execute(params)
        .sql()
        .map(drop)
}

/// Every row of a two-column query.
fn rows<A, B>(
    tx: &Tx<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(A, B)>, StoreError>
where
    A: rusqlite::types::FromSql,
    B: rusqlite::types::FromSql,
{
    let mut stmt = tx.prepare_cached(sql).sql()?;
    stmt.query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(Iterator::collect)
        .sql()
}

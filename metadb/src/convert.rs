//! The one-time conversion of a root's redb database (`strata.redb`, earlier releases) into
//! `strata.db`.
//!
//! Crash safety: the new database is built whole under a temporary name, flushed, and renamed
//! to `strata.db`, the commit point; the root's directory is flushed after. A crash before the
//! rename leaves the temporary file, which the next conversion discards and redoes; after it,
//! `strata.db` is complete and `strata.redb` is only renamed aside. The conversion holds the
//! root's `lock` exclusively, so two processes never convert at once and no import or GC of
//! this release runs meanwhile.

use std::fs::{self, File};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use redb::{
    MultimapTableDefinition, ReadTransaction, ReadableDatabase, ReadableMultimapTable,
    ReadableTable, TableDefinition, TableError,
};
use rusqlite::{Connection, params};
use rustix::fs::FlockOperation;

use crate::error::Error;
use crate::schema::{DDL, SCHEMA_VERSION, legacy_namespace};
use crate::{FILE, LEGACY_FILE};

/// The tables of the redb database, as earlier releases defined them.
mod legacy {
    use super::*;
    pub const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("layer_store.layers");
    pub const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("layer_store.images");
    pub const NAMES: TableDefinition<&str, &str> = TableDefinition::new("layer_store.names");
    pub const GC_ROOTS: MultimapTableDefinition<&str, &str> =
        MultimapTableDefinition::new("layer_store.gc_roots");
    pub const SNAPSHOTS: TableDefinition<&str, &[u8]> =
        TableDefinition::new("snapshotter.v1.snapshots");
    pub const CHILDREN: MultimapTableDefinition<&str, &str> =
        MultimapTableDefinition::new("snapshotter.v1.children");
    pub const POOL: TableDefinition<u64, ()> = TableDefinition::new("snapshotter.v1.pool");
    pub const META: TableDefinition<&str, u64> = TableDefinition::new("snapshotter.v1.meta");
}

/// The name a converted legacy database is kept under.
const RETIRED: &str = "strata.redb.converted";
/// The name the new database is built under.
const BUILDING: &str = "strata.db.converting";

/// Converts `<root>/strata.redb` into `<root>/strata.db`, unless another process did first.
pub(crate) fn convert(root: &Path) -> Result<(), Error> {
    let from = root.join(LEGACY_FILE);
    let to = root.join(FILE);
    let lock_path = root.join("lock");
    let lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(Error::io("open", &lock_path))?;
    rustix::fs::flock(&lock, FlockOperation::LockExclusive)
        .map_err(|e| Error::io("lock", &lock_path)(e.into()))?;
    if to.exists() {
        return Ok(());
    }
    let failed = |detail: String| Error::Convert {
        from: from.clone(),
        to: to.clone(),
        detail,
    };
    let building = root.join(BUILDING);
    for leftover in [BUILDING, "strata.db.converting-journal"] {
        let path = root.join(leftover);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove", path)(e));
            }
            _ => {}
        }
    }
    let legacy = redb::Database::open(&from).map_err(|e| failed(e.to_string()))?;
    let read = legacy.begin_read().map_err(|e| failed(e.to_string()))?;
    let conn = Connection::open(&building).map_err(|e| failed(e.to_string()))?;
    // A damaged redb file may panic in redb; the root stays as it was.
    let copied = panic::catch_unwind(AssertUnwindSafe(|| copy(&read, conn)))
        .unwrap_or_else(|_| Err("redb panicked reading the database".to_owned()));
    if let Err(detail) = copied {
        let _ = fs::remove_file(&building);
        return Err(failed(detail));
    }
    File::open(&building)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("flush", &building))?;
    fs::rename(&building, &to).map_err(Error::io("rename into place", &to))?;
    File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("flush", root))?;
    tracing::info!(from = %from.display(), to = %to.display(), "converted the metadata database");
    Ok(())
}

/// Renames a legacy database aside once `strata.db` exists, so that it is never converted
/// again (which would bring back what was removed since).
pub(crate) fn retire_legacy(root: &Path) -> Result<(), Error> {
    let legacy = root.join(LEGACY_FILE);
    if root.join(FILE).exists() && legacy.exists() {
        let retired = root.join(RETIRED);
        match fs::rename(&legacy, &retired) {
            // Another process renamed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            renamed => renamed.map_err(Error::io("rename aside", &legacy))?,
        }
    }
    Ok(())
}

/// Copies every row of the legacy tables into a new database on `conn`, in one transaction.
fn copy(read: &ReadTransaction, mut conn: Connection) -> Result<(), String> {
    let s = |e: rusqlite::Error| e.to_string();
    let tx = conn.transaction().map_err(s)?;
    tx.execute_batch(DDL).map_err(s)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(s)?;
    for (table, sql) in [
        (
            legacy::LAYERS,
            "INSERT INTO layers (id, meta) VALUES (?1, ?2)",
        ),
        (
            legacy::IMAGES,
            "INSERT INTO images (id, record) VALUES (?1, ?2)",
        ),
    ] {
        each(read, table, |k: &str, v: &[u8]| {
            tx.execute(sql, params![k, v]).map(drop)
        })?;
    }
    each(read, legacy::NAMES, |name: &str, image: &str| {
        tx.execute(
            "INSERT INTO names (name, image) VALUES (?1, ?2)",
            params![name, image],
        )
        .map(drop)
    })?;
    each_pair(read, legacy::GC_ROOTS, |owner, layer| {
        tx.execute(
            "INSERT OR IGNORE INTO gc_roots (owner, layer) VALUES (?1, ?2)",
            params![owner, layer],
        )
        .map(drop)
    })?;
    let mut parents = std::collections::HashMap::new();
    each_pair(read, legacy::CHILDREN, |parent, child| {
        parents.insert(child.to_owned(), parent.to_owned());
        Ok(())
    })?;
    each(read, legacy::SNAPSHOTS, |key: &str, record: &[u8]| {
        tx.execute(
            "INSERT INTO snapshots (namespace, key, parent, record) VALUES (?1, ?2, ?3, ?4)",
            params![legacy_namespace(key), key, parents.get(key), record],
        )
        .map(drop)
    })?;
    each(read, legacy::POOL, |id: u64, (): ()| {
        tx.execute(
            "INSERT INTO snapshot_pool (id) VALUES (?1)",
            params![i64::try_from(id).unwrap_or(i64::MAX)],
        )
        .map(drop)
    })?;
    each(read, legacy::META, |name: &str, value: u64| {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)",
            params![
                format!("snapshotter.{name}"),
                i64::try_from(value).unwrap_or(i64::MAX)
            ],
        )
        .map(drop)
    })?;
    tx.commit().map_err(s)?;
    conn.close().map_err(|(_, e)| e.to_string())
}

/// Calls `f` with every row of `table`; a table the database never had has no rows.
fn each<K, V>(
    read: &ReadTransaction,
    table: TableDefinition<K, V>,
    mut f: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> rusqlite::Result<()>,
) -> Result<(), String>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let table = match read.open_table(table) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    for row in table.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        f(k.value(), v.value()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Calls `f` with every pair of multimap `table`.
fn each_pair(
    read: &ReadTransaction,
    table: MultimapTableDefinition<&str, &str>,
    mut f: impl FnMut(&str, &str) -> rusqlite::Result<()>,
) -> Result<(), String> {
    let table = match read.open_multimap_table(table) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    for row in table.iter().map_err(|e| e.to_string())? {
        let (k, values) = row.map_err(|e| e.to_string())?;
        for v in values {
            let v = v.map_err(|e| e.to_string())?;
            f(k.value(), v.value()).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

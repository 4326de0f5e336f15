//! The snapshotter's tables in the root's metadata database (`strata-metadb`): snapshots by
//! namespace and key, spare dirs, and the id counter. Queries live here, so that no other
//! module names SQL.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};
use strata_metadb::Tx;

use crate::error::{Error, Result};
use crate::record::Record;

/// The next snapshot id; ids are never reused.
const NEXT_ID: &str = "snapshotter.next_id";

/// Turns a SQLite failure into the snapshotter's [`Error`].
pub(crate) trait Sql<T> {
    fn sql(self) -> Result<T>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn sql(self) -> Result<T> {
        self.map_err(|e| Error::from(strata_metadb::Error::Sqlite(e)))
    }
}

/// The record of `key` in namespace `ns`, if any.
pub(crate) fn get(tx: &Tx<'_>, ns: &str, key: &str) -> Result<Option<Record>> {
    let bytes: Option<Vec<u8>> = tx
        .prepare_cached("SELECT record FROM snapshots WHERE namespace = ?1 AND key = ?2")
        .sql()?
        .query_row([ns, key], |r| r.get(0))
        .optional()
        .sql()?;
    bytes.map(|b| Record::decode(key, &b)).transpose()
}

/// The record of `key`, or NotFound.
pub(crate) fn require(tx: &Tx<'_>, ns: &str, key: &str) -> Result<Record> {
    get(tx, ns, key)?.ok_or_else(|| Error::NotFound {
        key: key.to_owned(),
    })
}

/// Whether `key` names a snapshot in `ns`.
pub(crate) fn exists(tx: &Tx<'_>, ns: &str, key: &str) -> Result<bool> {
    tx.prepare_cached("SELECT 1 FROM snapshots WHERE namespace = ?1 AND key = ?2")
        .sql()?
        .exists([ns, key])
        .sql()
}

/// Writes `record` as `key` (new or replacing).
pub(crate) fn put(tx: &Tx<'_>, ns: &str, key: &str, record: &Record) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO snapshots (namespace, key, parent, record) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, key) DO UPDATE SET parent = excluded.parent, record = excluded.record",
    )
    .sql()?
    .execute(params![ns, key, record.parent, record.encode()])
    .sql()
    .map(drop)
}

/// Removes `key`.
pub(crate) fn remove(tx: &Tx<'_>, ns: &str, key: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM snapshots WHERE namespace = ?1 AND key = ?2")
        .sql()?
        .execute([ns, key])
        .sql()
        .map(drop)
}

/// Whether any snapshot of `ns` has `key` as its parent.
pub(crate) fn has_children(tx: &Tx<'_>, ns: &str, key: &str) -> Result<bool> {
    tx.prepare_cached("SELECT 1 FROM snapshots WHERE namespace = ?1 AND parent = ?2 LIMIT 1")
        .sql()?
        .exists([ns, key])
        .sql()
}

/// Every snapshot of namespace `ns` (of every namespace when `None`), as
/// `(namespace, key, record)` ordered by namespace and key.
pub(crate) fn all(tx: &Tx<'_>, ns: Option<&str>) -> Result<Vec<(String, String, Record)>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT namespace, key, record FROM snapshots
             WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, key",
        )
        .sql()?;
    let rows: Vec<(String, String, Vec<u8>)> = stmt
        .query_map([ns], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(Iterator::collect)
        .sql()?;
    rows.into_iter()
        .map(|(ns, key, bytes)| {
            let record = Record::decode(&key, &bytes)?;
            Ok((ns, key, record))
        })
        .collect()
}

/// What a snapshot's mounts stack below its own dir: its ancestors' dirs and the layer-store
/// layers they sit on, topmost first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lowers {
    /// The lower dirs, topmost first.
    pub dirs: Vec<Lower>,
    /// Whether `objects/` is a data-only lower.
    pub data_lower: bool,
}

/// One lower dir of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lower {
    /// `snapshots/<id>/fs` of an ancestor.
    Snapshot(u64),
    /// The materialized tree of a layer-store layer (id).
    Layer(String),
}

/// The lowers of `record`'s mounts (its ancestors are in namespace `ns`): the record's own
/// layers, then each ancestor's dir followed by that ancestor's layers, nearest first.
pub(crate) fn lowers(tx: &Tx<'_>, ns: &str, record: &Record) -> Result<Lowers> {
    let mut lowers = Lowers {
        dirs: record.layers.iter().cloned().map(Lower::Layer).collect(),
        data_lower: record.data_lower,
    };
    let mut parent = record.parent.clone();
    while let Some(name) = parent {
        let ancestor = require(tx, ns, &name)?;
        lowers.dirs.push(Lower::Snapshot(ancestor.id));
        lowers
            .dirs
            .extend(ancestor.layers.into_iter().map(Lower::Layer));
        lowers.data_lower |= ancestor.data_lower;
        parent = ancestor.parent;
    }
    Ok(lowers)
}

/// Takes the next id and advances the counter.
pub(crate) fn allocate_id(tx: &Tx<'_>) -> Result<u64> {
    let id = next_id(tx)?;
    set_next_id(tx, id + 1)?;
    Ok(id)
}

/// Moves the id counter past `highest`, e.g. past dirs a crash left behind.
pub(crate) fn reserve_ids_through(tx: &Tx<'_>, highest: u64) -> Result<()> {
    if next_id(tx)? <= highest {
        set_next_id(tx, highest + 1)?;
    }
    Ok(())
}

fn next_id(tx: &Tx<'_>) -> Result<u64> {
    let value: Option<i64> = tx
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")
        .sql()?
        .query_row([NEXT_ID], |r| r.get(0))
        .optional()
        .sql()?;
    Ok(value.map_or(1, |v| u64::try_from(v).unwrap_or(1)))
}

fn set_next_id(tx: &Tx<'_>, next: u64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .sql()?
    .execute(params![NEXT_ID, i64::try_from(next).unwrap_or(i64::MAX)])
    .sql()
    .map(drop)
}

/// Ids of the spare dirs in the pool.
pub(crate) mod pool {
    use super::*;

    /// Takes one spare id out of the pool.
    pub(crate) fn take(tx: &Tx<'_>) -> Result<Option<u64>> {
        let id: Option<i64> = tx
            .prepare_cached("DELETE FROM snapshot_pool WHERE id = (SELECT min(id) FROM snapshot_pool) RETURNING id")
            .sql()?
            .query_row([], |r| r.get(0))
            .optional()
            .sql()?;
        Ok(id.and_then(|id| u64::try_from(id).ok()))
    }

    pub(crate) fn add(tx: &Tx<'_>, id: u64) -> Result<()> {
        tx.prepare_cached("INSERT INTO snapshot_pool (id) VALUES (?1)")
            .sql()?
            .execute([i64::try_from(id).unwrap_or(i64::MAX)])
            .sql()
            .map(drop)
    }

    /// Every spare id.
    pub(crate) fn ids(tx: &Tx<'_>) -> Result<HashSet<u64>> {
        let mut stmt = tx.prepare_cached("SELECT id FROM snapshot_pool").sql()?;
        let ids: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .sql()?;
        Ok(ids
            .into_iter()
            .filter_map(|i| u64::try_from(i).ok())
            .collect())
    }
}

//! The snapshotter's redb tables, namespaced so they can share `strata.redb` with the layer store.

use redb::{MultimapTableDefinition, ReadableTable, TableDefinition, WriteTransaction};

use crate::error::{Error, Result};
use crate::record::Record;

/// Key (or committed name) → [`Record`] encoding.
pub(crate) const SNAPSHOTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("snapshotter.v1.snapshots");
/// Parent name → child keys: finds children without a scan.
pub(crate) const CHILDREN: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("snapshotter.v1.children");
/// Ids of spare, empty, durable snapshot dirs (see `pool.rs`).
pub(crate) const POOL: TableDefinition<u64, ()> = TableDefinition::new("snapshotter.v1.pool");
/// Counters: [`NEXT_ID`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("snapshotter.v1.meta");
/// The next snapshot id; ids are never reused.
pub(crate) const NEXT_ID: &str = "next_id";

/// Creates the tables if missing, so that readers never see "table does not exist".
pub(crate) fn create(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(SNAPSHOTS)?;
    txn.open_multimap_table(CHILDREN)?;
    txn.open_table(META)?;
    txn.open_table(POOL)?;
    Ok(())
}

/// The record of `key`, if any.
pub(crate) fn get(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Record>> {
    table
        .get(key)?
        .map(|v| Record::decode(key, v.value()))
        .transpose()
}

/// The record of `key`, or NotFound.
pub(crate) fn require(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Record> {
    get(table, key)?.ok_or_else(|| Error::NotFound {
        key: key.to_owned(),
    })
}

/// What a snapshot's mounts stack below its own dir: its ancestors' dirs, then the layer-store
/// layers at the bottom of its chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lowers {
    /// Ids of the parent and its ancestors, nearest first.
    pub parent_ids: Vec<u64>,
    /// Layer ids, topmost first.
    pub layers: Vec<String>,
    /// Whether `objects/` is a data-only lower.
    pub data_lower: bool,
}

/// The lowers of `record`'s mounts.
pub(crate) fn lowers(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    record: &Record,
) -> Result<Lowers> {
    let mut lowers = Lowers {
        parent_ids: Vec::new(),
        layers: record.layers.clone(),
        data_lower: record.data_lower,
    };
    let mut parent = record.parent.clone();
    while let Some(name) = parent {
        let ancestor = require(table, &name)?;
        lowers.parent_ids.push(ancestor.id);
        lowers.layers.extend(ancestor.layers);
        lowers.data_lower |= ancestor.data_lower;
        parent = ancestor.parent;
    }
    Ok(lowers)
}

/// Takes the next id and advances the counter, at least past `floor`.
pub(crate) fn allocate_id(txn: &WriteTransaction) -> Result<u64> {
    let mut meta = txn.open_table(META)?;
    let id = meta.get(NEXT_ID)?.map_or(1, |v| v.value());
    meta.insert(NEXT_ID, id + 1)?;
    Ok(id)
}

/// Moves the id counter past `highest`, e.g. past dirs a crash left behind.
pub(crate) fn reserve_ids_through(txn: &WriteTransaction, highest: u64) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    let next = meta.get(NEXT_ID)?.map_or(1, |v| v.value());
    if next <= highest {
        meta.insert(NEXT_ID, highest + 1)?;
    }
    Ok(())
}

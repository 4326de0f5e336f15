//! Deduplicating commits: when containerd commits an extraction snapshot, the regular files of
//! its upper become the store's objects (moved, never copied, dropped when the store has the
//! bytes) and metadata-only stubs take their place, as `strata import` materializes layers
//! (`strata_layer_store::Store::dedup_tree`). Its children then mount it with `objects/` as the
//! data-only lower.
//!
//! Where stubs do not work (rootless, or an overlay without data-only lowers), each file
//! becomes instead a checkout of its bytes and metadata, or a hard link to the one the store
//! has, as hardlink-materialized layers hold theirs.

use strata_layer_store::Strategy;

use crate::error::{Error, Result};
use crate::record::Record;
use crate::snapshotter::Snapshotter;
use crate::tables;

/// The key prefix of containerd's extraction snapshots: its unpacker prepares each layer as
/// `extract-<unique> <chain id>` (`snapshots.UnpackKeyFormat`) and commits it as the chain id.
pub const EXTRACT_KEY_PREFIX: &str = "extract-";

/// `key` as its maker named it: containerd's metadata store names a snapshot
/// `<namespace>/<number>/<key>` to the snapshotters below it.
fn own_key(key: &str) -> &str {
    let mut parts = key.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(n), Some(own)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            own
        }
        _ => key,
    }
}

impl Snapshotter {
    /// Whether committing active snapshot `key` deduplicates its upper.
    pub(crate) fn dedups(&self, key: &str) -> bool {
        self.dedup_commits() && own_key(key).starts_with(EXTRACT_KEY_PREFIX)
    }

    /// How commits deduplicate: stubs as root where overlay takes data-only lowers, hard links
    /// to checkouts otherwise (probed once per handle).
    fn dedup_strategy(&self) -> Strategy {
        *self
            .dedup_strategy
            .get_or_init(strata_layer_store::probe_strategy)
    }

    /// Deduplicates the upper of active snapshot `key` (read as `record`) before its commit;
    /// returns the record as it now is.
    ///
    /// With stubs, the record is marked first as mounting over `objects/`, so that whatever
    /// happens next its mounts find the stubs' data and its removal drops the GC roots of its
    /// objects (they are its [`Record::gc_owner`]'s). Hard links need neither.
    pub(crate) fn dedup_upper(&self, key: &str, record: Record) -> Result<Record> {
        let strategy = self.dedup_strategy();
        let record = if record.data_lower || strategy != Strategy::Stub {
            record
        } else {
            let ns = self.namespace().to_owned();
            let key = key.to_owned();
            self.batcher().write(move |tx| {
                let mut current = tables::require(tx, &ns, &key)?;
                if current.id != record.id {
                    // Removed and prepared again meanwhile.
                    return Err(Error::NotFound { key });
                }
                current.data_lower = true;
                tables::put(tx, &ns, &key, &current)?;
                Ok(crate::batch::Applied::value(current))
            })?
        };
        let upper = self.layout().upper(record.id);
        let report = self
            .store()
            .dedup_tree(&upper, &record.gc_owner(), Some(strategy))
            .map_err(|e| Error::Store(Box::new(e.into())))?;
        tracing::info!(
            key,
            files = report.files,
            new_objects = report.new_objects,
            shared_bytes = report.shared_bytes,
            skipped = report.skipped,
            "deduplicated the commit"
        );
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_names_extraction_snapshots_under_its_namespace_and_a_number() {
        assert_eq!(
            own_key("k8s.io/12/extract-1 sha256:ab"),
            "extract-1 sha256:ab"
        );
        assert_eq!(own_key("extract-1 sha256:ab"), "extract-1 sha256:ab");
        assert_eq!(own_key("a/b/extract-1"), "a/b/extract-1");
    }
}

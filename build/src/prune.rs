//! Expiry of the build cache: entries no build used for a while lose their GC roots, so that
//! the layer store's GC collects layers no image needs.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use strata_layer_store::Store;

use crate::backend;
use crate::cache::{self, Cache, Entry};
use crate::error::Result;

/// How to prune.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Keep entries a build used within this long.
    pub keep: Duration,
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
}

impl PruneOptions {
    /// Keep what was used within `keep`; remove the rest.
    pub fn keep(keep: Duration) -> PruneOptions {
        PruneOptions {
            keep,
            dry_run: false,
        }
    }
}

/// What [`prune_cache`] removed (or would remove, on a dry run).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Entries removed (expired).
    pub removed: usize,
    /// Entries kept (used recently).
    pub kept: usize,
    /// Whether a running build held the store, so that nothing was removed.
    pub busy: bool,
}

/// Removes the cache entries of `store` that no build used within `options.keep`, and the GC
/// roots of every cache entry that is gone (expired now, or lost to a crash). Run it before
/// [`Store::gc`]: layers only expired entries held then go.
///
/// It works while no process holds the store: a running build holds it for its whole length, so
/// that no entry it uses loses its layers under it. Then nothing is removed and
/// [`PruneReport::busy`] says so.
pub fn prune_cache(store: &Store, options: PruneOptions) -> Result<PruneReport> {
    let cache = Cache::existing(store.root());
    let expired =
        |entry: &Entry| cache::now().saturating_sub(entry.last_used) >= options.keep.as_secs();
    let mut report = PruneReport::default();
    if options.dry_run {
        for (_, entry) in cache.entries()? {
            match expired(&entry) {
                true => report.removed += 1,
                false => report.kept += 1,
            }
        }
        return Ok(report);
    }
    // Read again under the store's exclusive lock: no build changes the cache meanwhile.
    let done = backend::prune_gc_roots(store, cache::OWNER_PREFIX, || {
        let mut live = HashSet::new();
        for (_, entry) in cache.entries()? {
            if expired(&entry) {
                // The file goes first: a crash before the roots go leaves roots of no entry,
                // which the next prune drops.
                cache.remove(&entry.key)?;
                report.removed += 1;
            } else {
                live.insert(cache::owner(&entry.key));
                report.kept += 1;
            }
        }
        Ok(live)
    })?;
    report.busy = !done;
    Ok(report)
}

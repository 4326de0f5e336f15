//! Expiry of the build cache: entries no build used for a while lose their GC roots, so that
//! the layer store's GC collects layers no image needs.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use strata_layer_store::Store;

use crate::backend;
use crate::cache::{self, Cache};
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
    /// GC roots of the cache dropped (of removed entries, or naming no entry).
    pub roots: usize,
}

/// Removes the cache entries of `store` that no build used within `options.keep`, with their
/// GC roots, and GC roots of the cache that name no entry. Run it before [`Store::gc`]: layers only
/// expired entries held then go. No build may run on the store meanwhile (a running build
/// keeps the store's database, so a `strata gc` in another process waits or fails).
pub fn prune_cache(store: &Store, options: PruneOptions) -> Result<PruneReport> {
    prune_at(store, store.root(), options)
}

fn prune_at(store: &Store, root: &Path, options: PruneOptions) -> Result<PruneReport> {
    let cache = Cache::existing(root);
    let now = cache::now();
    let dry_run = options.dry_run;
    let mut report = PruneReport::default();
    let mut live = HashSet::new();
    let roots = backend::gc_roots(store)?;
    for (_, entry) in cache.entries()? {
        // Strictly younger than `keep`: a zero `keep` expires everything.
        if now.saturating_sub(entry.last_used) < options.keep.as_secs() {
            report.kept += 1;
            live.insert(cache::owner(&entry.key));
            continue;
        }
        // The root goes first: a crash then leaves an entry whose layer may be collected,
        // which a build treats as a miss, never a hit on a missing layer.
        let owner = cache::owner(&entry.key);
        for (_, layer) in roots.iter().filter(|(o, _)| *o == owner) {
            if !dry_run {
                backend::remove_gc_root(store, &owner, layer)?;
            }
            report.roots += 1;
        }
        if !dry_run {
            cache.remove(&entry.key)?;
        }
        report.removed += 1;
    }
    for (owner, layer) in &roots {
        if owner.starts_with(cache::OWNER_PREFIX) && !live.contains(owner) {
            let key = &owner[cache::OWNER_PREFIX.len()..];
            if !cache.contains(key) {
                if !dry_run {
                    backend::remove_gc_root(store, owner, layer)?;
                }
                report.roots += 1;
            }
        }
    }
    Ok(report)
}

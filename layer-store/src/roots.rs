//! GC roots: the layers and objects that something other than an image (a snapshot) needs,
//! by owner.

use std::collections::HashSet;

use crate::db::{gc_roots, object_roots};
use crate::error::StoreError;
use crate::lock::{self, LockMode};
use crate::store::Store;

impl Store {
    /// Registers layer `layer` as needed by `owner` (e.g. a snapshot); GC keeps it, and every
    /// object it references, until [`remove_gc_root`](Store::remove_gc_root).
    pub fn add_gc_root(&self, owner: &str, layer: &str) -> Result<(), StoreError> {
        self.db.write(|tx| gc_roots::add(tx, owner, layer))
    }

    /// Registers every layer of `layers` as needed by `owner`, in one transaction.
    pub fn add_gc_roots(&self, owner: &str, layers: &[String]) -> Result<(), StoreError> {
        self.db.write(|tx| {
            layers
                .iter()
                .try_for_each(|layer| gc_roots::add(tx, owner, layer))
        })
    }

    /// Undoes [`add_gc_root`](Store::add_gc_root).
    pub fn remove_gc_root(&self, owner: &str, layer: &str) -> Result<(), StoreError> {
        self.db.write(|tx| gc_roots::remove(tx, owner, layer))
    }

    /// Removes every GC root of `owner`, of layers and of objects
    /// ([`dedup_tree`](Store::dedup_tree)), in one transaction.
    pub fn remove_gc_roots_of(&self, owner: &str) -> Result<(), StoreError> {
        self.db.write(|tx| {
            gc_roots::remove_owner(tx, owner)?;
            object_roots::remove_owner(tx, owner)
        })
    }

    /// Removes the GC roots of every owner whose name starts with `prefix` and is not in the
    /// set `live` returns: roots a crash left behind after their owner went away. `live` is
    /// called while no process holds the store ([`hold`](Store::hold), imports, GC), so an
    /// owner that registers its roots under a hold before recording itself is never caught
    /// half-way. When some process holds the store, nothing is done and `false` returned.
    ///
    /// # Errors
    /// The lock or the database fails, or `live` does.
    pub fn prune_gc_roots<E: From<StoreError>>(
        &self,
        prefix: &str,
        live: impl FnOnce() -> Result<HashSet<String>, E>,
    ) -> Result<bool, E> {
        let Some(_lock) = lock::try_acquire(&self.root().join("lock"), LockMode::Exclusive)? else {
            return Ok(false);
        };
        let live = live()?;
        // Owners only: a deduplicated snapshot roots thousands of objects.
        let stale: HashSet<String> = self
            .db
            .read(crate::db::root_owners)?
            .into_iter()
            .filter(|owner| owner.starts_with(prefix) && !live.contains(owner))
            .collect();
        if !stale.is_empty() {
            tracing::info!(?stale, "dropping GC roots of owners that are gone");
            self.db.write(|tx| {
                stale.iter().try_for_each(|o| {
                    gc_roots::remove_owner(tx, o)?;
                    object_roots::remove_owner(tx, o)
                })
            })?;
        }
        Ok(true)
    }

    /// Every `(owner, layer)` GC root.
    pub fn gc_roots(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.read(gc_roots::all)
    }

    /// Every `(owner, object)` GC root: objects of deduplicated trees
    /// ([`dedup_tree`](Store::dedup_tree)), as hex ids.
    pub fn object_roots(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.read(object_roots::all)
    }
}

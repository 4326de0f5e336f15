//! Snapshots on layer-store images: a container's writable rootfs stacked on an image's
//! materialized layers, without copying them.

use std::sync::atomic::{AtomicU64, Ordering};

use strata_layer_store::Strategy;

use crate::MountSpec;
use crate::error::{Error, Result};
use crate::info::{Kind, Labels};
use crate::record::{GC_OWNER_PREFIX, now_nanos};
use crate::snapshotter::{Base, Placement, Snapshotter};

impl Snapshotter {
    /// Prepares active snapshot `key` on image `image` of this root's store and returns its
    /// mounts: an overlay whose lowers are the image's layer trees (topmost first),
    /// materialized on demand, with the store's `objects/` as a data-only lower when they are
    /// stubs. The upper is a plain overlay upper, so Commit, children and containerd's differ
    /// work as usual.
    ///
    /// While the snapshot (or what it is committed as) exists, the layer store's GC keeps its
    /// layers: they are registered as GC roots before the snapshot's record commits, and
    /// dropped after it is removed.
    pub fn prepare_on_image(
        &self,
        key: &str,
        image: &str,
        labels: Labels,
    ) -> Result<Vec<MountSpec>> {
        let store = self.store();
        let layer_error = |source| Error::Image {
            image: image.to_owned(),
            source: Box::new(source),
        };
        // Until the GC roots commit, only this hold keeps a GC in another process from
        // removing the layers of an image removed meanwhile; it also keeps `cleanup` from
        // taking the roots for leftovers before the record names them.
        let _hold = store.hold().map_err(layer_error)?;
        let record = store.image(image).map_err(layer_error)?;
        let base = Base {
            layers: record.layers.iter().rev().map(|d| d.hex()).collect(),
            image: Some(record.id()),
            ..Base::default()
        };
        let placement =
            self.create_on_layers(Kind::Active, key, None, base, labels, layer_error)?;
        Ok(self.specs(&placement))
    }
}

impl Snapshotter {
    /// Creates snapshot `key` of `kind` on `parent`, sitting on the store's layers
    /// `base.layers` (ids, topmost first): materializes them, registers them as GC roots of a
    /// new owner, then commits the record naming that owner. The caller holds the store
    /// ([`strata_layer_store::Store::hold`]) from before it read the layers until this returns;
    /// `layer_error` wraps what the layer store says.
    pub(crate) fn create_on_layers(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        base: Base,
        labels: Labels,
        layer_error: impl Fn(strata_layer_store::StoreError) -> Error,
    ) -> Result<Placement> {
        let store = self.store();
        let strategies = store
            .materialize_layers(&base.layers, None)
            .map_err(|e| layer_error(e.into()))?;
        let owner = new_gc_owner();
        store
            .add_gc_roots(&owner, &base.layers)
            .map_err(&layer_error)?;
        let base = Base {
            data_lower: strategies.contains(&Strategy::Stub),
            gc_owner: Some(owner.clone()),
            ..base
        };
        self.create(kind, key, parent, base, labels)
            .inspect_err(|_| {
                if let Err(err) = store.remove_gc_roots_of(&owner) {
                    tracing::warn!(%owner, error = &err as &dyn std::error::Error, "cannot drop GC roots; cleanup will");
                }
            })
    }
}

/// A GC-root owner name no other snapshot, in any process, has.
fn new_gc_owner() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{GC_OWNER_PREFIX}{}.{}.{}",
        std::process::id(),
        now_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

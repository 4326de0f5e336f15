//! Snapshots on layer-store images: a container's writable rootfs stacked on an image's
//! materialized layers, without copying them.

use strata_layer_store::{Store, Strategy};

use crate::MountSpec;
use crate::error::{Error, Result};
use crate::info::{Kind, Labels};
use crate::snapshotter::{Base, Snapshotter};

impl Snapshotter {
    /// Prepares active snapshot `key` on image `image` of `store` and returns its mounts: an
    /// overlay whose lowers are the image's layer trees (topmost first), materialized on
    /// demand, with the store's `objects/` as a data-only lower when they are stubs. The upper
    /// is a plain overlay upper, so Commit, children and containerd's differ work as usual.
    ///
    /// `store` must share this snapshotter's root and database
    /// (`Store::open_with_db(root, snapshotter.database())`). While the snapshot (or what it is
    /// committed as) exists, the layer store's GC keeps its layers: the GC roots
    /// `snapshotter:<id>` are written in the same transaction as the snapshot's record.
    pub fn prepare_on_image(
        &self,
        key: &str,
        store: &Store,
        image: &str,
        labels: Labels,
    ) -> Result<Vec<MountSpec>> {
        if store.root() != self.root() {
            return Err(Error::ForeignStore {
                root: store.root().to_owned(),
            });
        }
        let layer_error = |source| Error::Image {
            image: image.to_owned(),
            source: Box::new(source),
        };
        // Until the snapshot's record (and with it its GC roots) commits, only this hold keeps
        // a GC in another process from removing the layers of an image removed meanwhile.
        let _hold = store.hold().map_err(layer_error)?;
        let record = store.image(image).map_err(layer_error)?;
        let layers: Vec<String> = record.layers.iter().rev().map(|d| d.hex()).collect();
        let strategies = store
            .materialize_layers(&layers, None)
            .map_err(layer_error)?;
        let base = Base {
            data_lower: strategies.contains(&Strategy::Stub),
            layers,
            image: Some(record.id()),
        };
        let placement = self.create(Kind::Active, key, None, base, labels)?;
        Ok(self.specs(&placement))
    }
}

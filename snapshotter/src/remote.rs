//! Remote snapshots, containerd's protocol for layers a snapshotter can provide without an
//! unpack: here, layers the store already holds (from `strata pull` or `strata import`).
//!
//! containerd's unpacker prepares each layer's extraction snapshot with the label
//! [`TARGET_LABEL`] set to the layer's chain ID. When the store holds that chain,
//! [`Snapshotter::prepare_remote`] commits a snapshot over the layer's materialized tree, with
//! that label and the parent containerd asked for, and answers AlreadyExists. containerd then
//! finds it by a Walk (`labels."containerd.io/snapshot.ref"==CHAIN,parent=="PARENT"`), records
//! it as the chain's snapshot, and neither fetches nor unpacks the layer.

use strata_layer_store::StoreError;

use crate::MountSpec;
use crate::error::{Error, Result};
use crate::info::{Kind, Labels};
use crate::snapshotter::{Base, Snapshotter};

/// The label containerd's unpacker puts on an extraction snapshot: the chain ID of the layer
/// it is about to unpack.
pub const TARGET_LABEL: &str = "containerd.io/snapshot.ref";

impl Snapshotter {
    /// containerd's Prepare with remote snapshots: when `labels` carry [`TARGET_LABEL`] and the
    /// store holds that chain, commits the chain's snapshot (see
    /// [`Snapshotter::commit_remote`]) and fails with [`Error::RemoteSnapshot`] (AlreadyExists),
    /// creating nothing under `key`; otherwise prepares `key` as [`Snapshotter::prepare`] does.
    pub fn prepare_remote(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<MountSpec>> {
        if let Some(target) = labels.get(TARGET_LABEL)
            && let Some(name) = self.commit_remote(target, parent, &labels)?
        {
            return Err(Error::RemoteSnapshot {
                key: key.to_owned(),
                target: target.clone(),
                name,
            });
        }
        self.prepare(key, parent, labels)
    }

    /// Commits, on the committed snapshot `parent`, a snapshot of the layer whose chain ID is
    /// `target` (`sha256:…`), taken from an image of the store that has it: the layer's
    /// materialized tree is its content, no file is copied. Its labels are `labels`. Returns
    /// its name, or `None` when no image of the store has that chain.
    ///
    /// The name is made of `target` and `parent`, so asking again (from another containerd
    /// namespace, say) finds the same snapshot. While it exists the layer store's GC keeps the
    /// layer (a GC root of the snapshot, dropped when it is removed); removing it never
    /// removes the layer, which images and other snapshots of the store may still need.
    pub fn commit_remote(
        &self,
        target: &str,
        parent: Option<&str>,
        labels: &Labels,
    ) -> Result<Option<String>> {
        let name = remote_name(target, parent);
        if self.read(&name).is_ok_and(|r| r.kind == Kind::Committed) {
            return Ok(Some(name));
        }
        let store = self.store();
        let layer_error = |source: StoreError| Error::Image {
            image: target.to_owned(),
            source: Box::new(source),
        };
        // Keeps a GC in another process from removing the layer between the read of the
        // images and the commit of its GC root.
        let _hold = store.hold().map_err(layer_error)?;
        let Some(layer) = layer_of_chain(&store.images().map_err(layer_error)?, target) else {
            return Ok(None);
        };
        let base = Base {
            layers: vec![layer],
            ..Base::default()
        };
        let created = self.create_on_layers(
            Kind::Committed,
            &name,
            parent,
            base,
            labels.clone(),
            layer_error,
        );
        match created {
            Ok(_) => {
                tracing::info!(%target, %name, "remote snapshot from the store's layer");
                Ok(Some(name))
            }
            // Made meanwhile by another Prepare of the same chain: the same snapshot.
            Err(Error::AlreadyExists { .. }) => Ok(Some(name)),
            Err(err) => Err(err),
        }
    }
}

/// The name of the remote snapshot of chain `target` on `parent`.
fn remote_name(target: &str, parent: Option<&str>) -> String {
    match parent {
        Some(parent) => format!("strata.remote/{target}@{parent}"),
        None => format!("strata.remote/{target}"),
    }
}

/// The id of the top layer of chain `target` in any of `images`.
fn layer_of_chain(images: &[strata_layer_store::ImageRecord], target: &str) -> Option<String> {
    images.iter().find_map(|image| {
        let at = image
            .chain_ids
            .iter()
            .position(|c| c.to_string() == target)?;
        image.layers.get(at).map(|diff_id| diff_id.hex())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_by_parent() {
        assert_eq!(remote_name("sha256:ab", None), "strata.remote/sha256:ab");
        assert_ne!(
            remote_name("sha256:ab", Some("x")),
            remote_name("sha256:ab", Some("y"))
        );
    }
}

//! Materialization: a layer as a read-only directory tree usable as an overlay lower, built under
//! `tmp/` and renamed to `layers/<id>/tree`, without copying file data where the machine allows.
//!
//! Whiteouts (`.wh.name`) become overlay whiteouts and `.wh..wh..opq` an opaque directory, so a
//! stack of materialized layers mounts to what applying the layers in order gives.

mod tree;

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::durable::Written;
use crate::error::{IoContext, StoreError};
use crate::lock::LockMode;
use crate::record::{self, Kind, LayerMeta, Strategy};
use crate::store::Store;
pub(crate) use tree::{Checkout, build_tree, checkout_path};

/// Why a layer could not be materialized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterializeError {
    /// An entry lies below a non-directory (a symlink, say) of the same layer.
    #[error("layer entry {path:?} lies below a non-directory")]
    BelowNonDirectory {
        /// The entry.
        path: String,
    },
    /// A hard link names something other than a regular file this layer created and still
    /// holds (a directory, a symlink, a path through a symlink, or itself).
    #[error(
        "layer entry {path:?} is a hard link to {target:?}, which is not a regular file of the layer"
    )]
    BadHardlink {
        /// The link.
        path: String,
        /// What it names.
        target: String,
    },
    /// The strategy needs privileges this process lacks.
    #[error("strategy {} needs root", strategy.name())]
    NeedsRoot {
        /// The strategy.
        strategy: Strategy,
    },
    /// The file system cannot share extents (reflink).
    #[error("{path}: the file system cannot reflink")]
    ReflinkUnsupported {
        /// The file being cloned.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The store failed underneath (I/O, the database, a layer or object it does not hold).
    #[error(transparent)]
    Store(Box<StoreError>),
}

/// The strategy this machine allows best: metadata-only stubs as root when overlay takes
/// data-only lowers (`datadir+`), hardlinks otherwise.
pub fn probe_strategy() -> Strategy {
    let features = strata_cow::probe::Features::probe();
    if rustix::process::geteuid().is_root() && features.overlay() && features.datadir_add() {
        Strategy::Stub
    } else {
        Strategy::Hardlink
    }
}

impl Store {
    /// Materializes layer `id` as `layers/<id>/tree` with `strategy` (probed when `None`),
    /// replacing an existing tree of another strategy; returns the strategy used.
    pub fn materialize(
        &self,
        id: &str,
        strategy: Option<Strategy>,
    ) -> Result<Strategy, MaterializeError> {
        Ok(self.materialize_layer(id, strategy)?)
    }

    /// [`materialize`](Store::materialize), failing with the broad error.
    fn materialize_layer(
        &self,
        id: &str,
        strategy: Option<Strategy>,
    ) -> Result<Strategy, StoreError> {
        let _lock = self.lock(LockMode::Shared)?;
        let strategy = strategy.unwrap_or_else(probe_strategy);
        let read_meta = || {
            self.layer_meta(id)?
                .ok_or_else(|| StoreError::LayerNotFound { id: id.to_owned() })
        };
        if self.is_materialized(id, &read_meta()?, strategy) {
            return Ok(strategy);
        }
        // One materialization of a layer at a time, in any process: a second one would find
        // the first's tree half-published, or replace it under a mount that uses it. The
        // first one's tree is found once its turn ends.
        let _layer = crate::lock::acquire_dir(&self.layer_dir(id))?;
        let meta = read_meta()?;
        if self.is_materialized(id, &meta, strategy) {
            return Ok(strategy);
        }
        let record = self.read_layer_record(id)?;
        let staging = self.new_tmp_dir("tree")?;
        let result = (|| {
            let tree = staging.join("tree");
            build_tree(self, strategy, &tree, &record.entries)?;
            let dest = self.layer_tree(id);
            if dest.exists() {
                let old = staging.join("old");
                fs::rename(&dest, &old).at(&dest)?;
            }
            fs::rename(&tree, &dest).at(&dest)?;
            // A crash before the commit leaves a tree the record does not name: the next
            // materialize replaces it.
            let mut written = Written::default();
            written.add_tree(&dest)?;
            written.add(self.layer_dir(id));
            self.sync(written)
        })();
        let _ = fs::remove_dir_all(&staging);
        result?;
        self.db.write(|tx| {
            let updated = LayerMeta {
                materialized: Some(strategy),
                ..meta.clone()
            };
            crate::db::LAYERS.put(tx, id, &record::encode(Kind::LayerMeta, &updated)?)
        })?;
        Ok(strategy)
    }

    /// Whether layer `id`, whose metadata row is `meta`, has its tree with `strategy` already.
    fn is_materialized(&self, id: &str, meta: &LayerMeta, strategy: Strategy) -> bool {
        meta.materialized == Some(strategy) && self.layer_tree(id).is_dir()
    }

    /// Materializes several layers in parallel (see [`Store::materialize`]). Layers already
    /// materialized with the strategy are found in one read of the database, not one each.
    pub fn materialize_layers(
        &self,
        ids: &[String],
        strategy: Option<Strategy>,
    ) -> Result<Vec<Strategy>, MaterializeError> {
        Ok(self.materialize_all(ids, strategy)?)
    }

    /// [`materialize_layers`](Store::materialize_layers), failing with the broad error.
    pub(crate) fn materialize_all(
        &self,
        ids: &[String],
        strategy: Option<Strategy>,
    ) -> Result<Vec<Strategy>, StoreError> {
        use rayon::prelude::*;
        let strategy = strategy.unwrap_or_else(probe_strategy);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let metas = self.layer_metas(&refs)?;
        ids.par_iter()
            .zip(metas)
            .map(|(id, meta)| match meta {
                Some(meta) if self.is_materialized(id, &meta, strategy) => Ok(strategy),
                _ => self.materialize_layer(id, Some(strategy)),
            })
            .collect()
    }
}

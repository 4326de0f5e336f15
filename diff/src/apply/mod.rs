//! Applying an OCI layer onto a directory, safely.

mod entry;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use strata_codec::Limits;
use strata_codec::tar::TarError;
use strata_cow::conventions::Namespace;

/// What happens to a layer's whiteouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Whiteouts {
    /// Delete what they name: the target is the full tree of the layers below (an unpacked
    /// rootfs, a copy-strategy materialization).
    #[default]
    Remove,
    /// Keep them in overlay's own format, for a directory that will be an overlay lower: a
    /// `.wh.<name>` becomes a char 0:0 device and `.wh..wh..opq` marks its directory opaque
    /// (`overlay.opaque=y` in this namespace).
    Overlay(Namespace),
}

/// Whose owner the applied entries get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// The uid and gid recorded in the layer (needs `CAP_CHOWN`).
    #[default]
    FromLayer,
    /// The applying process's own (rootless extraction).
    Caller,
}

/// How a layer is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// What whiteouts do.
    pub whiteouts: Whiteouts,
    /// Who owns the applied entries.
    pub ownership: Ownership,
    /// What the layer may make the applier spend: the layer store's import reads layers
    /// within the same limits, so the two accept the same layers.
    pub limits: Limits,
}

impl ApplyOptions {
    /// With [`whiteouts`](ApplyOptions::whiteouts) set to `whiteouts`.
    pub fn with_whiteouts(mut self, whiteouts: Whiteouts) -> Self {
        self.whiteouts = whiteouts;
        self
    }

    /// With [`ownership`](ApplyOptions::ownership) set to `ownership`.
    pub fn with_ownership(mut self, ownership: Ownership) -> Self {
        self.ownership = ownership;
        self
    }

    /// With [`limits`](ApplyOptions::limits) set to `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ApplyStats {
    /// Entries applied (whiteouts and skipped entries not included).
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes skipped because this process may not create them (a user namespace).
    pub skipped_devices: u64,
}

/// Why applying a layer failed. Entries applied before the failure stay applied: apply onto a
/// staging directory and rename it into place to make a layer appear atomically.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The target directory cannot be opened.
    #[error("opening target {path}")]
    Root {
        /// The target.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The layer stream is not a readable (compressed) stream.
    #[error("reading the layer stream")]
    Stream(#[source] io::Error),
    /// The layer tar is malformed or refused (an unsafe path, an invalid whiteout, an
    /// unsupported entry type, over a limit, …): the error says what and where.
    #[error(transparent)]
    Layer(#[from] TarError),
    /// A hardlink names a target that does not exist in the root.
    #[error("entry {path:?}: hardlink target {target:?} does not exist")]
    MissingLinkTarget {
        /// The entry's path in the layer.
        path: PathBuf,
        /// The link target's path in the layer.
        target: PathBuf,
    },
    /// Creating or updating an entry failed.
    #[error("entry {path:?}")]
    Entry {
        /// The entry's path in the layer.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Applies the OCI layer read from `layer` (plain, gzip or zstd: detected from its first bytes)
/// onto the directory `root`.
///
/// The layer is read by [`strata_codec::tar::TarReader`] within [`ApplyOptions::limits`], the
/// reader and limits the layer store imports with: what it refuses (unsafe paths, invalid
/// whiteouts, unsupported entry types, anything below a non-directory of the layer) is refused
/// before anything of that entry is written.
///
/// No entry, symlink chain, hardlink target or whiteout can touch anything outside `root`:
/// every path is resolved by the kernel inside it. Whiteouts apply only to what was there
/// before this layer, wherever they appear in it (an opaque marker after the directory's new
/// children still keeps those); a file and a directory can replace each other; an existing
/// directory keeps its children and takes the layer's metadata. Metadata is set in the order
/// owner, xattrs, mode (so setuid bits survive), and directory mtimes last. Missing parents
/// are created with mode 0755. Zero runs in file data become holes, so a sparse entry stays
/// sparse.
pub fn apply_layer(
    layer: impl Read,
    root: &Path,
    options: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    let target = crate::confined::Root::open(root).map_err(|source| ApplyError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let reader = strata_codec::compression::decompressed(layer).map_err(ApplyError::Stream)?;
    entry::Applier::new(target, options).run(reader)
}

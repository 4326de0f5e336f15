//! Applying an OCI layer onto a directory, safely.

mod entry;
mod stream;
mod tar;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

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
pub struct ApplyOptions {
    /// What whiteouts do.
    pub whiteouts: Whiteouts,
    /// Who owns the applied entries.
    pub ownership: Ownership,
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
        source: io::Error,
    },
    /// The layer stream is not a readable (compressed) tar.
    #[error("reading the layer stream")]
    Stream(#[source] io::Error),
    /// The tar stream is malformed.
    #[error("malformed layer at byte {offset} of the tar stream: {reason}")]
    Malformed {
        /// Offset in the uncompressed tar stream of the member at fault.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// An entry's name is unusable: empty, or with a `..` component.
    #[error("entry {path:?}: unsafe path")]
    UnsafePath {
        /// The entry name as written in the layer.
        path: PathBuf,
    },
    /// A whiteout names nothing valid (`.wh.`, `.wh..`, `.wh..wh.<x>` other than the opaque
    /// marker).
    #[error("entry {path:?}: invalid whiteout")]
    InvalidWhiteout {
        /// The entry name as written in the layer.
        path: PathBuf,
    },
    /// A hardlink names a target that does not exist in the root.
    #[error("entry {path:?}: hardlink target {target:?} does not exist")]
    MissingLinkTarget {
        /// The entry name as written in the layer.
        path: PathBuf,
        /// The link target as written in the layer.
        target: PathBuf,
    },
    /// A tar entry type a layer may not carry.
    #[error("entry {path:?}: unsupported tar entry type {kind:?}")]
    Unsupported {
        /// The entry name as written in the layer.
        path: PathBuf,
        /// The tar type flag.
        kind: char,
    },
    /// Creating or updating an entry failed.
    #[error("entry {path:?}")]
    Entry {
        /// The entry name as written in the layer.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl From<tar::ReadError> for ApplyError {
    fn from(e: tar::ReadError) -> Self {
        match e {
            tar::ReadError::Io(e) => ApplyError::Stream(e),
            tar::ReadError::Malformed(m) => ApplyError::Malformed {
                offset: m.offset,
                reason: m.reason,
            },
        }
    }
}

/// Applies the OCI layer read from `layer` (plain, gzip or zstd: detected from its first bytes)
/// onto the directory `root`.
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
    let reader = stream::decompressed(layer).map_err(ApplyError::Stream)?;
    entry::Applier::new(target, options).run(reader)
}

//! The error every mount operation returns.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The role a directory plays in an overlay mount, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerRole {
    /// A lower directory that merges with the others (`lowerdir`, `lowerdir+`).
    Lower,
    /// A data-only lower directory (`::dir`, `datadir+`).
    DataLower,
    /// The writable upper directory.
    Upper,
    /// The overlay's scratch directory, on the upper's filesystem.
    Work,
    /// The source of a bind mount.
    BindSource,
}

impl fmt::Display for LayerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerRole::Lower => "lower dir",
            LayerRole::DataLower => "data-only lower dir",
            LayerRole::Upper => "upper dir",
            LayerRole::Work => "work dir",
            LayerRole::BindSource => "bind source",
        })
    }
}

/// Why a mount, unmount or mount description failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// Too few lower dirs: an overlay needs one, a read-only one (no upper) two, counting
    /// data-only lowers. Bind-mount a single layer read-only instead.
    #[error(
        "this overlay needs at least {needed} lower dirs, got {count} (a read-only view of one \
         layer is a read-only bind mount)"
    )]
    TooFewLayers {
        /// Lower plus data-only lower dirs given.
        count: usize,
        /// The kernel's minimum for this mount.
        needed: usize,
    },
    /// More layers than the kernel stacks; refused before the kernel is asked.
    #[error("{count} lower dirs exceed the kernel's limit of {max}")]
    TooManyLayers {
        /// Lower plus data-only lower dirs requested.
        count: usize,
        /// The kernel's `OVL_MAX_STACK`.
        max: usize,
    },
    /// A directory of the mount could not be opened or was refused by the kernel.
    #[error("{role} {path}{}", detail_suffix(.detail))]
    Layer {
        /// What the directory was for.
        role: LayerRole,
        /// The directory as given.
        path: PathBuf,
        /// The kernel's own explanation (the fs context log), when it gave one.
        detail: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Options that the kernel would refuse together.
    #[error("conflicting overlay options: {reason}")]
    Conflict {
        /// Which options conflict and why.
        reason: &'static str,
    },
    /// The legacy option string does not fit in the page `mount(2)` copies, even compacted.
    #[error(
        "overlay options are {len} bytes even relative to {parent}, over the {max} bytes mount(2) takes"
    )]
    OptionsTooLong {
        /// Length of the compacted option string.
        len: usize,
        /// Largest length the kernel accepts.
        max: usize,
        /// The common parent the paths were made relative to.
        parent: PathBuf,
    },
    /// A path that the chosen mount interface cannot carry.
    #[error("path {path} cannot be used here: {reason}")]
    UnsupportedPath {
        /// The offending path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The running kernel lacks something this mount needs.
    #[error("not supported by this kernel: {what}")]
    Unsupported {
        /// The missing feature.
        what: &'static str,
    },
    /// A system call of the mount API failed.
    #[error("{op}{}", detail_suffix(.detail))]
    Kernel {
        /// The call, e.g. `fsconfig(index)` or `fsmount`.
        op: &'static str,
        /// The kernel's own explanation (the fs context log), when it gave one.
        detail: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Attaching, unmounting or remounting at a target failed (e.g. `EBUSY`).
    #[error("{op} {target}")]
    Target {
        /// The operation, e.g. `umount`.
        op: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// [`unmount`](crate::unmount) of a path where nothing is mounted (`EINVAL`).
    #[error("{target}: not a mount point")]
    NotMounted {
        /// The path.
        target: PathBuf,
    },
    /// A [`MountSpec`](crate::MountSpec) that cannot be mounted as written.
    #[error("mount spec option {option:?}: {reason}")]
    InvalidSpec {
        /// The offending option word (or the fs type).
        option: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl MountError {
    /// The OS error behind this error, if there is one (e.g. `EBUSY` from an unmount).
    pub fn errno(&self) -> Option<crate::Errno> {
        match self {
            MountError::Layer { source, .. }
            | MountError::Kernel { source, .. }
            | MountError::Target { source, .. } => source
                .raw_os_error()
                .map(rustix::io::Errno::from_raw_os_error),
            MountError::NotMounted { .. } => Some(rustix::io::Errno::INVAL),
            _ => None,
        }
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

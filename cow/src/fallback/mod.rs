//! Copy-on-write without overlay, for filesystems or sandboxes where overlay cannot be mounted:
//! flatten a stack of lower dirs into one writable tree.
//!
//! The merge follows overlay's rules: the topmost entry of a name wins, directories merge
//! downwards until one is opaque (`overlay.opaque=y`) or a higher layer has a non-directory
//! there, whiteouts (char 0:0, and xwhiteouts) delete the name below them, and a metadata-only
//! file (`overlay.metacopy` + `overlay.redirect`) takes its bytes from the data-only lowers.
//! Overlay's own xattrs are never copied. Directory redirects (renamed merged dirs, left in an
//! upper by `redirect_dir=on`) are not followed: layers from the layer store have none.
//!
//! File data is shared where the filesystem can (`FICLONE`), else copied in the kernel
//! (`copy_file_range`), else read and written. Mode, owner, times (access and modification),
//! xattrs, symlinks, device nodes, fifos and hard links (within one lower) are kept. The tree is
//! built in a temp dir beside the target and renamed into place, so a half-built tree is never
//! visible under the target's name.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_cow::fallback::Flatten;
//!
//! let tmp = tempfile::tempdir()?;
//! let (top, base) = (tmp.path().join("top"), tmp.path().join("base"));
//! std::fs::create_dir_all(&top)?;
//! std::fs::create_dir_all(&base)?;
//! std::fs::write(top.join("os-release"), "top")?;
//! std::fs::write(base.join("os-release"), "base")?;
//! std::fs::write(base.join("only-base"), "b")?;
//!
//! let stats = Flatten::new().lower(&top).lower(&base).build(&tmp.path().join("rootfs"))?;
//! assert_eq!(std::fs::read_to_string(tmp.path().join("rootfs/os-release"))?, "top");
//! assert_eq!(stats.files, 2);
//! # Ok(()) }
//! ```

mod copy;
mod merge;

use std::io;
use std::path::{Path, PathBuf};

use crate::conventions::Namespace;

/// How file data gets into the new tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CopyMethod {
    /// Reflink where the filesystem shares extents, else `copy_file_range`, else read/write.
    #[default]
    Auto,
    /// Skip reflinks: `copy_file_range`, else read/write.
    CopyFileRange,
    /// Plain read and write through a buffer.
    ReadWrite,
}

/// What [`Flatten::build`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Directories created (the root included).
    pub dirs: u64,
    /// Regular files created (hard links not counted).
    pub files: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Device nodes, fifos and sockets created.
    pub specials: u64,
    /// Extra names of a file linked within one lower.
    pub hardlinks: u64,
    /// Names deleted by a whiteout in a higher lower.
    pub whiteouts: u64,
    /// Bytes of file data placed.
    pub bytes: u64,
    /// Files whose data was shared with `FICLONE`.
    pub reflinked: u64,
    /// Files copied with `copy_file_range`.
    pub copy_file_range: u64,
    /// Files copied by read and write.
    pub read_write: u64,
}

/// Why flattening failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FallbackError {
    /// No lower dir was given.
    #[error("flattening needs at least one lower dir")]
    NoLowerDir,
    /// The target already exists; it is never overwritten.
    #[error("target {path} already exists")]
    TargetExists {
        /// The target.
        path: PathBuf,
    },
    /// Reading a lower failed.
    #[error("reading {path}")]
    Read {
        /// The entry in a lower dir.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the new tree failed.
    #[error("writing {path}")]
    Write {
        /// The entry in the new tree.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A metadata-only file whose data is in no data-only lower.
    #[error("{path}: redirect {redirect:?} found in no data-only lower")]
    MissingData {
        /// The metadata-only file.
        path: PathBuf,
        /// Its `overlay.redirect`.
        redirect: String,
    },
}

/// A stack of lower dirs to flatten into one writable tree (a by-value builder).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "nothing happens until build"]
pub struct Flatten {
    lowers: Vec<PathBuf>,
    data_lowers: Vec<PathBuf>,
    namespace: Namespace,
    method: CopyMethod,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten {
            lowers: Vec::new(),
            data_lowers: Vec::new(),
            namespace: Namespace::Trusted,
            method: CopyMethod::Auto,
        }
    }
}

impl Flatten {
    /// An empty stack: `trusted.` markers, [`CopyMethod::Auto`].
    pub fn new() -> Flatten {
        Flatten::default()
    }

    /// Adds a lower dir below the ones added so far (topmost first, as for overlay).
    pub fn lower(mut self, dir: impl Into<PathBuf>) -> Flatten {
        self.lowers.push(dir.into());
        self
    }

    /// Adds lower dirs, topmost first.
    pub fn lowers<P: Into<PathBuf>>(mut self, dirs: impl IntoIterator<Item = P>) -> Flatten {
        self.lowers.extend(dirs.into_iter().map(Into::into));
        self
    }

    /// Adds a data-only lower: where metadata-only files find their bytes.
    pub fn data_lower(mut self, dir: impl Into<PathBuf>) -> Flatten {
        self.data_lowers.push(dir.into());
        self
    }

    /// Which namespace carries the overlay markers of the lowers (default `trusted.`).
    pub fn namespace(mut self, namespace: Namespace) -> Flatten {
        self.namespace = namespace;
        self
    }

    /// How file data is placed (default [`CopyMethod::Auto`]).
    pub fn method(mut self, method: CopyMethod) -> Flatten {
        self.method = method;
        self
    }

    /// Builds the merged tree at `target`, which must not exist; its parent must.
    pub fn build(&self, target: &Path) -> Result<Stats, FallbackError> {
        if self.lowers.is_empty() {
            return Err(FallbackError::NoLowerDir);
        }
        if target.symlink_metadata().is_ok() {
            return Err(FallbackError::TargetExists {
                path: target.to_path_buf(),
            });
        }
        merge::build(self, target)
    }
}

//! Everything Strata needs from the kernel to turn read-only layer directories plus one writable
//! directory into a container root filesystem.
//!
//! - [`overlay`]: overlay mounts through the new mount API (`lowerdir+`, `datadir+`) or the
//!   classic option string, attached under a [`MountGuard`] or detached.
//! - [`MountSpec`]: containerd's description of a mount (`overlay` or `bind`), mountable here.
//! - [`probe`]: what the kernel and a directory's filesystem support.
//! - [`xattr`]: extended attributes of a path, never following a final symlink.
//! - [`fallback`]: copy-on-write without overlay: one writable tree flattened from the lowers.
//! - [`conventions`]: overlayfs's on-disk format (whiteouts, opaque dirs, redirect and metacopy
//!   xattrs, metadata-only stubs), in both the `trusted.` and `user.` namespaces.
//!
//! ```
//! use strata_cow::conventions::{self, Namespace, WhiteoutStyle};
//! use strata_cow::overlay::Overlay;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! conventions::create_whiteout(&dir.path().join("gone"), WhiteoutStyle::Xattr(Namespace::User))?;
//!
//! let spec = Overlay::new()
//!     .lower("/layers/b")
//!     .lower("/layers/a,1")
//!     .upper("/snap/fs", "/snap/work")
//!     .to_spec();
//! assert!(spec.options.contains(&r"lowerdir=/layers/b:/layers/a\,1".to_owned()));
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

pub mod conventions;
mod error;
pub mod fallback;
mod guard;
mod mountinfo;
pub mod overlay;
pub mod probe;
mod spec;
mod sys;
pub mod xattr;

pub use error::{LayerRole, MountError};
pub use guard::{MountGuard, unmount};
/// The OS error codes [`MountError::errno`] reports (rustix's), e.g. `Errno::BUSY`.
pub use rustix::io::Errno;
pub use spec::MountSpec;

/// Where overlays that have `dir` (an absolute path without symlinks) as one of their layers
/// are mounted, in this process's mount namespace: a directory that live mounts use is one to
/// leave as it is.
///
/// # References
/// - [`proc_pid_mountinfo(5)`](https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html)
pub fn overlays_using(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    mountinfo::overlays_using(dir)
}

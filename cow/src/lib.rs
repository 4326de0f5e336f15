//! Everything Strata needs from the kernel to turn read-only layer directories plus one writable
//! directory into a container root filesystem.
//!
//! - [`xattr`]: extended attributes of a path, never following a final symlink.
//! - [`conventions`]: overlayfs's on-disk format (whiteouts, opaque dirs, redirect and metacopy
//!   xattrs, metadata-only stubs), in both the `trusted.` and `user.` namespaces.
//!
//! ```
//! use strata_cow::conventions::{self, Namespace, WhiteoutStyle};
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! conventions::create_whiteout(&dir.path().join("gone"), WhiteoutStyle::Xattr(Namespace::User))?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod conventions;
pub mod xattr;

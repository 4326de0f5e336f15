//! containerd's snapshotter semantics over overlay mounts, with metadata in redb.
//!
//! A [`Snapshotter`] keeps snapshots of three kinds ([`Kind`]) in one key space: active
//! (writable), views (read-only) and committed (immutable parents). It implements containerd's
//! Prepare, View, Mounts, Commit, Remove, Stat, Update, Usage, Walk, Cleanup and Close with
//! containerd's errors ([`ErrorKind`]). [`Snapshotter::prepare_on_image`] puts a container
//! rootfs on a layer store image's layers without copying them, and
//! [`Snapshotter::commit_image`] turns its changes into a new layer and image.
//!
//! ```
//! use strata_snapshotter::{Kind, Labels, Snapshotter};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let snapshotter = Snapshotter::open(root.path())?;
//! snapshotter.prepare("base-work", None, Labels::new())?;
//! snapshotter.commit("base", "base-work", Labels::new())?;
//! snapshotter.prepare("container", Some("base"), Labels::new())?;
//! let info = snapshotter.stat("container")?;
//! assert_eq!((info.kind, info.parent.as_deref()), (Kind::Active, Some("base")));
//! # Ok(()) }
//! ```
//!
//! # Storage and durability
//! Metadata lives in redb tables ([`tables`](crate) `snapshotter.v1.*`) in `<root>/strata.redb`;
//! a snapshot's dirs are `snapshots/<id>/{fs,work}`, built under `tmp/` and renamed into place
//! inside the transaction that names them. Writers share transactions (group commit), each
//! durable (directory fsync, then redb's immediate durability) before any of them returns. Dirs
//! no record names are removed on open and by [`Snapshotter::cleanup`]. See `docs/format.md`.
#![forbid(unsafe_code)]

mod batch;
mod commit_image;
mod error;
pub mod filter;
#[cfg(feature = "grpc")]
pub mod grpc;
mod image;
mod info;
mod layout;
mod mounts;
mod pool;
mod record;
#[cfg(feature = "runc")]
pub mod runc;
mod snapshotter;
mod tables;

pub use commit_image::ImageCommit;
pub use error::{Error, ErrorKind, Precondition, Result};
pub use info::{FieldPaths, Info, Kind, Labels, MAX_LABEL_LEN, Usage};
pub use snapshotter::Snapshotter;
pub use strata_cow::{MountGuard, MountSpec};

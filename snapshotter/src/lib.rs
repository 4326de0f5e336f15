//! containerd's snapshotter semantics over overlay mounts, with metadata in the root's SQLite
//! database (`strata-metadb`), shared by every process on the root.
//!
//! A [`Snapshotter`] keeps snapshots of three kinds ([`Kind`]) in one key space: active
//! (writable), views (read-only) and committed (immutable parents). It implements containerd's
//! Prepare, View, Mounts, Commit, Remove, Stat, Update, Usage, Walk, Cleanup and Close with
//! containerd's errors ([`ErrorKind`]). [`Snapshotter::prepare_on_image`] puts a container
//! rootfs on a layer store image's layers without copying them, and
//! [`Snapshotter::commit_image`] turns its changes into a new layer and image.
//! [`Snapshotter::prepare_remote`] gives containerd the layers the store already holds as
//! remote snapshots, so that it neither fetches nor unpacks them;
//! [`Snapshotter::prepare_fetching`] also has an [`ImageFetcher`] bring in the images containerd's
//! CRI plugin pulls that the store lacks (see [`Fetch`]).
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
//! # Namespaces
//! Every handle works in one namespace ([`Snapshotter::open_in`]): `strata serve` in
//! [`CONTAINERD_NAMESPACE`], the command line and [`Snapshotter::open`] in [`CLI_NAMESPACE`].
//! A handle lists, reads, removes and cleans up only its own namespace's snapshots, so
//! containerd's garbage collector never sees those of the command line.
//!
//! # Storage and durability
//! Metadata lives in the tables `snapshots`, `snapshot_pool` and `counters` of
//! `<root>/strata.db`; a snapshot's dirs are `snapshots/<id>/{fs,work}`, built in the store
//! handle's own staging dir under `tmp/` and renamed into place inside the transaction that
//! names them. Writers of one handle share transactions (group commit), each durable (directory
//! fsync, then SQLite's commit with `synchronous=FULL`) before any of them returns. Dirs no
//! record names are removed on open and by [`Snapshotter::cleanup`]. See `docs/format.md`.
#![forbid(unsafe_code)]

mod batch;
mod commit_image;
mod dedup;
mod error;
mod fetch;
pub mod filter;
#[cfg(feature = "grpc")]
pub mod grpc;
/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::record::decode_contract as snapshot_record;
}
mod image;
mod info;
mod layout;
mod mounts;
mod pool;
mod record;
mod remote;
#[cfg(feature = "runc")]
pub mod runc;
mod snapshotter;
mod tables;

pub use commit_image::ImageCommit;
pub use dedup::EXTRACT_KEY_PREFIX;
pub use error::{Error, ErrorKind, Precondition, Result};
pub use fetch::{
    Fetch, FetchError, Fetched, IMAGE_REF_LABEL, ImageFetcher, LAYER_DIGEST_LABEL,
    MANIFEST_DIGEST_LABEL,
};
pub use info::{FieldPaths, Info, Kind, Labels, MAX_LABEL_LEN, Usage};
pub use remote::TARGET_LABEL;
pub use snapshotter::{CLI_NAMESPACE, CONTAINERD_NAMESPACE, Snapshotter};
pub use strata_cow::{MountGuard, MountSpec};

//! Parallel directory diff, OCI layer writer and safe layer applier.
//!
//! - [`changes`]: the changes between two trees, walked in parallel with rayon.
//! - [`upper_changes`]: the changes of an overlay snapshot, read from its upper dir alone.
//! - [`write_layer`]: a [`ChangeSet`] as a deterministic OCI layer (tar, gzip or zstd), with its
//!   `diff_id` and `digest` computed while streaming.
//! - [`apply_layer`]: an OCI layer onto a directory; every path is resolved by the kernel inside
//!   the root (`openat2(RESOLVE_IN_ROOT)`), so a hostile layer cannot touch anything outside it.
//!
//! ```
//! use strata_diff::{ApplyOptions, Compression, DiffOptions, WriteOptions};
//! # fn main() -> anyhow::Result<()> {
//! let (old, new, copy) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
//! std::fs::write(old.path().join("gone"), "bye")?;
//! std::fs::create_dir(new.path().join("etc"))?;
//! std::fs::write(new.path().join("etc/hostname"), "strata\n")?;
//!
//! let set = strata_diff::changes(old.path(), new.path(), &DiffOptions::default())?;
//! let mut layer = Vec::new();
//! let digests = strata_diff::write_layer(&set, &WriteOptions::new(Compression::Zstd), &mut layer)?;
//! assert!(digests.diff_id.starts_with("sha256:"));
//!
//! std::fs::write(copy.path().join("gone"), "bye")?;
//! strata_diff::apply_layer(&layer[..], copy.path(), &ApplyOptions::default())?;
//! assert_eq!(std::fs::read(copy.path().join("etc/hostname"))?, b"strata\n");
//! assert!(!copy.path().join("gone").exists());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod apply;
mod change;
pub mod compress;
pub mod confined;
mod content;
mod dir;
mod meta;
mod tree;
mod upper;
mod write;

pub use apply::{ApplyError, ApplyOptions, ApplyStats, Ownership, Whiteouts, apply_layer};
pub use change::{Change, ChangeKind, ChangeSet, ContentCheck, DiffError, DiffOptions, Threads};
pub use meta::{FileKind, Meta, Time};
pub use tree::changes;
pub use upper::upper_changes;
pub use write::hash;
pub use write::{Compression, LayerDigests, WriteError, WriteOptions, write_layer};

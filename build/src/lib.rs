//! Dockerfile builds on the deduplicating layer store, with a layer cache.
//!
//! A [`Builder`] parses a Dockerfile (with the `parse-dockerfile` crate) and runs its stages:
//! `RUN` in a runc container on a snapshot of the image so far, `COPY`/`ADD` of local files
//! into one; the snapshot's upper dir becomes the step's layer, through the same commit as
//! `strata commit`. Metadata instructions change the image config only. Every step is keyed by
//! the state it starts from and the instruction as evaluated (plus, for `COPY`/`ADD`, a
//! checksum of the sources): a key the cache holds serves the step without running anything.
//! The cache is kept in the store root (`build-cache/`, see `docs/format.md`); its layers are
//! GC roots of the layer store until [`prune_cache`] expires them.
//!
//! ```no_run
//! use strata_build::{BuildOptions, Builder, Quiet};
//! use strata_layer_store::Durability;
//! # fn main() -> Result<(), strata_build::BuildError> {
//! let builder = Builder::open(std::path::Path::new("/var/lib/strata"), Durability::Immediate)?;
//! let mut options = BuildOptions::default();
//! options.tags.push("app:1".into());
//! let report = builder.build(std::path::Path::new("./app"), &options, &Quiet)?;
//! println!("built sha256:{}", report.image);
//! # Ok(()) }
//! ```
//!
//! Building needs root (overlay mounts and runc).
#![forbid(unsafe_code)]

mod backend;
mod cache;
mod dockerfile;
mod engine;
mod error;
mod ignore;
mod image;
mod options;
mod prune;
mod snapshot;
mod step;
mod tree;
mod user;
mod words;

pub use backend::NAMESPACE;
pub use cache::{CACHE_DIR, VERSION as CACHE_VERSION};
pub use engine::Builder;
pub use error::{BuildError, Result};
pub use options::{BuildOptions, BuildReport, Outcome, Progress, Quiet, StepReport};
pub use prune::{PruneOptions, PruneReport, prune_cache};
pub use strata_snapshotter::runc::Network;

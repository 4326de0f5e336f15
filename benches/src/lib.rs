//! Shared fixtures for Strata's criterion benchmarks (the benches live in `benches/`): synthetic
//! directory trees shaped like a real root filesystem, deterministic from a seed.
//!
//! A [`Profile`] holds the shape of a real tree (entry kinds, file-size, directory fan-out and
//! depth histograms, hardlinks), as `../shared/corpus/make-debian-rootfs.sh`'s companion
//! profile files record it. [`generate`] builds a tree with that shape, and [`mutate`] edits a
//! tree the way an image build step does (adds a subtree, rewrites, deletes, chmods), so that a
//! generated pair diffs like a real base → app pair.
//!
//! ```
//! use strata_benches::{Edits, Profile, Shape, generate, mutate};
//! # fn main() -> std::io::Result<()> {
//! let (old, new) = (tempfile::tempdir()?, tempfile::tempdir()?);
//! let shape = Shape { seed: 7, scale: 0.02 };
//! let stats = generate(old.path(), &Profile::debian_minbase(), &shape)?;
//! assert_eq!(generate(new.path(), &Profile::debian_minbase(), &shape)?, stats);
//! let edits = mutate(new.path(), &Profile::debian_minbase(), &Edits::build_step(8, shape.scale))?;
//! assert!(edits.added > 0 && edits.modified > 0 && edits.deleted > 0);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod profile;
mod rng;
mod tree;

pub use profile::{Bucket, Profile, ProfileError};
pub use tree::{EditStats, Edits, Shape, TreeStats, generate, mutate};

//! The metadata database of a Strata root: one SQLite file, `<root>/strata.db`, that every
//! process using the root opens at the same time (the layer store, the snapshotter, `strata
//! serve`, CLI commands and embedding runtimes).
//!
//! SQLite's write-ahead log lets readers run beside one writer; writers queue on SQLite's lock
//! for at most the length of another writer's transaction. Each [`Database`] keeps one write
//! connection and a few read connections, so one handle serves many threads.
//!
//! This crate owns the schema of every table (see `docs/format.md`) and the one-time
//! conversion of roots written with the earlier redb database (`strata.redb`). The crates above
//! it keep their queries to themselves, and no database type reaches their public APIs.
#![forbid(unsafe_code)]

mod convert;
mod database;
mod error;
mod schema;

pub use database::{Database, Tx};
pub use error::Error;
pub use schema::{CLI_NAMESPACE, CONTAINERD_NAMESPACE, SCHEMA_VERSION};

/// The database file under a root.
pub const FILE: &str = "strata.db";
/// The redb database that earlier releases kept under a root; converted once by
/// [`Database::open`].
pub const LEGACY_FILE: &str = "strata.redb";

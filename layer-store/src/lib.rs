//! A deduplicating, content-addressed store of image layers: every regular file's content is
//! stored once (named by blake3), layers keep their tar's exact header stream so export rebuilds
//! them bit for bit, and layers materialize as overlay lowers without copying file data.
//!
//! ```
//! use strata_layer_store::{ImportOptions, Store};
//! # fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! // A one-file layer tar.
//! let mut tar = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_ustar();
//! header.set_path("hello.txt")?;
//! header.set_size(5);
//! header.set_mode(0o644);
//! header.set_cksum();
//! tar.append(&header, &b"hello"[..])?;
//! let layer = dir.path().join("layer.tar");
//! std::fs::write(&layer, tar.into_inner()?)?;
//!
//! let store = Store::open(dir.path().join("store"))?;
//! let options = ImportOptions::default().with_name(Some("hello".into()));
//! let report = store.import(&layer, &options)?;
//! let image = store.image("hello")?;
//! assert_eq!(image.id(), report.image);
//!
//! // Export rebuilds the layer tar bit for bit.
//! let record = store.layer_record(&report.layers[0].id)?;
//! let mut rebuilt = Vec::new();
//! store.write_layer_tar(&record, &mut rebuilt)?;
//! assert_eq!(rebuilt, std::fs::read(&layer)?);
//! # Ok(()) }
//! ```
//!
//! The on-disk formats, write order and crash behaviour are documented in `docs/format.md`.
#![forbid(unsafe_code)]

// The README's library example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

mod blobs;
mod catalog;
mod compress;
mod db;
mod dedup;
pub mod digest;
mod du;
mod durable;
mod error;
mod export;
mod fsck;
mod gc;
mod history;
mod import;
mod lock;
mod materialize;
pub mod name;
mod object;
mod progress;
mod record;
mod roots;
mod shorten;
mod staging;
mod store;
mod tarstream;
mod tmp;

pub use blobs::BlobPolicy;
pub use catalog::MIN_ID_PREFIX;
pub use dedup::{DedupError, DedupReport};
pub use du::{DuReport, ImageUsage};
pub use durable::{KernelSync, SyncSeam};
pub use error::{DatabaseError, StoreError};
pub use export::{ExportError, ExportOutput, ExportReport, LayerExport};
pub use fsck::{FsckOptions, FsckReport, Problem};
pub use gc::{GcError, GcOptions, GcReport};
pub use history::{HistoryEntry, HistoryLayer};
pub use import::{
    BlobCheck, Document, ImportError, ImportOptions, ImportReport, LayerBlob, StagedLayer,
};
pub use lock::LockGuard;
pub use materialize::{MaterializeError, probe_strategy};
pub use object::ObjectId;
pub use progress::{Part, PartEnd, Progress};
pub use record::{
    Chunk, Compression as BlobCompression, Entry, EntryKind, ImageRecord, LayerMeta, LayerRecord,
    RecordError, Strategy, Time, chain_ids,
};
pub use store::{Durability, Store};
pub use strata_codec::tar::TarError;
pub use strata_codec::{Limit, Limits};

/// The record codec, for the fuzz targets and the format tests; not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::record::{FeatureFlags, Kind, decode, decode_layer, decode_payload, encode};
    pub use crate::tarstream::{FileData, Parts, split};
}

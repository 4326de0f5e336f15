//! The OCI layer codec every part of Strata reads layers through: one streaming tar reader,
//! one path cleaner, typed sha256 digests, and compression sniffing.
//!
//! The layer store's import (which keeps a layer's raw header stream so export can rebuild the
//! tar bit for bit) and the diff crate's applier (which writes entries into a directory) both
//! read tars with [`tar::TarReader`], within the same [`Limits`]; so a layer one accepts, the
//! other accepts too, entry for entry.
//!
//! - [`tar`]: headers with PAX and GNU extensions resolved, contents on request, raw blocks
//!   on request; whiteouts named by [`strata_cow::conventions`].
//! - [`path::clean`]: the OCI path rules (no leading `/`, no `.`, no `..`).
//! - [`digest`]: `sha256:<hex>` as a type, and hashing readers and writers.
//! - [`compression`]: gzip, zstd or plain, by magic bytes.
//!
//! ```
//! use std::io::Read;
//! use strata_codec::{Limits, compression, digest::{HashingReader, Sha256}, tar::TarReader};
//!
//! // A gzip layer with one file, as a registry would serve it.
//! let mut builder = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_gnu();
//! header.set_size(3);
//! header.set_mode(0o755);
//! builder.append_data(&mut header, "./bin/sh", &b"#!\n"[..])?;
//! let layer = builder.into_inner()?;
//! let mut blob = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
//! std::io::Write::write_all(&mut blob, &layer)?;
//! let blob = blob.finish()?;
//!
//! // The diff_id is the sha256 of the tar, hashed while it is read.
//! let mut tar = HashingReader::new(compression::decompressed(&blob[..])?);
//! let mut reader = TarReader::new(&mut tar, Limits::default());
//! while let Some(entry) = reader.next_entry()? {
//!     assert_eq!(entry.path, b"bin/sh");
//!     assert_eq!(entry.mode, 0o755);
//! }
//! let (diff_id, _) = tar.finish();
//! assert_eq!(Sha256(diff_id), Sha256::of(&layer));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod compression;
pub mod digest;
mod hash;
mod limits;
pub mod path;
pub mod tar;

pub use limits::{Limit, Limits};

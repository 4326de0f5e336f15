//! Streaming sha256, the OCI digest: the reader and writer of [`strata_codec::digest`], named
//! here for the layer writer's callers.

pub use strata_codec::digest::{HashingReader, HashingWriter, oci_digest};

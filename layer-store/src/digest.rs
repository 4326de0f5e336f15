//! OCI-boundary identities: sha256 digests and the readers and writers that compute them while
//! streaming. They live in [`strata_codec::digest`]; this module names them for the store's
//! callers.

pub use strata_codec::digest::{
    BadDigest, Digest, HashingReader, HashingWriter, Sha256, oci_digest, serialize_id,
};

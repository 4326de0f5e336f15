//! OCI-boundary identities: typed sha256 (and sha512) digests as descriptors write them, and
//! the reader and writer that compute them while streaming.

use std::fmt;
use std::str::FromStr;

pub use crate::hash::{HashingReader, HashingWriter};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256 as Sha256Hasher};

/// A sha256 digest, written `sha256:<64 hex>` at the OCI boundary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256(Sha256Hasher::digest(bytes).into())
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Serializes a hex id (an image's manifest digest, a layer's diff_id) as the digest it is,
/// `sha256:<hex>`, so that ids read the same in every JSON document (use with
/// `#[serde(serialize_with = "…")]`).
pub fn serialize_id<S: serde::Serializer>(hex: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("sha256:{hex}"))
}

/// `sha256:<64 lowercase hex>`, as OCI descriptors write a digest.
pub fn oci_digest(sha256: &[u8; 32]) -> String {
    Sha256(*sha256).to_string()
}

/// A string that is not a digest this store reads: `sha256:` followed by 64 lowercase hex
/// digits (or, where a descriptor may say so, `sha512:` and 128).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a sha256 or sha512 digest (sha256:<64 lowercase hex>)")]
pub struct BadDigest {
    /// The string given.
    pub value: String,
}

impl FromStr for Sha256 {
    type Err = BadDigest;

    fn from_str(value: &str) -> Result<Self, BadDigest> {
        let bad = || BadDigest {
            value: value.to_owned(),
        };
        let hex_part = value.strip_prefix("sha256:").unwrap_or(value);
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Sha256(out))
    }
}

/// A blob digest as an OCI descriptor may give it: sha256 (what the store keeps) or sha512,
/// which the image spec also registers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digest {
    /// `sha256:<64 hex>`.
    Sha256(Sha256),
    /// `sha512:<128 hex>`.
    Sha512([u8; 64]),
}

impl Digest {
    /// The digest of `bytes` in the same algorithm as `self`.
    pub fn same_algorithm_of(&self, bytes: &[u8]) -> Digest {
        match self {
            Digest::Sha256(_) => Digest::Sha256(Sha256::of(bytes)),
            Digest::Sha512(_) => Digest::Sha512(sha2::Sha512::digest(bytes).into()),
        }
    }

    /// Where an OCI image layout keeps the blob: `blobs/<algorithm>/<hex>`.
    pub fn blob_path(&self) -> String {
        match self {
            Digest::Sha256(d) => format!("blobs/sha256/{}", d.hex()),
            Digest::Sha512(d) => format!("blobs/sha512/{}", hex::encode(d)),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha256(d) => fmt::Display::fmt(d, f),
            Digest::Sha512(d) => write!(f, "sha512:{}", hex::encode(d)),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(value: &str) -> Result<Self, BadDigest> {
        if let Some(hex_part) = value.strip_prefix("sha512:") {
            let mut out = [0u8; 64];
            let canonical =
                hex_part.len() == 128 && !hex_part.bytes().any(|b| b.is_ascii_uppercase());
            if canonical && hex::decode_to_slice(hex_part, &mut out).is_ok() {
                return Ok(Digest::Sha512(out));
            }
            return Err(BadDigest {
                value: value.to_owned(),
            });
        }
        if !value.starts_with("sha256:") {
            return Err(BadDigest {
                value: value.to_owned(),
            });
        }
        value.parse().map(Digest::Sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_digests() {
        let d = Sha256::of(b"");
        assert_eq!(d.to_string().parse::<Sha256>(), Ok(d));
        assert!("sha256:abc".parse::<Sha256>().is_err());
        assert!(d.to_string().to_uppercase()[7..].parse::<Sha256>().is_err());
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sha512_digests_parse_and_name_their_blobs() {
        let empty = Digest::Sha512([0; 64]).same_algorithm_of(b"");
        let text = empty.to_string();
        assert!(text.starts_with("sha512:cf83e1357eefb8bd"), "{text}");
        assert_eq!(text.parse::<Digest>(), Ok(empty));
        assert_eq!(empty.blob_path(), format!("blobs/sha512/{}", &text[7..]));
        let d = Sha256::of(b"");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(Digest::Sha256(d)));
        assert!("sha512:abc".parse::<Digest>().is_err());
        assert!(
            "md5:d41d8cd98f00b204e9800998ecf8427e"
                .parse::<Digest>()
                .is_err()
        );
    }
}

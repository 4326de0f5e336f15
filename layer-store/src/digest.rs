//! OCI-boundary identities: sha256 digests, and the readers and writers that compute them
//! while streaming (the diff crate's, shared by both crates).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256 as Sha256Hasher};
pub use strata_diff::hash::{HashingReader, HashingWriter};

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

/// A string that is not `sha256:` followed by 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a sha256 digest (sha256:<64 lowercase hex>)")]
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
}

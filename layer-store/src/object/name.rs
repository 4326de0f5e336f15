//! Object file names under `objects/`: the short form new objects get, and the long form of
//! stores written before it, which stay where they are.
//!
//! A stub's `trusted.overlay.redirect` holds `/<fan-out>/<file>`. On ext4 with 256-byte inodes,
//! a redirect longer than 24 bytes (next to the empty `trusted.overlay.metacopy`) no longer
//! fits in the inode and costs every stub a 4 KiB xattr block; the short form is 24 bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::ObjectId;

/// Characters of a short name: 132 bits of the id, in base64url.
const SHORT_LEN: usize = 22;
/// Bytes of the id a short name encodes (17 bytes give 23 characters; the 23rd is dropped).
const SHORT_BYTES: usize = 17;

/// The first 132 bits of an object's id in base64url (`A-Z a-z 0-9 - _`, no padding): what
/// identifies an object stored under its short name, and what GC compares names by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ShortName([u8; SHORT_LEN]);

impl ShortName {
    /// The short name of `id`.
    pub(crate) fn of(id: &ObjectId) -> Self {
        let mut encoded = [0u8; SHORT_LEN + 1];
        let written = URL_SAFE_NO_PAD
            .encode_slice(&id.0[..SHORT_BYTES], &mut encoded)
            .expect("17 bytes encode to 23 characters");
        debug_assert_eq!(written, SHORT_LEN + 1);
        let mut name = [0u8; SHORT_LEN];
        name.copy_from_slice(&encoded[..SHORT_LEN]);
        ShortName(name)
    }

    /// The 22 characters.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64url is ASCII")
    }
}

impl fmt::Debug for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortName({})", self.as_str())
    }
}

/// Where an object's file is under `objects/`, and what its name says of its id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum ObjectName {
    /// `ab/<20 base64url characters>`: what objects are written as.
    Short(ShortName),
    /// `ab/<62 hex digits>`: what stores written before short names hold.
    Long(ObjectId),
}

impl ObjectName {
    /// The name new objects are written under.
    pub(crate) fn short(id: &ObjectId) -> Self {
        ObjectName::Short(ShortName::of(id))
    }

    /// The name objects of older stores have.
    pub(crate) fn long(id: &ObjectId) -> Self {
        ObjectName::Long(*id)
    }

    /// The name of the file `file` in the fan-out directory `fan`, if it is an object's:
    /// the two forms differ by length (a hex fan-out is also valid base64url, so both share
    /// fan-out directories).
    pub(crate) fn parse(fan: &str, file: &str) -> Option<Self> {
        if !is_fan(fan) {
            return None;
        }
        match file.len() {
            20 if file.bytes().all(is_base64url) => {
                let mut name = [0u8; SHORT_LEN];
                name[..2].copy_from_slice(fan.as_bytes());
                name[2..].copy_from_slice(file.as_bytes());
                Some(ObjectName::Short(ShortName(name)))
            }
            62 => {
                let hex = format!("{fan}{file}");
                let id = hex.bytes().all(is_lower_hex).then(|| hex.parse().ok());
                id.flatten().map(ObjectName::Long)
            }
            _ => None,
        }
    }

    /// The fan-out directory's name.
    pub(crate) fn fan(&self) -> [u8; 2] {
        match self {
            ObjectName::Short(short) => [short.0[0], short.0[1]],
            ObjectName::Long(id) => {
                let hex = hex::encode([id.0[0]]).into_bytes();
                [hex[0], hex[1]]
            }
        }
    }

    /// The path relative to `objects/`: `ab/cdef…`.
    pub(crate) fn relative_path(&self) -> String {
        let name = self.to_string();
        format!("{}/{}", &name[..2], &name[2..])
    }

    /// The overlay redirect naming the object inside the data-only lower `objects/`:
    /// `/ab/cdef…`, 24 bytes for a short name.
    pub(crate) fn redirect(&self) -> String {
        format!("/{}", self.relative_path())
    }

    /// The short name of the object this names: for a long name, that of its id.
    pub(crate) fn short_name(&self) -> ShortName {
        match self {
            ObjectName::Short(short) => *short,
            ObjectName::Long(id) => ShortName::of(id),
        }
    }

    /// Whether bytes hashing to `id` belong under this name.
    pub(crate) fn matches(&self, id: &ObjectId) -> bool {
        match self {
            ObjectName::Short(short) => *short == ShortName::of(id),
            ObjectName::Long(long) => long == id,
        }
    }
}

/// The fan-out and file name run together, as fsck reports and quarantines them.
impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectName::Short(short) => f.write_str(short.as_str()),
            ObjectName::Long(id) => f.write_str(&id.hex()),
        }
    }
}

/// Whether `name` is a fan-out directory's name: two base64url characters (which every
/// two-digit hex name also is).
pub(crate) fn is_fan(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(is_base64url)
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &ObjectName) -> (String, String) {
        let path = name.relative_path();
        let (fan, file) = path.split_once('/').unwrap();
        (fan.to_owned(), file.to_owned())
    }

    #[test]
    fn a_short_redirect_is_24_bytes_of_base64url() {
        for bytes in [&b""[..], b"hello", &[0xff; 4096]] {
            let id = ObjectId::of(bytes);
            let name = ObjectName::short(&id);
            let redirect = name.redirect();
            assert_eq!(redirect.len(), 24, "{redirect}");
            let full = URL_SAFE_NO_PAD.encode(id.0);
            assert_eq!(redirect, format!("/{}/{}", &full[..2], &full[2..22]));
        }
    }

    #[test]
    fn names_parse_back_by_length() {
        let id = ObjectId::of(b"hello");
        for name in [ObjectName::short(&id), ObjectName::long(&id)] {
            let (fan, file) = split(&name);
            assert_eq!(ObjectName::parse(&fan, &file), Some(name));
            assert_eq!(name.fan(), <[u8; 2]>::try_from(fan.as_bytes()).unwrap());
            assert!(name.matches(&id));
            assert!(!name.matches(&ObjectId::of(b"other")));
            assert_eq!(name.short_name(), ShortName::of(&id));
        }
        assert_eq!(ObjectName::long(&id).to_string(), id.hex());
    }

    #[test]
    fn other_names_are_not_objects() {
        let id = ObjectId::of(b"hello");
        let hex = id.hex();
        let short = ObjectName::short(&id).to_string();
        for (fan, file) in [
            ("zzz", &short[2..]),
            ("a", &short[2..]),
            ("a.", &short[2..]),
            (&short[..2], &short[3..]),
            (&short[..2], "not-an-id"),
            (&short[..2], "abcdefghijklmnopqrs."),
            (&hex[..2], &hex[3..]),
            ("zz", &hex[2..]),
            (&hex[..2], &hex[2..].to_uppercase()),
        ] {
            assert_eq!(ObjectName::parse(fan, file), None, "{fan}/{file}");
        }
    }
}

//! Records: what the store knows about a layer and an image, encoded with postcard, compressed
//! with zstd, framed by a versioned header ([`codec`]). Byte layouts are in `docs/format.md`.
//!
//! A [`LayerRecord`] holds the layer tar's exact byte stream with every regular file's content
//! replaced by a reference to a content object, so export rebuilds the tar bit for bit, and the
//! entries parsed from it, so materialization needs no tar parsing.

mod bytes;
pub mod codec;

use serde::{Deserialize, Serialize};

#[cfg(feature = "fuzzing")]
pub use codec::{FeatureFlags, decode_payload};
pub use codec::{Kind, RecordError, decode, encode};

use crate::digest::Sha256;
use crate::object::ObjectId;

/// One run of the uncompressed layer tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Chunk {
    /// Bytes kept verbatim: header blocks, PAX and GNU long-name records, padding, trailer.
    Raw(#[serde(with = "bytes")] Vec<u8>),
    /// A regular file's content, `size` bytes of object `id`.
    Object {
        /// The content object.
        id: ObjectId,
        /// Its length in bytes.
        size: u64,
    },
}

/// How a layer blob was compressed, and whether export can reproduce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip; `level` is the zlib level that reproduces the deflate stream, if one was found.
    Gzip {
        /// The gzip member header as found (magic, flags, mtime, OS, optional name).
        #[serde(with = "bytes")]
        header: Vec<u8>,
        /// The reproducing zlib level, or `None` when no tried level matched.
        level: Option<u32>,
    },
    /// zstd; `level` reproduces the frame, if one was found.
    Zstd {
        /// The reproducing zstd level, or `None` when no tried level matched.
        level: Option<i32>,
        /// Whether the frame carries a content checksum.
        checksum: bool,
        /// Whether the frame header records the content size.
        content_size: bool,
    },
}

/// A point in time with nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    /// Seconds since the Unix epoch.
    pub sec: i64,
    /// Nanoseconds within the second.
    pub nsec: u32,
}

/// What kind of file an entry is, with what only that kind has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file whose content is an object.
    File {
        /// The content object.
        object: ObjectId,
        /// Length in bytes.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink {
        /// The link target, verbatim.
        #[serde(with = "bytes")]
        target: Vec<u8>,
    },
    /// A hard link to an earlier entry of the same layer.
    Hardlink {
        /// The path of the entry linked to, normalized like [`Entry::path`].
        #[serde(with = "bytes")]
        target: Vec<u8>,
    },
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One file system entry of a layer, as the tar describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path without `./` or trailing `/`, never with `..` components.
    #[serde(with = "bytes")]
    pub path: Vec<u8>,
    /// The kind and its data.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Time,
    /// Extended attributes (from PAX `SCHILY.xattr.*`), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Everything the store keeps about one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// sha256 of the uncompressed tar; the layer's identity.
    pub diff_id: Sha256,
    /// Length of the uncompressed tar.
    pub tar_size: u64,
    /// sha256 of the blob as imported (equal to `diff_id` for a plain tar).
    pub blob_digest: Sha256,
    /// Length of the blob as imported.
    pub blob_size: u64,
    /// How the blob was compressed.
    pub compression: Compression,
    /// The tar, in order.
    pub stream: Vec<Chunk>,
    /// The entries, in tar order.
    pub entries: Vec<Entry>,
}

impl LayerRecord {
    /// The layer id: hex of the diff_id, also its directory name under `layers/`.
    pub fn id(&self) -> String {
        self.diff_id.hex()
    }

    /// Every object this layer references, with repeats.
    pub fn objects(&self) -> impl Iterator<Item = (ObjectId, u64)> + '_ {
        self.stream.iter().filter_map(|chunk| match chunk {
            Chunk::Object { id, size } => Some((*id, *size)),
            Chunk::Raw(_) => None,
        })
    }
}

/// Decodes a layer record (checked as [`decode`] checks any record) a chunk and an entry at a
/// time: a layer of 200,000 entries needs its decoded form in memory, not its uncompressed
/// payload beside it.
pub fn decode_layer(bytes: &[u8]) -> Result<LayerRecord, RecordError> {
    codec::decode_streaming(Kind::Layer, bytes, |window| {
        // Field by field, in the order of the struct (postcard's layout); a test pins it
        // against the ordinary decode.
        Ok(LayerRecord {
            diff_id: window.take()?,
            tar_size: window.take()?,
            blob_digest: window.take()?,
            blob_size: window.take()?,
            compression: window.take()?,
            stream: window.take_seq()?,
            entries: window.take_seq()?,
        })
    })
}

/// The digest and compression of the blob a layer record was imported from, read from the
/// start of the record without decoding its chunks and entries.
pub(crate) fn decode_layer_blob(bytes: &[u8]) -> Result<(Sha256, Compression), RecordError> {
    codec::decode_streaming(Kind::Layer, bytes, |window| {
        let _diff_id: Sha256 = window.take()?;
        let _tar_size: u64 = window.take()?;
        let digest = window.take()?;
        let _blob_size: u64 = window.take()?;
        Ok((digest, window.take()?))
    })
}

/// Everything the store keeps about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The manifest's bytes as imported (or as synthesized for sources without one).
    #[serde(with = "bytes")]
    pub manifest: Vec<u8>,
    /// sha256 of `manifest`: the image's identity.
    pub manifest_digest: Sha256,
    /// The config's bytes as imported.
    #[serde(with = "bytes")]
    pub config: Vec<u8>,
    /// The names this image was imported under.
    pub tags: Vec<String>,
    /// Layer diff_ids, bottom first.
    pub layers: Vec<Sha256>,
    /// Chain ids (OCI image spec) of each prefix of `layers`.
    pub chain_ids: Vec<Sha256>,
}

impl ImageRecord {
    /// The image id: hex of the manifest digest.
    pub fn id(&self) -> String {
        self.manifest_digest.hex()
    }
}

/// How a layer was materialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Metadata-only stubs redirecting into `objects/`, mounted with it as a data-only lower.
    Stub,
    /// Hardlinks to checkout files keyed by content and inode metadata.
    Hardlink,
    /// Reflinked copies (fails where the file system cannot share extents).
    Reflink,
    /// Plain copies.
    Copy,
}

impl Strategy {
    /// The lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Stub => "stub",
            Strategy::Hardlink => "hardlink",
            Strategy::Reflink => "reflink",
            Strategy::Copy => "copy",
        }
    }
}

/// The small per-layer row of the `layers` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// Length of the uncompressed tar.
    pub tar_size: u64,
    /// Sum of the sizes of the regular files (logical bytes).
    pub file_bytes: u64,
    /// How `layers/<id>/tree` was materialized, if it was.
    pub materialized: Option<Strategy>,
}

/// Chain ids of a stack of diff_ids (OCI image spec: `ChainID(L0|…|Ln) =
/// sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln))`).
pub fn chain_ids(diff_ids: &[Sha256]) -> Vec<Sha256> {
    let mut out: Vec<Sha256> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => *diff_id,
            Some(parent) => Sha256::of(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(entries: usize, raw_len: usize) -> LayerRecord {
        let object = ObjectId::of(b"x");
        LayerRecord {
            diff_id: Sha256::of(b"tar"),
            tar_size: 7,
            blob_digest: Sha256::of(b"blob"),
            blob_size: 9,
            compression: Compression::Gzip {
                header: vec![0x1f, 0x8b],
                level: Some(6),
            },
            stream: (0..entries)
                .flat_map(|i| {
                    [
                        Chunk::Raw(vec![(i % 251) as u8; if i == 3 { raw_len } else { 512 }]),
                        Chunk::Object {
                            id: object,
                            size: i as u64,
                        },
                    ]
                })
                .collect(),
            entries: (0..entries)
                .map(|i| Entry {
                    path: format!("dir/file{i}").into_bytes(),
                    kind: EntryKind::File {
                        object,
                        size: i as u64,
                    },
                    mode: 0o644,
                    uid: i as u32,
                    gid: 0,
                    mtime: Time { sec: 1, nsec: 2 },
                    xattrs: vec![(b"user.k".to_vec(), vec![1; i % 7])],
                })
                .collect(),
        }
    }

    #[test]
    fn streaming_decode_equals_the_whole_decode() {
        // A small one, and one whose payload spans many windows with one chunk larger than
        // the first window.
        for value in [record(0, 0), record(5, 10), record(3_000, 300 << 10)] {
            let bytes = encode(Kind::Layer, &value).unwrap();
            assert_eq!(decode_layer(&bytes).unwrap(), value);
            assert_eq!(decode::<LayerRecord>(Kind::Layer, &bytes).unwrap(), value);
        }
    }

    #[test]
    fn streaming_decode_refuses_what_decode_refuses() {
        let bytes = encode(Kind::Layer, &record(50, 10)).unwrap();
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(decode_layer(&flipped), Err(RecordError::Checksum)));
        let meta = encode(
            Kind::LayerMeta,
            &LayerMeta {
                tar_size: 1,
                file_bytes: 2,
                materialized: None,
            },
        )
        .unwrap();
        assert!(matches!(
            decode_layer(&meta),
            Err(RecordError::WrongKind { .. })
        ));
        // A payload that ends early: an image record is no layer record.
        let image = ImageRecord {
            manifest: vec![],
            manifest_digest: Sha256::of(b""),
            config: vec![],
            tags: vec![],
            layers: vec![],
            chain_ids: vec![],
        };
        let mut forged = encode(Kind::Image, &image).unwrap();
        forged[8] = Kind::Layer as u8;
        assert!(matches!(
            decode_layer(&forged),
            Err(RecordError::Payload(_))
        ));
    }
}

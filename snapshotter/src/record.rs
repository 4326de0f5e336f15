//! The metadata record of one snapshot, the `record` column of the `snapshots` table.
//!
//! Value layout: one version byte ([`RECORD_VERSION`]) then the postcard encoding of [`Record`].
//! Times are nanoseconds since the Unix epoch. Versions 1 (without the image base) and 2
//! (without the GC-root owner) still decode.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::info::{Info, Kind, Usage};

/// Version of the record encoding; bumped on any incompatible change.
pub(crate) const RECORD_VERSION: u8 = 3;

/// Everything the database knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Record {
    /// Names `snapshots/<id>/`; stays the same across Commit and is never reused.
    pub id: u64,
    pub kind: Kind,
    pub parent: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub created_ns: u64,
    pub updated_ns: u64,
    /// Frozen at Commit; zero for active snapshots and views (computed on demand).
    pub usage: Usage,
    /// Layer-store layers (ids) this snapshot sits on, topmost first, below its parents' dirs;
    /// only a snapshot without parent has them (version 2).
    pub layers: Vec<String>,
    /// Whether those layers are metadata-only stubs over the store's `objects/` (a data-only
    /// lower of the mount) (version 2).
    pub data_lower: bool,
    /// The layer-store image (id) whose layers those are (version 2).
    pub image: Option<String>,
    /// The layer store's GC-root owner that keeps `layers` alive; `None` for a version-2
    /// record, whose owner is `snapshotter:<id>` (version 3).
    pub gc_owner: Option<String>,
}

/// Version 2: a [`Record`] without `gc_owner`.
#[derive(serde::Deserialize)]
struct RecordV2 {
    id: u64,
    kind: Kind,
    parent: Option<String>,
    labels: BTreeMap<String, String>,
    created_ns: u64,
    updated_ns: u64,
    usage: Usage,
    layers: Vec<String>,
    data_lower: bool,
    image: Option<String>,
}

impl From<RecordV2> for Record {
    fn from(v2: RecordV2) -> Record {
        Record {
            id: v2.id,
            kind: v2.kind,
            parent: v2.parent,
            labels: v2.labels,
            created_ns: v2.created_ns,
            updated_ns: v2.updated_ns,
            usage: v2.usage,
            layers: v2.layers,
            data_lower: v2.data_lower,
            image: v2.image,
            gc_owner: None,
        }
    }
}

/// Version 1: a [`Record`] without `layers` and `data_lower`.
#[derive(serde::Deserialize)]
struct RecordV1 {
    id: u64,
    kind: Kind,
    parent: Option<String>,
    labels: BTreeMap<String, String>,
    created_ns: u64,
    updated_ns: u64,
    usage: Usage,
}

impl From<RecordV1> for Record {
    fn from(v1: RecordV1) -> Record {
        Record {
            id: v1.id,
            kind: v1.kind,
            parent: v1.parent,
            labels: v1.labels,
            created_ns: v1.created_ns,
            updated_ns: v1.updated_ns,
            usage: v1.usage,
            layers: Vec::new(),
            data_lower: false,
            image: None,
            gc_owner: None,
        }
    }
}

impl Record {
    /// The layer store's GC-root owner of this snapshot's layers.
    pub fn gc_owner(&self) -> String {
        self.gc_owner
            .clone()
            .unwrap_or_else(|| format!("{GC_OWNER_PREFIX}{}", self.id))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        // Encoding a plain struct into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
        let corrupt = |reason: String| Error::Corrupt {
            key: key.to_owned(),
            reason,
        };
        match bytes.split_first() {
            Some((&RECORD_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))
            }
            Some((2, rest)) => postcard::from_bytes::<RecordV2>(rest)
                .map(Record::from)
                .map_err(|e| corrupt(e.to_string())),
            Some((1, rest)) => postcard::from_bytes::<RecordV1>(rest)
                .map(Record::from)
                .map_err(|e| corrupt(e.to_string())),
            Some((version, _)) => Err(corrupt(format!("unknown record version {version}"))),
            None => Err(corrupt("empty record".to_owned())),
        }
    }

    pub fn info(&self, namespace: &str, name: &str) -> Info {
        Info {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone(),
            created: from_nanos(self.created_ns),
            updated: from_nanos(self.updated_ns),
        }
    }
}

/// What decoding a snapshot record read from the database promises, for any bytes: an error or
/// a record that encodes back to one equal to it, never a panic. The fuzz target
/// `snapshot_record` and the replay of its corpus call it.
#[cfg(any(test, feature = "fuzzing"))]
pub fn decode_contract(bytes: &[u8]) {
    if let Ok(record) = Record::decode("fuzz", bytes) {
        let again = Record::decode("fuzz", &record.encode()).expect("an encoded record decodes");
        assert_eq!(again, record, "a record survives encode and decode");
        let _ = (record.info("ns", "fuzz"), record.gc_owner());
    }
}

/// Prefix of every GC-root owner of snapshots.
pub(crate) const GC_OWNER_PREFIX: &str = "snapshotter:";

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn from_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            id: 7,
            kind: Kind::Committed,
            parent: Some("base".into()),
            labels: BTreeMap::from([("containerd.io/gc.root".into(), "x".into())]),
            created_ns: 1_700_000_000_123_456_789,
            updated_ns: 1_700_000_001_000_000_000,
            usage: Usage {
                size: 8192,
                inodes: 3,
            },
            layers: Vec::new(),
            data_lower: false,
            image: None,
            gc_owner: None,
        }
    }

    fn sample_on_layers() -> Record {
        Record {
            parent: None,
            layers: vec!["ab".into(), "cd".into()],
            data_lower: true,
            image: Some("img".into()),
            ..sample()
        }
    }

    #[test]
    fn round_trips() {
        let owned = Record {
            gc_owner: Some("snapshotter:ab12".into()),
            ..sample_on_layers()
        };
        for record in [sample(), sample_on_layers(), owned] {
            assert_eq!(Record::decode("k", &record.encode()).unwrap(), record);
        }
    }

    /// Pins format version 2: these bytes must keep decoding to the same record.
    #[test]
    fn decodes_version_2_sample() {
        let bytes = [
            2, 7, 2, 0, 1, 21, 99, 111, 110, 116, 97, 105, 110, 101, 114, 100, 46, 105, 111, 47,
            103, 99, 46, 114, 111, 111, 116, 1, 120, 149, 154, 151, 236, 227, 159, 231, 203, 23,
            128, 148, 147, 142, 231, 159, 231, 203, 23, 128, 64, 3, 2, 2, 97, 98, 2, 99, 100, 1, 1,
            3, 105, 109, 103,
        ];
        assert_eq!(Record::decode("k", &bytes).unwrap(), sample_on_layers());
    }

    /// Pins format version 1: these bytes must keep decoding to the same record.
    #[test]
    fn decodes_version_1_sample() {
        let bytes = [
            1, 7, 2, 1, 4, 98, 97, 115, 101, 1, 21, 99, 111, 110, 116, 97, 105, 110, 101, 114, 100,
            46, 105, 111, 47, 103, 99, 46, 114, 111, 111, 116, 1, 120, 149, 154, 151, 236, 227,
            159, 231, 203, 23, 128, 148, 147, 142, 231, 159, 231, 203, 23, 128, 64, 3,
        ];
        assert_eq!(Record::decode("k", &bytes).unwrap(), sample());
    }

    /// The fuzz corpus of `snapshot_record`, replayed: the pinned samples of each version are
    /// among its seeds.
    #[test]
    fn replay_fuzz_corpus() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/snapshot_record");
        let mut decoded = 0;
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            seen += 1;
            decode_contract(&bytes);
            decoded += usize::from(Record::decode("k", &bytes).is_ok());
        }
        assert!(seen >= 3, "seed corpus missing in {}", dir.display());
        assert!(
            decoded >= 3,
            "the version samples must decode ({decoded} of {seen})"
        );
    }

    #[test]
    fn rejects_unknown_version_and_garbage() {
        assert!(matches!(
            Record::decode("k", &[9, 1]),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            Record::decode("k", &[]),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            Record::decode("k", &[3, 0xff]),
            Err(Error::Corrupt { .. })
        ));
    }
}

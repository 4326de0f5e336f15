//! The metadata record of one snapshot, as stored in redb.
//!
//! Value layout: one version byte ([`RECORD_VERSION`]) then the postcard encoding of [`Record`].
//! Times are nanoseconds since the Unix epoch.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::info::{Info, Kind, Usage};

/// Version of the record encoding; bumped on any incompatible change.
pub(crate) const RECORD_VERSION: u8 = 1;

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
}

impl Record {
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
            Some((version, _)) => Err(corrupt(format!("unknown record version {version}"))),
            None => Err(corrupt("empty record".to_owned())),
        }
    }

    pub fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_owned(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone(),
            created: from_nanos(self.created_ns),
            updated: from_nanos(self.updated_ns),
        }
    }
}

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
        }
    }

    #[test]
    fn round_trips() {
        let record = sample();
        assert_eq!(Record::decode("k", &record.encode()).unwrap(), record);
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
            Record::decode("k", &[1, 0xff]),
            Err(Error::Corrupt { .. })
        ));
    }
}

//! What a snapshot is: its kind, its public description and its disk usage.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// Labels of a snapshot.
pub type Labels = BTreeMap<String, String>;

/// containerd's limit on a label's key plus value, in bytes.
pub const MAX_LABEL_LEN: usize = 4096;

/// The three kinds of snapshot, which share one key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A read-only snapshot of a committed parent; never committed itself.
    View,
    /// A writable snapshot, the one that can be committed.
    Active,
    /// An immutable snapshot that others can use as a parent.
    Committed,
}

impl Kind {
    /// containerd's lower-case name: `view`, `active` or `committed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot as containerd's `snapshots.Info` describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Info {
    /// The namespace the snapshot lives in: `containerd` for what containerd made through
    /// `strata serve`, `strata` for the command line (see [`crate::Snapshotter::open_in`]).
    pub namespace: String,
    /// The key (for active snapshots and views) or name (for committed ones).
    pub name: String,
    /// The committed parent, if any.
    pub parent: Option<String>,
    /// The kind.
    pub kind: Kind,
    /// Free-form labels; containerd's GC reads `containerd.io/gc.*` ones.
    pub labels: BTreeMap<String, String>,
    /// When the snapshot (or, for a committed one, the commit) was created.
    #[serde(with = "unix_nanos")]
    pub created: SystemTime,
    /// When its labels last changed.
    #[serde(with = "unix_nanos")]
    pub updated: SystemTime,
}

/// Disk usage: what `du` would say of the snapshot's own directory.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub struct Usage {
    /// Bytes allocated on disk (each inode counted once).
    pub size: u64,
    /// Number of inodes.
    pub inodes: u64,
}

/// Which fields an [`crate::Snapshotter::update`] changes, in containerd's field-path form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPaths<'a> {
    /// No field paths: replace all labels.
    AllLabels,
    /// `labels` replaces all labels, `labels.KEY` sets or (when absent) deletes one; anything
    /// else is refused.
    Only(&'a [&'a str]),
}

mod unix_nanos {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let nanos = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        s.serialize_u64(nanos)
    }
}

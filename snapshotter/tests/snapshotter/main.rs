//! The snapshotter's integration tests: containerd's semantics, its conformance suite with real
//! mounts, concurrency and crash recovery.

mod conformance;
mod crash;
mod dedup;
mod errors;
mod fetch;
mod fstest;
mod hostile;
mod image;
mod power_cut;
mod remote;
mod semantics;

use strata_snapshotter::{Labels, Snapshotter};

/// A snapshotter on a fresh temp root.
pub fn fresh() -> (tempfile::TempDir, Snapshotter) {
    let dir = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::open(dir.path()).unwrap();
    (dir, snapshotter)
}

/// Labels from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

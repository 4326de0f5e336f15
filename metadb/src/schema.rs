//! Every table of the database, created by the first process that opens a root.
//!
//! The layer store owns `layers`, `images`, `names`, `gc_roots` and `object_roots`; the snapshotter owns
//! `snapshots`, `snapshot_pool` and `counters`. Values that are records keep the encodings
//! their crates document (a layer-store record frame, a versioned postcard snapshot record).

/// The schema this build writes, kept in SQLite's `user_version`.
/// Version 2 adds `object_roots`: an older build, which would let GC delete the objects it
/// keeps, refuses the database.
pub const SCHEMA_VERSION: i64 = 2;

/// The snapshot namespace of containerd, through `strata serve`: containerd lists, removes and
/// cleans up only what is in it.
pub const CONTAINERD_NAMESPACE: &str = "containerd";
/// The snapshot namespace of the command line and, by default, of the library.
pub const CLI_NAMESPACE: &str = "strata";

/// The tables of version 2 (version 1 lacked `object_roots`; opening adds it).
pub(crate) const DDL: &str = "
CREATE TABLE IF NOT EXISTS layers (
    id TEXT PRIMARY KEY NOT NULL,
    meta BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY NOT NULL,
    image TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gc_roots (
    owner TEXT NOT NULL,
    layer TEXT NOT NULL,
    PRIMARY KEY (owner, layer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS object_roots (
    owner TEXT NOT NULL,
    object TEXT NOT NULL,
    PRIMARY KEY (owner, object)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    parent TEXT,
    record BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_by_parent ON snapshots (namespace, parent);
CREATE TABLE IF NOT EXISTS snapshot_pool (
    id INTEGER PRIMARY KEY NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The namespace of a snapshot converted from a redb root, which had none: containerd's keys
/// (`<namespace>/<number>/<name>`, as its metadata store writes them) go to containerd, every
/// other key to the command line.
pub(crate) fn legacy_namespace(key: &str) -> &'static str {
    let mut parts = key.splitn(3, '/');
    let containerd = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(ns), Some(n), Some(_)) if !ns.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    );
    if containerd {
        CONTAINERD_NAMESPACE
    } else {
        CLI_NAMESPACE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_keys_go_to_containerd() {
        assert_eq!(
            legacy_namespace("default/3/sha256:ab"),
            CONTAINERD_NAMESPACE
        );
        assert_eq!(
            legacy_namespace("k8s.io/12/extract-1 sha256:x"),
            CONTAINERD_NAMESPACE
        );
        for key in ["keepme", "a/b", "default/x/y", "/3/y", "default//y"] {
            assert_eq!(legacy_namespace(key), CLI_NAMESPACE, "{key}");
        }
    }
}

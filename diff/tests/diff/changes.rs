//! `changes(old, new)`: every test runs the sequential and the parallel walk (`support::both`).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use strata_diff::{ChangeKind, ContentCheck, DiffError, DiffOptions};

use crate::support::{both, can_mount, lines, set_mtime};

fn pair() -> (tempfile::TempDir, tempfile::TempDir) {
    (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap())
}

/// Writes the same file on both sides with the same mtime.
fn same_file(old: &Path, new: &Path, rel: &str, data: &[u8], sec: i64, nsec: i64) {
    for root in [old, new] {
        fs::write(root.join(rel), data).unwrap();
        set_mtime(&root.join(rel), sec, nsec);
    }
}

#[test]
fn added_modified_deleted_in_walk_order() {
    let (old, new) = pair();
    let (o, n) = (old.path(), new.path());
    for root in [o, n] {
        fs::create_dir_all(root.join("keep/sub")).unwrap();
    }
    same_file(o, n, "keep/same", b"x", 1000, 5);
    fs::write(o.join("keep/sub/edited"), "old").unwrap();
    fs::write(n.join("keep/sub/edited"), "new!").unwrap();
    fs::create_dir_all(o.join("gone/deep/er")).unwrap();
    fs::write(o.join("gone/deep/er/f"), "f").unwrap();
    fs::create_dir_all(n.join("fresh/x")).unwrap();
    fs::write(n.join("fresh/x/y"), "y").unwrap();
    fs::write(n.join("fresh.txt"), "t").unwrap();
    // Identical dir metadata on both sides so only the real changes show.
    for root in [o, n] {
        for dir in ["keep/sub", "keep"] {
            set_mtime(&root.join(dir), 2000, 7);
        }
    }
    let set = both(o, n, ContentCheck::Ambiguous);
    assert_eq!(
        lines(&set),
        [
            "A fresh",
            "A fresh/x",
            "A fresh/x/y",
            "A fresh.txt",
            "D gone",
            "M keep/sub/edited",
        ]
    );
    assert_eq!(set.source, n);
    let added = &set.changes[0];
    assert_eq!(
        added.meta.as_ref().unwrap().kind,
        strata_diff::FileKind::Dir
    );
    assert!(set.changes[4].meta.is_none(), "deletions carry no metadata");
}

#[test]
fn metadata_only_changes_are_reported_for_files_and_dirs() {
    let (old, new) = pair();
    let (o, n) = (old.path(), new.path());
    for name in ["mode", "xattr", "mtime", "untouched", "owner"] {
        same_file(o, n, name, b"same", 1000, 123);
    }
    for root in [o, n] {
        fs::create_dir(root.join("dir")).unwrap();
    }
    fs::set_permissions(n.join("mode"), fs::Permissions::from_mode(0o4755)).unwrap();
    strata_cow::xattr::set(&n.join("xattr"), b"user.note", b"hi").unwrap();
    set_mtime(&n.join("mtime"), 1001, 123);
    fs::set_permissions(n.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
    let mut expected = vec!["M dir", "M mode", "M mtime", "M xattr"];
    if can_mount() {
        rustix::fs::chownat(
            rustix::fs::CWD,
            n.join("owner"),
            Some(rustix::fs::Uid::from_raw(4242)),
            None,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        expected.push("M owner");
        expected.sort();
    }
    for root in [o, n] {
        set_mtime(&root.join("dir"), 1000, 1);
    }
    assert_eq!(lines(&both(o, n, ContentCheck::Ambiguous)), expected);
}

#[test]
fn ambiguous_mtimes_compare_content_and_exact_ones_trust_metadata() {
    let (old, new) = pair();
    let (o, n) = (old.path(), new.path());
    // Same size, same second, zero nanoseconds: the content decides.
    fs::write(o.join("truncated-differs"), "aaaa").unwrap();
    fs::write(n.join("truncated-differs"), "bbbb").unwrap();
    set_mtime(&o.join("truncated-differs"), 1000, 0);
    set_mtime(&n.join("truncated-differs"), 1000, 0);
    same_file(o, n, "truncated-same", b"cccc", 1000, 0);
    // Zero nanoseconds on one side only (a tar round trip) is ambiguous too.
    fs::write(o.join("one-side"), "dddd").unwrap();
    fs::write(n.join("one-side"), "eeee").unwrap();
    set_mtime(&o.join("one-side"), 1000, 0);
    set_mtime(&n.join("one-side"), 1000, 999);
    // Exact, equal nanoseconds: metadata is trusted unless --content.
    fs::write(o.join("exact"), "ffff").unwrap();
    fs::write(n.join("exact"), "gggg").unwrap();
    set_mtime(&o.join("exact"), 1000, 42);
    set_mtime(&n.join("exact"), 1000, 42);
    // A large file differing only in its last byte.
    let mut big = vec![7u8; 1 << 20];
    fs::write(o.join("big"), &big).unwrap();
    *big.last_mut().unwrap() = 8;
    fs::write(n.join("big"), &big).unwrap();
    set_mtime(&o.join("big"), 1000, 0);
    set_mtime(&n.join("big"), 1000, 0);
    assert_eq!(
        lines(&both(o, n, ContentCheck::Ambiguous)),
        ["M big", "M one-side", "M truncated-differs"]
    );
    assert_eq!(
        lines(&both(o, n, ContentCheck::Always)),
        ["M big", "M exact", "M one-side", "M truncated-differs"]
    );
}

#[test]
fn type_changes_and_symlinks() {
    let (old, new) = pair();
    let (o, n) = (old.path(), new.path());
    fs::write(o.join("was-file"), "f").unwrap();
    fs::create_dir(n.join("was-file")).unwrap();
    fs::write(n.join("was-file/child"), "c").unwrap();
    fs::create_dir(o.join("was-dir")).unwrap();
    fs::write(o.join("was-dir/child"), "c").unwrap();
    fs::write(n.join("was-dir"), "now a file").unwrap();
    symlink("target-a", o.join("link")).unwrap();
    symlink("target-b", n.join("link")).unwrap();
    symlink("same", o.join("same-link")).unwrap();
    symlink("same", n.join("same-link")).unwrap();
    for root in [o, n] {
        set_mtime(&root.join("same-link"), 1000, 1);
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        n.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert_eq!(
        lines(&both(o, n, ContentCheck::Ambiguous)),
        [
            "A fifo",
            "M link",
            "M was-dir",
            "M was-file",
            "A was-file/child"
        ]
    );
}

#[test]
fn a_root_that_is_not_a_directory_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = strata_diff::changes(dir.path(), &file, &DiffOptions::default()).unwrap_err();
    assert!(
        matches!(err, DiffError::NotADirectory { ref path } if path == &file),
        "{err}"
    );
    let missing = dir.path().join("missing");
    let err = strata_diff::changes(&missing, dir.path(), &DiffOptions::default()).unwrap_err();
    assert!(
        matches!(err, DiffError::Read { ref path, .. } if path == &missing),
        "{err}"
    );
}

#[test]
fn many_entries_agree_across_thread_counts() {
    let (old, new) = pair();
    let (o, n) = (old.path(), new.path());
    for d in 0..20 {
        for root in [o, n] {
            fs::create_dir_all(root.join(format!("d{d}/s"))).unwrap();
        }
        for f in 0..30 {
            let rel = format!("d{d}/s/f{f}");
            same_file(o, n, &rel, format!("{d}-{f}").as_bytes(), 1000, 0);
            if (d * 31 + f) % 7 == 0 {
                fs::write(n.join(&rel), format!("{d}+{f}")).unwrap();
                set_mtime(&n.join(&rel), 1000, 0);
            }
        }
    }
    for d in 0..20 {
        for root in [o, n] {
            set_mtime(&root.join(format!("d{d}/s")), 1000, 1);
            set_mtime(&root.join(format!("d{d}")), 1000, 1);
        }
    }
    let set = both(o, n, ContentCheck::Ambiguous);
    assert!(set.changes.iter().all(|c| c.kind == ChangeKind::Modified));
    assert_eq!(
        set.changes.len(),
        (0..600).filter(|i| (i / 30 * 31 + i % 30) % 7 == 0).count()
    );
}

#[test]
fn deferred_work_lands_in_walk_order_among_inline_changes() {
    // Content compares and subdirectories run after their directory's metadata pass; their
    // changes must still come out exactly where the walk puts them.
    let (old, new) = pair();
    let (o, n) = (old.path(), new.path());
    fs::write(o.join("a-content"), "1111").unwrap();
    fs::write(n.join("a-content"), "2222").unwrap();
    for root in [o, n] {
        fs::create_dir_all(root.join("b-dir/inner")).unwrap();
    }
    fs::write(n.join("b-dir/inner/new"), "n").unwrap();
    fs::write(o.join("c-deleted"), "c").unwrap();
    fs::create_dir_all(n.join("d-added/x")).unwrap();
    fs::write(n.join("d-added/x/y"), "y").unwrap();
    fs::write(o.join("e-mode"), "e").unwrap();
    fs::write(n.join("e-mode"), "e").unwrap();
    fs::set_permissions(n.join("e-mode"), fs::Permissions::from_mode(0o600)).unwrap();
    same_file(o, n, "f-same", b"ffff", 1000, 0);
    fs::write(o.join("g-file-to-dir"), "g").unwrap();
    fs::create_dir(n.join("g-file-to-dir")).unwrap();
    fs::write(n.join("g-file-to-dir/child"), "c").unwrap();
    fs::write(o.join("h-content"), vec![1u8; 200_000]).unwrap();
    fs::write(
        n.join("h-content"),
        [vec![1u8; 70_000], vec![2u8; 130_000]].concat(),
    )
    .unwrap();
    for root in [o, n] {
        for file in ["a-content", "e-mode", "h-content"] {
            set_mtime(&root.join(file), 1000, 0);
        }
        for dir in ["b-dir/inner", "b-dir"] {
            set_mtime(&root.join(dir), 2000, 7);
        }
    }
    assert_eq!(
        lines(&both(o, n, ContentCheck::Ambiguous)),
        [
            "M a-content",
            "A b-dir/inner/new",
            "D c-deleted",
            "A d-added",
            "A d-added/x",
            "A d-added/x/y",
            "M e-mode",
            "M g-file-to-dir",
            "A g-file-to-dir/child",
            "M h-content",
        ]
    );
}

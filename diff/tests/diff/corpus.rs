//! The fuzz corpus of the `apply` target (fuzz/corpus/apply) and its crashers
//! (fuzz/regressions/apply), replayed without a fuzzer: errors are fine, panics and escapes are
//! bugs. The seeds come from our own writer and the hostile-layer table:
//! `cargo test -p strata-diff --test diff -- --ignored generate_apply_corpus` rewrites them.

use std::fs;
use std::path::{Path, PathBuf};

use strata_diff::{ApplyOptions, Compression, ContentCheck, WriteOptions};

use crate::support::{Raw, RawTar, both, state};

fn fuzz_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join("apply")
}

#[test]
fn replay_apply_corpus_and_crashers() {
    let mut inputs = Vec::new();
    for dir in [fuzz_dir("corpus"), fuzz_dir("regressions")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            inputs.push(entry.unwrap().path());
        }
    }
    inputs.sort();
    assert!(
        inputs.len() >= 20,
        "the seed corpus is missing: {} inputs",
        inputs.len()
    );
    for input in inputs {
        let data = fs::read(&input).unwrap();
        let sandbox = tempfile::tempdir().unwrap();
        let (root, outside) = (sandbox.path().join("root"), sandbox.path().join("outside"));
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        let before = state(&outside);
        let _ = strata_diff::apply_layer(&data[..], &root, &ApplyOptions::default());
        assert_eq!(
            state(&outside),
            before,
            "{}: escaped the root",
            input.display()
        );
        let mut top: Vec<_> = fs::read_dir(sandbox.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(
            top,
            ["outside", "root"],
            "{}: wrote beside the root",
            input.display()
        );
    }
}

/// Small layers from our writer: every entry type, PAX records, whiteouts, three compressions.
fn written_layers() -> Vec<(String, Vec<u8>)> {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (o, n) = (old.path(), new.path());
    for root in [o, n] {
        fs::create_dir_all(root.join("etc/d")).unwrap();
        fs::write(root.join("etc/gone"), "g").unwrap();
        fs::write(root.join("etc/d/x"), "x").unwrap();
    }
    fs::remove_file(n.join("etc/gone")).unwrap();
    fs::write(n.join("etc/d/x"), "changed").unwrap();
    fs::write(n.join("file"), "hello").unwrap();
    fs::hard_link(n.join("file"), n.join("hardlink")).unwrap();
    std::os::unix::fs::symlink("file", n.join("symlink")).unwrap();
    fs::write(n.join("x".repeat(120)), "long").unwrap();
    fs::write(n.join("xattr"), "a").unwrap();
    strata_cow::xattr::set(&n.join("xattr"), b"user.k", b"v\n").unwrap();
    fs::remove_dir_all(o.join("etc/d")).unwrap();
    let set = both(o, n, ContentCheck::Ambiguous);
    let mut out = Vec::new();
    for (name, compression) in [
        ("tar", Compression::None),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
    ] {
        let mut bytes = Vec::new();
        strata_diff::write_layer(&set, &WriteOptions::new(compression), &mut bytes).unwrap();
        out.push((format!("written-{name}"), bytes));
    }
    let plain = out[0].1.clone();
    for cut in [100, 512, 700, 1536, plain.len() - 1024] {
        out.push((format!("truncated-{cut}"), plain[..cut].to_vec()));
    }
    let mut flipped = plain.clone();
    flipped[148] ^= 1; // checksum
    out.push(("bad-checksum".into(), flipped));
    out
}

fn hostile_layers() -> Vec<(String, Vec<u8>)> {
    let one = |name: &[u8], kind: Raw<'_>| RawTar::new().add(name, kind).finish();
    vec![
        ("dotdot".into(), one(b"../escape", Raw::File(b"x"))),
        ("absolute".into(), one(b"/abs/file", Raw::File(b"x"))),
        (
            "symlink-then-file".into(),
            RawTar::new()
                .add(b"l", Raw::Symlink(b"../"))
                .add(b"l/x", Raw::File(b"x"))
                .finish(),
        ),
        (
            "abs-symlink-then-file".into(),
            RawTar::new()
                .add(b"l", Raw::Symlink(b"/tmp"))
                .add(b"l/x", Raw::File(b"x"))
                .finish(),
        ),
        (
            "hardlink-dotdot".into(),
            one(b"h", Raw::Hardlink(b"../secret")),
        ),
        (
            "hardlink-missing".into(),
            one(b"h", Raw::Hardlink(b"nothing")),
        ),
        (
            "whiteout-through-symlink".into(),
            RawTar::new()
                .add(b"l", Raw::Symlink(b".."))
                .add(b"l/.wh.outside", Raw::File(b""))
                .finish(),
        ),
        (
            "opaque-through-symlink".into(),
            RawTar::new()
                .add(b"l", Raw::Symlink(b"/"))
                .add(b"l/.wh..wh..opq", Raw::File(b""))
                .finish(),
        ),
        ("invalid-whiteout".into(), one(b".wh..", Raw::File(b""))),
        ("fifo".into(), one(b"p", Raw::Fifo)),
        ("device".into(), one(b"dev/null", Raw::Char(1, 3))),
        (
            "pax-path".into(),
            RawTar::new()
                .pax(&[("path", b"../pax-escape")])
                .add(b"p", Raw::File(b"x"))
                .finish(),
        ),
        (
            "pax-xattr".into(),
            RawTar::new()
                .pax(&[("SCHILY.xattr.user.a", b"\n\0")])
                .add(b"p", Raw::File(b"x"))
                .finish(),
        ),
        (
            "dir-over-file".into(),
            RawTar::new()
                .add(b"a", Raw::File(b"x"))
                .add(b"a/", Raw::Dir)
                .add(b"a/b", Raw::File(b"y"))
                .finish(),
        ),
    ]
}

#[test]
#[ignore = "rewrites fuzz/corpus/apply; run by hand"]
fn generate_apply_corpus() {
    let dir = fuzz_dir("corpus");
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in written_layers().into_iter().chain(hostile_layers()) {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

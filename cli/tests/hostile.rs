//! Exhaustion inputs through the real binary: each import either finishes or is refused with
//! its peak memory under 256 MiB, as `/usr/bin/time` (Debian package `time`) measures it.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use strata_testkit::hostile;

const MAX_RSS_KIB: u64 = 256 << 10;

/// Runs `strata --root ROOT ARGS…` under `/usr/bin/time`; returns whether it succeeded, its
/// stderr and its peak RSS in KiB, or `None` when the tool is missing.
fn measured(root: &Path, args: &[&str]) -> Option<(bool, String, u64)> {
    // GNU time, not the shell keyword: it reports the child's peak RSS.
    if !strata_testkit::peer("time", "time") {
        return None;
    }
    let time = Path::new("/usr/bin/time");
    let report = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(report.path())
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let rss = fs::read_to_string(report.path()).unwrap();
    let rss: u64 = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS in {rss:?}"));
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rss,
    ))
}

/// Imports `source` and checks the outcome and the peak memory.
fn import_within_memory(source: &Path, accepted: bool, reason: &str) {
    let store = tempfile::tempdir().unwrap();
    let root = store.path().join("store");
    let source = source.to_str().unwrap();
    let Some((ok, stderr, rss)) = measured(&root, &["import", source]) else {
        return;
    };
    assert_eq!(ok, accepted, "{source}: {stderr}");
    assert!(stderr.contains(reason), "{source}: {stderr}");
    assert!(rss < MAX_RSS_KIB, "{source}: peak RSS {rss} KiB");
    eprintln!("{source}: peak RSS {rss} KiB");
}

fn layer(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn nested_indexes_stay_small() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("nested");
    hostile::nested_index_layout(&layout, 8, 8);
    import_within_memory(&layout, false, "nesting depth of image indexes");
}

#[test]
fn an_inflation_bomb_streams_into_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = layer(tmp.path(), "bomb.tar.gz", &hostile::zero_bomb(1 << 30));
    import_within_memory(&bomb, true, "");
}

#[test]
fn a_long_hard_link_chain_stays_small() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = layer(
        tmp.path(),
        "chain.tar.gz",
        &hostile::gzip(&hostile::hardlink_chain(160_000)),
    );
    import_within_memory(&chain, true, "");
}

#[test]
fn xattr_floods_are_refused_small() {
    let tmp = tempfile::tempdir().unwrap();
    let flood = layer(
        tmp.path(),
        "flood.tar.gz",
        &hostile::gzip(&hostile::xattr_flood(540, 1 << 20)),
    );
    import_within_memory(&flood, false, "bytes of one PAX or long-name record");
    let global = layer(
        tmp.path(),
        "global.tar.gz",
        &hostile::gzip(&hostile::global_pax(
            "SCHILY.xattr.user.big",
            1 << 20,
            10_000,
        )),
    );
    import_within_memory(&global, false, "over the limit");
}

#[test]
fn two_hundred_thousand_entries_import_small() {
    let tmp = tempfile::tempdir().unwrap();
    let many = layer(
        tmp.path(),
        "many.tar.gz",
        &hostile::gzip(&hostile::many_entries(200_000)),
    );
    import_within_memory(&many, true, "");
}

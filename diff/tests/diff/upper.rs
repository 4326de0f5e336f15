//! The overlay upper-dir fast path against real overlay mounts: its changes match a two-tree
//! walk of the mounted trees, and its layer turns the lowers into the container's view.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use strata_cow::overlay::Overlay;
use strata_diff::{
    ApplyOptions, ChangeSet, Compression, ContentCheck, DiffError, DiffOptions, Threads,
    WriteOptions,
};
use strata_testkit::tree;

use crate::support::{both, can_mount, lines, state};

/// `upper_changes` run sequentially and on a 4-thread pool; asserts both agree.
fn upper_both(lowers: &[&Path], upper: &Path) -> Result<ChangeSet, DiffError> {
    let opts = |threads| {
        DiffOptions::default()
            .with_content(ContentCheck::Ambiguous)
            .with_threads(threads)
    };
    let seq = strata_diff::upper_changes(lowers, upper, &opts(Threads::Sequential));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let par = pool.install(|| strata_diff::upper_changes(lowers, upper, &opts(Threads::Rayon)));
    match (&seq, &par) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "sequential and parallel upper diffs differ"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("sequential {seq:?} vs parallel {par:?}"),
    }
    seq
}

struct Snapshot {
    dir: tempfile::TempDir,
}

impl Snapshot {
    fn new() -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        for d in ["lower1", "lower2", "upper", "work", "old", "new"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        Snapshot { dir }
    }
    fn p(&self, d: &str) -> PathBuf {
        self.dir.path().join(d)
    }
}

fn populate_lowers(s: &Snapshot) {
    let (l1, l2) = (s.p("lower1"), s.p("lower2"));
    fs::create_dir_all(l1.join("etc/conf.d")).unwrap();
    fs::write(l1.join("etc/hostname"), "base").unwrap();
    fs::write(l1.join("etc/conf.d/a"), "a").unwrap();
    fs::write(l1.join("etc/conf.d/b"), "b").unwrap();
    fs::create_dir_all(l1.join("usr/share/doc")).unwrap();
    fs::write(l1.join("usr/share/doc/readme"), "r").unwrap();
    fs::write(l1.join("bin-tool"), "tool v1").unwrap();
    fs::create_dir_all(l2.join("etc")).unwrap();
    fs::write(l2.join("etc/hostname"), "app").unwrap();
    fs::write(l2.join("etc/motd"), "hello").unwrap();
    fs::write(l2.join("etc/copied"), "copied up, unchanged").unwrap();
    fs::create_dir_all(l2.join("opt/app")).unwrap();
    fs::write(l2.join("opt/app/main"), "main").unwrap();
    fs::write(l2.join("opt/app/unchanged"), "same").unwrap();
    // lower2 hides lower1's bin-tool.
    strata_cow::conventions::create_whiteout(
        &l2.join("bin-tool"),
        strata_cow::conventions::WhiteoutStyle::CharDevice,
    )
    .unwrap();
}

/// What a container does to its rootfs.
fn container_work(root: &Path) {
    fs::write(root.join("etc/hostname"), "container").unwrap(); // copy-up + change
    fs::set_permissions(root.join("etc/motd"), fs::Permissions::from_mode(0o600)).unwrap(); // metadata only
    fs::remove_file(root.join("etc/conf.d/a")).unwrap(); // whiteout
    fs::remove_dir_all(root.join("usr/share")).unwrap(); // dir whiteout
    fs::remove_dir_all(root.join("opt/app")).unwrap(); // opaque dir: removed ...
    fs::create_dir(root.join("opt/app")).unwrap(); // ... and recreated
    fs::write(root.join("opt/app/main"), "main v2").unwrap();
    fs::write(root.join("new-file"), "n").unwrap();
    fs::create_dir_all(root.join("var/lib/x")).unwrap();
    fs::write(root.join("var/lib/x/state"), "s").unwrap();
    fs::rename(root.join("etc/conf.d/b"), root.join("etc/conf.d/b2")).unwrap();
    // Copied up but unchanged: opened for writing, nothing written.
    drop(
        fs::OpenOptions::new()
            .append(true)
            .open(root.join("etc/copied"))
            .unwrap(),
    );
}

#[test]
fn upper_changes_match_the_mounted_two_tree_walk_and_apply_to_the_container_view() {
    if !can_mount() {
        return;
    }
    let s = Snapshot::new();
    populate_lowers(&s);
    let lowers = [s.p("lower2"), s.p("lower1")];
    {
        let _rootfs = Overlay::new()
            .lowers(lowers.clone())
            .upper(s.p("upper"), s.p("work"))
            .mount_at(&s.p("new"))
            .unwrap();
        container_work(&s.p("new"));
    }
    // A whiteout with nothing below it, as left by a create+delete in an older kernel.
    strata_cow::conventions::create_whiteout(
        &s.p("upper/ghost"),
        strata_cow::conventions::WhiteoutStyle::CharDevice,
    )
    .unwrap();

    assert!(
        s.p("upper/etc/copied").exists(),
        "opening for write copied it up"
    );
    let lower_refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let fast = upper_both(&lower_refs, &s.p("upper")).unwrap();

    // The reference: the lowers alone, and the container's view, both mounted read-only.
    let ro = strata_cow::overlay::OverlayOptions::default().with_read_only(true);
    let _old = Overlay::new()
        .lowers(lowers.clone())
        .options(ro.clone())
        .mount_at(&s.p("old"))
        .unwrap();
    let _new = Overlay::new()
        .lower(s.p("upper"))
        .lowers(lowers.clone())
        .options(ro)
        .mount_at(&s.p("new"))
        .unwrap();
    let slow = both(&s.p("old"), &s.p("new"), ContentCheck::Ambiguous);
    assert_eq!(lines(&fast), lines(&slow));
    assert_eq!(
        lines(&fast),
        [
            // etc itself only had children changed in place: its copy-up kept its metadata.
            "M etc/conf.d",
            "D etc/conf.d/a",
            "D etc/conf.d/b",
            "A etc/conf.d/b2",
            "M etc/hostname",
            "M etc/motd",
            "A new-file",
            "M opt",
            "M opt/app",
            // Inside the recreated (opaque) dir, main replaces the lower's main.
            "M opt/app/main",
            "D opt/app/unchanged",
            "M usr",
            "D usr/share",
            "A var",
            "A var/lib",
            "A var/lib/x",
            "A var/lib/x/state",
        ]
    );

    // Applying the fast path's layer to a copy of the lowers' view gives the container's view.
    let copy = tempfile::tempdir().unwrap();
    tree::copy(&s.p("old"), copy.path());
    let mut layer = Vec::new();
    strata_diff::write_layer(&fast, &WriteOptions::new(Compression::None), &mut layer).unwrap();
    strata_diff::apply_layer(&layer[..], copy.path(), &ApplyOptions::default()).unwrap();
    tree::assert_same(&state(copy.path()), &state(&s.p("new")));
}

#[test]
fn redirect_and_metacopy_uppers_ask_for_the_tree_walk() {
    if !can_mount() {
        return;
    }
    for attr in [&b"trusted.overlay.redirect"[..], b"user.overlay.metacopy"] {
        let s = Snapshot::new();
        populate_lowers(&s);
        fs::create_dir(s.p("upper/etc")).unwrap();
        strata_cow::xattr::set(&s.p("upper/etc"), attr, b"/elsewhere").unwrap();
        let err = upper_both(&[&s.p("lower2"), &s.p("lower1")], &s.p("upper")).unwrap_err();
        assert!(
            matches!(&err, DiffError::NeedsTreeWalk { path, attr: a } if path == &s.p("upper/etc") && a.as_bytes() == attr),
            "{err}"
        );
    }
}

//! containerd's snapshotter conformance suite (`core/snapshots/testsuite`), case by case, with
//! real kernel mounts. Each test's name follows the Go one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_snapshotter::{ErrorKind, Kind, Labels, Snapshotter};

use crate::fstest::{Applier, Op, apply, assert_same_tree, file};
use crate::labels;

/// A snapshotter and a play area; `None` (after printing why) when mounting is impossible.
pub struct Suite {
    pub dir: tempfile::TempDir,
    pub sn: Snapshotter,
    next: std::cell::Cell<u32>,
}

pub fn suite() -> Option<Suite> {
    if !strata_testkit::can_mount() {
        return None;
    }
    // containerd clears the umask so that modes come out exactly as asked.
    rustix::process::umask(rustix::fs::Mode::empty());
    let dir = tempfile::tempdir().unwrap();
    let sn = Snapshotter::open(dir.path().join("root")).unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    Some(Suite {
        dir,
        sn,
        next: std::cell::Cell::new(0),
    })
}

fn gc() -> Labels {
    labels(&[("containerd.io/gc.root", "conformance")])
}

impl Suite {
    /// A fresh empty dir under the play area.
    pub fn scratch(&self, what: &str) -> PathBuf {
        let n = self.next.get();
        self.next.set(n + 1);
        let path = self.dir.path().join("work").join(format!("{what}-{n}"));
        std::fs::create_dir(&path).unwrap();
        path
    }

    /// Prepares `key` on `parent`, mounts it, applies `ops`, unmounts, commits it as `name`.
    pub fn layer(&self, key: &str, name: &str, parent: Option<&str>, ops: &[Op]) {
        self.sn.prepare(key, parent, gc()).unwrap();
        let target = self.scratch("prepare");
        let guard = self.sn.mount(key, &target).unwrap();
        apply(&target, ops).unwrap();
        guard.unmount().unwrap();
        self.sn.commit(name, key, gc()).unwrap();
    }

    /// Views `name`, mounts it and compares it with `expected`.
    pub fn check(&self, name: &str, expected: &Path) {
        let view = format!("{name}-view");
        self.sn.view(&view, Some(name), gc()).unwrap();
        let target = self.scratch("check");
        let guard = self.sn.mount(&view, &target).unwrap();
        assert_same_tree(expected, &target);
        guard.unmount().unwrap();
        self.sn.remove(&view).unwrap();
    }

    /// containerd's `checkSnapshots`: a chain, one layer per applier, each checked in a view
    /// against the same appliers run on one flat dir.
    pub fn check_chain(&self, appliers: &[Applier]) -> Vec<String> {
        let flat = self.scratch("flat");
        let mut parent: Option<String> = None;
        let mut names = Vec::new();
        for (i, ops) in appliers.iter().enumerate() {
            let name = format!("chain-{}-{i}", self.next.get());
            self.layer(&format!("{name}-prepare"), &name, parent.as_deref(), ops);
            apply(&flat, ops).unwrap();
            self.check(&name, &flat);
            parent = Some(name.clone());
            names.push(name);
        }
        names
    }
}

#[test]
fn basic() {
    let Some(s) = suite() else { return };
    let initial: Applier = vec![
        file("foo", "foo\n", 0o777),
        Op::Dir("a", 0o755),
        Op::Dir("a/b", 0o755),
        Op::Dir("a/b/c", 0o755),
    ];
    let diff: Applier = vec![
        file("bar", "bar\n", 0o777),
        file("foo", "bar\n", 0o777),
        Op::RemoveAll("a/b"),
    ];
    let mounts = s.sn.prepare("preparing", None, gc()).unwrap();
    assert!(!mounts.is_empty());
    let target = s.scratch("preparing");
    let guard = s.sn.mount("preparing", &target).unwrap();
    apply(&target, &initial).unwrap();
    guard.unmount().unwrap();
    s.sn.commit("committed", "preparing", gc()).unwrap();
    let si = s.sn.stat("committed").unwrap();
    assert_eq!((si.parent.as_deref(), si.kind), (None, Kind::Committed));
    assert_eq!(
        s.sn.stat("preparing").unwrap_err().kind(),
        ErrorKind::NotFound
    );

    s.sn.prepare("next", Some("committed"), gc()).unwrap();
    let next = s.scratch("next");
    let guard = s.sn.mount("next", &next).unwrap();
    let flat = s.scratch("flat");
    apply(&flat, &initial).unwrap();
    assert_same_tree(&flat, &next);
    apply(&next, &diff).unwrap();
    guard.unmount().unwrap();
    let ni = s.sn.stat("next").unwrap();
    assert_eq!(
        (ni.parent.as_deref(), ni.kind),
        (Some("committed"), Kind::Active)
    );
    s.sn.commit("committed-next", "next", gc()).unwrap();
    let si2 = s.sn.stat("committed-next").unwrap();
    assert_eq!(
        (si2.parent.as_deref(), si2.kind),
        (Some("committed"), Kind::Committed)
    );
    assert_eq!(s.sn.stat("next").unwrap_err().kind(), ErrorKind::NotFound);

    let walked = s.sn.list::<&str>(&[]).unwrap();
    assert!(walked.contains(&si) && walked.contains(&si2), "{walked:?}");

    s.sn.view("nextnext", Some("committed-next"), gc()).unwrap();
    let view = s.scratch("view");
    let guard = s.sn.mount("nextnext", &view).unwrap();
    apply(&flat, &diff).unwrap();
    assert_same_tree(&flat, &view);
    guard.unmount().unwrap();
    s.sn.remove("nextnext").unwrap();
    let err = s.sn.remove("committed").unwrap_err();
    assert!(err.to_string().contains("remove"), "{err}");
    s.sn.remove("committed-next").unwrap();
    s.sn.remove("committed").unwrap();
}

#[test]
fn stat_active_and_committed() {
    let Some(s) = suite() else { return };
    s.sn.prepare("preparing", None, gc()).unwrap();
    let target = s.scratch("p");
    let guard = s.sn.mount("preparing", &target).unwrap();
    std::fs::write(target.join("foo"), "foo\n").unwrap();
    let si = s.sn.stat("preparing").unwrap();
    assert_eq!(
        (si.name.as_str(), si.kind, si.parent),
        ("preparing", Kind::Active, None)
    );
    guard.unmount().unwrap();
    s.sn.commit("committed", "preparing", gc()).unwrap();
    let si = s.sn.stat("committed").unwrap();
    assert_eq!(
        (si.name.as_str(), si.kind, si.parent),
        ("committed", Kind::Committed, None)
    );
}

#[test]
fn transitivity() {
    let Some(s) = suite() else { return };
    s.layer("preparing", "snapA", None, &[file("foo", "foo\n", 0o777)]);
    s.layer(
        "next",
        "snapB",
        Some("snapA"),
        &[file("foo", "foo bar\n", 0o777)],
    );
    let (a, b) = (s.sn.stat("snapA").unwrap(), s.sn.stat("snapB").unwrap());
    let parent_of_b = s.sn.stat(b.parent.as_deref().unwrap()).unwrap();
    assert_eq!(
        (a.parent, b.parent.as_deref(), parent_of_b.parent),
        (None, Some("snapA"), None)
    );
}

#[test]
fn prepare_view_with_existing_key_fails() {
    let Some(s) = suite() else { return };
    s.layer("preparing", "snapA", None, &[]);
    s.sn.prepare("newlayer", Some("snapA"), gc()).unwrap();
    assert_eq!(
        s.sn.view("newlayer", Some("snapA"), gc())
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    s.sn.prepare("prepLayer", Some("snapA"), gc()).unwrap();
    assert_eq!(
        s.sn.prepare("prepLayer", Some("snapA"), gc())
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    s.sn.view("viewLayer", Some("snapA"), gc()).unwrap();
    assert_eq!(
        s.sn.view("viewLayer", Some("snapA"), gc())
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
}

/// `checkLayerFileUpdate`: a file rewritten in an upper layer with the same size, within the
/// same second as the lower's copy and across a second boundary (set by utimensat, no sleeping).
#[test]
fn layer_file_update() {
    let Some(s) = suite() else { return };
    for (secs, nanos) in [
        (1_700_000_000, 0),
        (1_700_000_000, 999_999_999),
        (1_700_000_001, 0),
    ] {
        let l1: Applier = vec![
            Op::Dir("etc", 0o700),
            file("etc/hosts", "mydomain 10.0.0.1", 0o644),
            file("etc/profile", "PATH=/usr/bin", 0o644),
            Op::Mtime("etc/hosts", 1_700_000_000, 500_000_000),
        ];
        let l2: Applier = vec![
            file("etc/hosts", "mydomain 10.0.0.2", 0o644),
            file("etc/profile", "PATH=/usr/bin", 0o666),
            Op::Mtime("etc/hosts", secs, nanos),
            Op::Dir("root", 0o700),
            file("root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0o644),
        ];
        s.check_chain(&[l1, l2]);
    }
}

/// `checkRemoveDirectoryInLowerLayer`: a dir removed and recreated hides the old contents
/// (an opaque dir in the upper).
#[test]
fn remove_directory_in_lower_layer() {
    let Some(s) = suite() else { return };
    s.check_chain(&[
        vec![Op::Dir("lib", 0o700), file("lib/hidden", "", 0o644)],
        vec![
            Op::RemoveAll("lib"),
            Op::Dir("lib", 0o700),
            file("lib/not-hidden", "", 0o644),
        ],
        vec![file("lib/newfile", "", 0o644)],
    ]);
}

/// `checkChown`: chown of a lower tree in an upper.
#[test]
fn chown() {
    let Some(s) = suite() else { return };
    s.check_chain(&[
        vec![
            Op::Dir("opt", 0o700),
            Op::Dir("opt/a", 0o700),
            Op::Dir("opt/a/b", 0o700),
            file("opt/a/b/file.txt", "hello", 0o644),
        ],
        vec![
            Op::Chown("opt", 1, 1),
            Op::Chown("opt/a", 1, 1),
            Op::Chown("opt/a/b", 1, 1),
            Op::Chown("opt/a/b/file.txt", 1, 1),
        ],
    ]);
}

/// `checkDirectoryPermissionOnCommit`: owners and modes of dirs across three layers.
#[test]
fn directory_permission_on_commit() {
    let Some(s) = suite() else { return };
    s.check_chain(&[
        vec![
            Op::Dir("dir1", 0o700),
            Op::Dir("dir2", 0o700),
            Op::Dir("dir3", 0o700),
            Op::Dir("dir4", 0o700),
            file("dir4/f1", "...", 0o644),
            Op::Dir("dir5", 0o700),
            file("dir5/f1", "...", 0o644),
            Op::Chown("dir1", 1, 1),
            Op::Chown("dir2", 1, 1),
            Op::Chown("dir3", 1, 1),
            Op::Chown("dir5", 1, 1),
            Op::Chown("dir5/f1", 1, 1),
        ],
        vec![
            Op::Chown("dir2", 0, 0),
            Op::RemoveAll("dir3"),
            Op::Chown("dir4", 1, 1),
            Op::Chown("dir4/f1", 1, 1),
        ],
        vec![
            Op::Dir("dir3", 0o700),
            Op::Chown("dir3", 1, 1),
            Op::RemoveAll("dir5"),
            Op::Dir("dir5", 0o700),
            Op::Chown("dir5", 1, 1),
        ],
    ]);
}

/// `checkRemoveIntermediateSnapshot`.
#[test]
fn remove_intermediate_snapshot() {
    let Some(s) = suite() else { return };
    s.layer("base", "committed-base", None, &[]);
    s.sn.prepare("intermediate", Some("committed-base"), gc())
        .unwrap();
    s.sn.commit("committed-inter", "intermediate", gc())
        .unwrap();
    s.sn.prepare("toplayer", Some("committed-inter"), gc())
        .unwrap();
    assert_eq!(
        s.sn.remove("committed-inter").unwrap_err().kind(),
        ErrorKind::FailedPrecondition
    );
    s.sn.remove("toplayer").unwrap();
    s.sn.remove("committed-inter").unwrap();
    s.sn.remove("committed-base").unwrap();
}

/// `checkDeletedFilesInChildSnapshot`: whiteouts carry on through a grandchild.
#[test]
fn deleted_files_in_child_snapshot() {
    let Some(s) = suite() else { return };
    s.check_chain(&[
        vec![
            file("foo", "foo\n", 0o777),
            file("foobar", "foobar\n", 0o777),
        ],
        vec![Op::RemoveAll("foobar")],
        vec![],
    ]);
}

/// `checkFileFromLowerLayer`: move a file out of a lower dir with a hardlink.
#[test]
fn move_file_from_lower_layer() {
    let Some(s) = suite() else { return };
    s.check_chain(&[
        vec![
            Op::Dir("dir1", 0o700),
            file("dir1/f1", "Hello", 0o644),
            Op::Dir("dir2", 0o700),
            file("dir2/f2", "...", 0o644),
        ],
        vec![
            Op::Dir("dir3", 0o700),
            file("dir3/f1", "Hello", 0o644),
            Op::RemoveAll("dir1"),
            Op::Link("dir2/f2", "dir3/f2"),
            Op::RemoveAll("dir2/f2"),
        ],
    ]);
}

/// `checkSnapshotterViewReadonly`: a view's mount refuses writes.
#[test]
fn view_is_read_only() {
    let Some(s) = suite() else { return };
    s.layer(
        "preparing",
        "committed",
        None,
        &[file("inside", "x", 0o644)],
    );
    // One parent: a read-only bind. Two: a lowers-only overlay. Both refuse writes.
    s.layer("second", "committed-2", Some("committed"), &[]);
    for (view, parent) in [("view", "committed"), ("view-2", "committed-2")] {
        s.sn.view(view, Some(parent), gc()).unwrap();
        let target = s.scratch("view");
        let guard = s.sn.mount(view, &target).unwrap();
        let err = std::fs::write(target.join("testfile"), "testcontent").unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::ROFS.raw_os_error()),
            "{view}: {err}"
        );
        assert!(std::fs::write(target.join("inside"), "y").is_err());
        guard.unmount().unwrap();
        s.sn.remove(view).unwrap();
    }
}

/// `checkRootPermission`: the root of a fresh snapshot is 0755.
#[test]
fn root_permission() {
    let Some(s) = suite() else { return };
    s.sn.prepare("preparing", None, gc()).unwrap();
    let target = s.scratch("p");
    let _guard = s.sn.mount("preparing", &target).unwrap();
    assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o755);
}

/// `checkRename` as containerd runs it for overlayfs (no directory rename without redirect_dir).
#[test]
fn rename() {
    let Some(s) = suite() else { return };
    s.check_chain(&[
        vec![
            Op::Dir("dir1", 0o700),
            Op::Dir("somefiles", 0o700),
            file("somefiles/f1", "was here first!", 0o644),
            file("somefiles/f2", "nothing interesting", 0o644),
        ],
        vec![
            file("somefiles/f1-overwrite", "new content 1", 0o644),
            Op::Rename("somefiles/f1-overwrite", "somefiles/f1"),
            Op::Rename("somefiles/f2", "somefiles/f3"),
        ],
    ]);
}

/// Chains of `n` layers, each checked (before and after its changes) against a flat copy,
/// then a view of the whole chain.
fn deep_chain(s: &Suite, n: usize) {
    let flat = s.scratch("flat");
    let mut parent: Option<String> = None;
    for i in 0..n {
        let ops: Applier = if i == 0 {
            vec![
                file("bottom", "way at the bottom\n", 0o777),
                file("overwriteme", "FIRST!\n", 0o777),
                Op::Dir("addhere", 0o755),
                Op::Dir("onlyme", 0o755),
                file("onlyme/bottom", "bye!\n", 0o777),
            ]
        } else {
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            vec![
                file("overwriteme", format!("{i} WAS HERE!\n"), 0o777),
                file(leak(format!("addhere/file-{i}")), "same\n", 0o755),
                Op::RemoveAll("onlyme"),
                Op::Dir("onlyme", 0o755),
                file(leak(format!("onlyme/file-{i}")), "only me!\n", 0o777),
            ]
        };
        let key = format!("prepare-layer-{i}");
        s.sn.prepare(&key, parent.as_deref(), gc()).unwrap();
        let target = s.scratch("layer");
        let guard = s.sn.mount(&key, &target).unwrap();
        assert_same_tree(&flat, &target);
        apply(&flat, &ops).unwrap();
        apply(&target, &ops).unwrap();
        assert_same_tree(&flat, &target);
        guard.unmount().unwrap();
        std::fs::remove_dir(&target).unwrap();
        let name = format!("committed-{i}");
        s.sn.commit(&name, &key, gc()).unwrap();
        parent = Some(name);
    }
    s.sn.view("fullview", parent.as_deref(), gc()).unwrap();
    let view = s.scratch("fullview");
    let _guard = s.sn.mount("fullview", &view).unwrap();
    assert_same_tree(&flat, &view);
}

/// `check128LayersMount`.
#[test]
fn layers_128_match_a_flat_copy() {
    let Some(s) = suite() else { return };
    deep_chain(&s, 128);
}

/// 500 layers, the kernel's stacking limit: the view of all 500 mounts and matches, so does a
/// writable child; one more layer needs 501 lowers and is refused with a clear error.
#[test]
fn layers_500_and_the_limit() {
    let Some(s) = suite() else { return };
    let mut parent: Option<String> = None;
    for i in 0..500 {
        // Written straight into each upper: the mounts are what this test is about.
        let key = format!("a{i}");
        s.sn.prepare(&key, parent.as_deref(), gc()).unwrap();
        let upper = s.dir.path().join(format!("root/snapshots/{}/fs", i + 1));
        std::fs::write(upper.join(format!("f{i}")), i.to_string()).unwrap();
        std::fs::write(upper.join("top"), i.to_string()).unwrap();
        let name = format!("c{i}");
        s.sn.commit(&name, &key, gc()).unwrap();
        parent = Some(name);
    }
    s.sn.view("v500", Some("c499"), gc()).unwrap();
    let view = s.scratch("v500");
    let guard = s.sn.mount("v500", &view).unwrap();
    assert_eq!(std::fs::read_to_string(view.join("top")).unwrap(), "499");
    for i in [0, 1, 250, 498, 499] {
        assert_eq!(
            std::fs::read_to_string(view.join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
    assert_eq!(std::fs::read_dir(&view).unwrap().count(), 501);
    drop(guard);
    // 500 lowers plus an upper: still within the limit.
    s.sn.prepare("a500", Some("c499"), gc()).unwrap();
    let target = s.scratch("a500");
    let guard = s.sn.mount("a500", &target).unwrap();
    std::fs::write(target.join("top"), "500").unwrap();
    guard.unmount().unwrap();
    s.sn.commit("c500", "a500", gc()).unwrap();
    s.sn.prepare("a501", Some("c500"), gc()).unwrap();
    let err = s.sn.mount("a501", &s.scratch("a501")).unwrap_err();
    let chain = strata_testkit::assert_chain_once(&err);
    assert!(chain.contains("501 lower dirs"), "{chain}");
}

/// Commit never rebases: the committed snapshot keeps its parent and its very directory (same
/// inode, no copy), and a child sees exactly what was written.
#[test]
fn commit_is_rebase_free() {
    let Some(s) = suite() else { return };
    s.layer("base-a", "base", None, &[file("a", "1", 0o644)]);
    s.sn.prepare("top-a", Some("base"), gc()).unwrap();
    let upper = s.dir.path().join("root/snapshots/2/fs");
    let before = std::fs::metadata(&upper).unwrap().ino();
    let target = s.scratch("top");
    let guard = s.sn.mount("top-a", &target).unwrap();
    std::fs::write(target.join("b"), "2").unwrap();
    guard.unmount().unwrap();
    s.sn.commit("top", "top-a", gc()).unwrap();
    assert_eq!(std::fs::metadata(&upper).unwrap().ino(), before);
    assert_eq!(s.sn.stat("top").unwrap().parent.as_deref(), Some("base"));
    assert_eq!(
        s.sn.mounts("top").unwrap_err().kind(),
        ErrorKind::FailedPrecondition
    );
    let flat = s.scratch("flat");
    // std::fs::write creates 0666 files, and the suite runs with umask 0.
    apply(&flat, &[file("a", "1", 0o644), file("b", "2", 0o666)]).unwrap();
    s.check("top", &flat);
}

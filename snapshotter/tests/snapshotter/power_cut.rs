//! Power cuts after every flush: prepare, commit, view and remove run on a snapshotter whose
//! flushes go to a [`ShadowDisk`] that keeps only the first N of them; the snapshotter rebooted
//! from the shadow must open, its layer store must pass fsck, and every operation acknowledged
//! before the cut must be there, with the directories its mounts are made of.
//!
//! SIGKILL (see `crash.rs`) keeps the page cache, so only this kind of test fails when an fsync
//! goes missing.

use std::path::Path;
use std::sync::Arc;

use strata_layer_store::{FsckOptions, Store, SyncSeam};
use strata_snapshotter::{Kind, Labels, Snapshotter};
use strata_testkit::shadow::ShadowDisk;

strata_testkit::shadow_seam!(Seam, SyncSeam);

/// The operations, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    PrepareA,
    CommitBase,
    PrepareChild,
    View,
    RemoveChild,
}

const OPS: [Op; 5] = [
    Op::PrepareA,
    Op::CommitBase,
    Op::PrepareChild,
    Op::View,
    Op::RemoveChild,
];

/// Runs the operations; the flush count when each returned success (`None`: failed).
fn run(s: &Snapshotter, disk: &ShadowDisk) -> Vec<Option<usize>> {
    OPS.iter()
        .map(|op| {
            let done = match op {
                Op::PrepareA => s.prepare("a", None, Labels::new()).map(drop),
                Op::CommitBase => s.commit("base", "a", Labels::new()),
                Op::PrepareChild => s.prepare("child", Some("base"), Labels::new()).map(drop),
                Op::View => s.view("view", Some("base"), Labels::new()).map(drop),
                Op::RemoveChild => s.remove("child"),
            };
            done.ok().map(|()| disk.count())
        })
        .collect()
}

/// Every directory the mounts of `key` are made of exists.
fn assert_mountable(s: &Snapshotter, key: &str, cut: usize) {
    let specs = s
        .mounts(key)
        .unwrap_or_else(|e| panic!("cut {cut}: mounts of {key}: {e}"));
    let mut dirs = Vec::new();
    for spec in &specs {
        if spec.fs_type == "bind" {
            dirs.push(spec.source.clone());
        }
        for option in &spec.options {
            for prefix in ["lowerdir=", "upperdir=", "workdir="] {
                if let Some(paths) = option.strip_prefix(prefix) {
                    dirs.extend(paths.split(':').map(str::to_owned));
                }
            }
        }
    }
    assert!(!dirs.is_empty(), "cut {cut}: {key}: {specs:?}");
    for dir in dirs {
        assert!(
            Path::new(&dir).is_dir(),
            "cut {cut}: {key}: {dir} is missing"
        );
    }
}

#[test]
fn every_acknowledged_operation_survives_a_power_cut_after_any_flush() {
    // On tmpfs where there is one: the database's own fsyncs are real.
    let tmp = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let start = |dir: &Path, cut: Option<usize>| {
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        // An empty root counts as durable; everything the snapshotter makes must be flushed.
        let disk = Arc::new(ShadowDisk::new(&root, cut));
        let s = Snapshotter::open_with_sync(&root, Arc::new(Seam(disk.clone()))).unwrap();
        (s, disk)
    };
    let total = {
        let (s, disk) = start(&tmp.path().join("count"), None);
        let acked = run(&s, &disk);
        assert!(acked.iter().all(Option::is_some), "{acked:?}");
        disk.count()
    };
    assert!(total > OPS.len(), "only {total} flushes");
    for cut in 0..=total {
        let dir = tmp.path().join(format!("cut-{cut}"));
        let (s, disk) = start(&dir, Some(cut));
        let returned = run(&s, &disk);
        drop(s);
        let acked = |op: Op| {
            let i = OPS.iter().position(|o| *o == op).unwrap();
            returned[i].is_some_and(|count| count <= cut)
        };
        let rebooted = dir.join("rebooted");
        disk.reboot(&rebooted);
        let s = Snapshotter::open(&rebooted).unwrap_or_else(|e| panic!("cut {cut}: open: {e}"));
        let store = Store::open_with_db(&rebooted, s.database()).unwrap();
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "cut {cut}: {:?}", report.problems);

        if acked(Op::PrepareA) && !acked(Op::CommitBase) {
            assert_eq!(s.stat("a").unwrap().kind, Kind::Active, "cut {cut}");
            assert_mountable(&s, "a", cut);
        }
        if acked(Op::CommitBase) {
            assert_eq!(s.stat("base").unwrap().kind, Kind::Committed, "cut {cut}");
            assert!(s.stat("a").is_err(), "cut {cut}: committed key a is back");
        }
        if acked(Op::PrepareChild) && !acked(Op::RemoveChild) {
            assert_eq!(s.stat("child").unwrap().parent.as_deref(), Some("base"));
            assert_mountable(&s, "child", cut);
        }
        if acked(Op::View) {
            assert_eq!(s.stat("view").unwrap().kind, Kind::View, "cut {cut}");
            assert_mountable(&s, "view", cut);
        }
        if acked(Op::RemoveChild) {
            assert!(s.stat("child").is_err(), "cut {cut}: removed child is back");
        }

        // The snapshotter goes on: a new snapshot on whatever survived.
        let parent = acked(Op::CommitBase).then_some("base");
        s.prepare("after", parent, Labels::new())
            .unwrap_or_else(|e| panic!("cut {cut}: prepare after reboot: {e}"));
        assert_mountable(&s, "after", cut);
        drop((store, s));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Power cuts after every flush: prepare, commit (of an extraction snapshot, which deduplicates
//! its files), view and remove (and the deduplicating commit of a container's changes as an
//! image) run on a snapshotter whose flushes go to a
//! [`ShadowDisk`] that keeps only the first N of them; the snapshotter rebooted from the shadow
//! must open, its layer store must pass fsck, and every operation acknowledged before the cut
//! must be there, with the directories its mounts are made of.
//!
//! SIGKILL (see `crash.rs`) keeps the page cache, so only this kind of test fails when an fsync
//! goes missing.

use std::path::Path;
use std::sync::Arc;

use strata_layer_store::digest::Sha256;
use strata_layer_store::{FsckOptions, GcOptions, ImportOptions, Store, SyncSeam};
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

/// The key of the first snapshot: an extraction snapshot, as containerd names them, so that
/// its commit deduplicates its files.
const A: &str = "extract-1 sha256:aa";
/// What is written into `A` before its commit, never flushed (as containerd's applier writes).
const FILES: [(&str, &[u8]); 3] = [
    ("etc/hostname", b"base\n"),
    ("big", &[0x5a; 70_000]),
    ("copy-of-big", &[0x5a; 70_000]),
];

/// Runs the operations; the flush count when each returned success (`None`: failed).
fn run(s: &Snapshotter, disk: &ShadowDisk) -> Vec<Option<usize>> {
    OPS.iter()
        .map(|op| {
            let done = match op {
                Op::PrepareA => s.prepare(A, None, Labels::new()).map(drop),
                Op::CommitBase => {
                    if let Some(dir) = own_dir(s, A) {
                        for (name, bytes) in FILES {
                            let path = dir.join(name);
                            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                            std::fs::write(path, bytes).unwrap();
                        }
                    }
                    s.commit("base", A, Labels::new())
                }
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
                    // `::` sets off data-only lowers.
                    dirs.extend(
                        paths
                            .split(':')
                            .filter(|p| !p.is_empty())
                            .map(str::to_owned),
                    );
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
    let start = |dir: &Path, cut: Option<usize>, failing: bool| {
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        // An empty root counts as durable; everything the snapshotter makes must be flushed.
        let disk = Arc::new(shadow(&root, cut, failing));
        let s = Snapshotter::open_with_sync(
            &root,
            strata_snapshotter::CLI_NAMESPACE,
            Arc::new(Seam(disk.clone())),
        );
        assert!(s.is_ok() || failing, "{:?}", s.err());
        (s.ok(), disk)
    };
    let total = {
        let (s, disk) = start(&tmp.path().join("count"), None, false);
        let s = s.unwrap();
        let acked = run(&s, &disk);
        assert!(acked.iter().all(Option::is_some), "{acked:?}");
        let count = disk.count();
        if strata_layer_store::probe_strategy() == strata_layer_store::Strategy::Stub {
            // The commit deduplicated: base's files are stubs.
            let base = lower_dirs(&s, "view")[0].clone();
            let stub = strata_cow::xattr::get(&base.join("big"), b"trusted.overlay.metacopy");
            assert!(stub.unwrap().is_some(), "base/big is no stub");
        }
        count
    };
    assert!(total > OPS.len(), "only {total} flushes");
    for (cut, failing) in (0..=total).flat_map(|cut| [(cut, false), (cut, true)]) {
        let dir = tmp.path().join(format!("cut-{cut}-{failing}"));
        let (s, disk) = start(&dir, Some(cut), failing);
        // Opening may fail at the cut too.
        let returned = match s {
            Some(s) => run(&s, &disk),
            None => vec![None; OPS.len()],
        };
        let acked = |op: Op| {
            let i = OPS.iter().position(|o| *o == op).unwrap();
            returned[i].is_some_and(|count| count <= cut)
        };
        let rebooted = dir.join("rebooted");
        disk.reboot(&rebooted);
        let s = Snapshotter::open(&rebooted).unwrap_or_else(|e| panic!("cut {cut}: open: {e}"));
        let store = Store::open(&rebooted).unwrap();
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "cut {cut}: {:?}", report.problems);

        if acked(Op::PrepareA) && !acked(Op::CommitBase) {
            assert_eq!(s.stat(A).unwrap().kind, Kind::Active, "cut {cut}");
            assert_mountable(&s, A, cut);
        }
        if acked(Op::CommitBase) {
            assert_eq!(s.stat("base").unwrap().kind, Kind::Committed, "cut {cut}");
            assert!(s.stat(A).is_err(), "cut {cut}: committed key {A} is back");
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
        if acked(Op::CommitBase) {
            // The committed (deduplicated) files are all there; fsck found their objects.
            let base = lower_dirs(&s, "after")[0].clone();
            for (name, _) in FILES {
                assert!(base.join(name).is_file(), "cut {cut}: {name} is gone");
            }
        }
        drop((store, s));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Whether image `name` of `store` is there with every layer exporting to its diff_id.
fn assert_image(store: &Store, name: &str, layers: usize, cut: usize) {
    let image = store
        .image(name)
        .unwrap_or_else(|e| panic!("cut {cut}: image {name}: {e}"));
    assert_eq!(image.layers.len(), layers, "cut {cut}: {name}");
    for diff_id in &image.layers {
        let record = store
            .layer_record(&diff_id.hex())
            .unwrap_or_else(|e| panic!("cut {cut}: layer {diff_id}: {e}"));
        let mut tar = Vec::new();
        store
            .write_layer_tar(&record, &mut tar)
            .unwrap_or_else(|e| panic!("cut {cut}: export of {diff_id}: {e}"));
        assert_eq!(
            Sha256::of(&tar),
            *diff_id,
            "cut {cut}: layer exports other bytes"
        );
    }
}

/// The steps of the deduplicating commit, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Import,
    PrepareOnImage,
    CommitImage,
    Remove,
}

const STEPS: [Step; 4] = [
    Step::Import,
    Step::PrepareOnImage,
    Step::CommitImage,
    Step::Remove,
];

/// The upper dir of active snapshot `key`, from its mounts; `None` if there is no such
/// snapshot (its Prepare failed at the cut).
fn upper(s: &Snapshotter, key: &str) -> Option<std::path::PathBuf> {
    s.mounts(key)
        .ok()?
        .iter()
        .flat_map(|m| m.options.iter())
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(Into::into)
}

/// The directory a parentless active snapshot `key` mounts (bound), if it exists.
fn own_dir(s: &Snapshotter, key: &str) -> Option<std::path::PathBuf> {
    let specs = s.mounts(key).ok()?;
    specs
        .iter()
        .find(|m| m.fs_type == "bind")
        .map(|m| m.source.clone().into())
}

/// The lower dirs of `key`'s overlay mount, topmost first (data-only lowers left out).
fn lower_dirs(s: &Snapshotter, key: &str) -> Vec<std::path::PathBuf> {
    s.mounts(key)
        .unwrap()
        .iter()
        .flat_map(|m| m.options.iter())
        .find_map(|o| o.strip_prefix("lowerdir="))
        .map(|dirs| {
            let regular = dirs.split("::").next().unwrap_or_default();
            regular.split(':').map(Into::into).collect()
        })
        .unwrap_or_default()
}

/// A shadow of `root` that keeps the first `cut` flushes (with `failing`, fails the rest).
fn shadow(root: &Path, cut: Option<usize>, failing: bool) -> ShadowDisk {
    let disk = ShadowDisk::new(root, cut);
    if failing { disk.failing() } else { disk }
}

#[test]
fn the_deduplicating_commit_survives_a_power_cut_after_any_flush() {
    let tmp = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let (empty, base) = (tmp.path().join("empty"), tmp.path().join("base"));
    std::fs::create_dir_all(base.join("etc")).unwrap();
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(base.join("etc/hostname"), "base\n").unwrap();
    std::fs::write(base.join("shared"), vec![7u8; 50_000]).unwrap();
    let oci = tmp.path().join("oci");
    crate::image::write_oci(&oci, "img", &[crate::image::layer(&empty, &base)]);

    let run = |dir: &Path, cut: Option<usize>, failing: bool| {
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let disk = Arc::new(shadow(&root, cut, failing));
        let seam: Arc<dyn SyncSeam> = Arc::new(Seam(disk.clone()));
        let opened =
            Snapshotter::open_with_sync(&root, strata_snapshotter::CLI_NAMESPACE, seam.clone())
                .ok()
                .and_then(|s| Some((s, Store::open_with_sync(&root, seam).ok()?)));
        // Opening may fail at the cut too.
        let Some((s, store)) = opened else {
            assert!(failing, "cannot open");
            return (vec![None; STEPS.len()], disk);
        };
        let returned: Vec<Option<usize>> = STEPS
            .iter()
            .map(|step| {
                let done = match step {
                    Step::Import => {
                        let options = ImportOptions::default().with_name(Some("img".into()));
                        store
                            .import(&oci, &options)
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                    Step::PrepareOnImage => s
                        .prepare_on_image("c", "img", Labels::new())
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Step::CommitImage => {
                        // The container's writes: the same bytes as the image's `shared`
                        // (deduplicated) and a new file.
                        if let Some(upper) = upper(&s, "c") {
                            std::fs::write(upper.join("copy"), vec![7u8; 50_000]).unwrap();
                            std::fs::write(upper.join("new"), "new\n").unwrap();
                        }
                        s.commit_image("c", "img2")
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                    Step::Remove => s.remove("c").map_err(|e| e.to_string()),
                };
                done.ok().map(|()| disk.count())
            })
            .collect();
        (returned, disk)
    };
    let (returned, disk) = run(&tmp.path().join("count"), None, false);
    assert!(returned.iter().all(Option::is_some), "{returned:?}");
    let total = disk.count();
    for (cut, failing) in (0..=total).flat_map(|cut| [(cut, false), (cut, true)]) {
        let dir = tmp.path().join(format!("cut-{cut}-{failing}"));
        let (returned, disk) = run(&dir, Some(cut), failing);
        let acked = |step: Step| {
            let i = STEPS.iter().position(|s| *s == step).unwrap();
            returned[i].is_some_and(|count| count <= cut)
        };
        // Whether a flush of `step` may have reached the disk: the step before it returned
        // before the cut. (A step that has not returned may still have passed its commit
        // point, e.g. a Remove dropping its GC roots after the record.)
        let started = |step: Step| {
            let i = STEPS.iter().position(|s| *s == step).unwrap();
            i == 0 || returned[i - 1].is_some_and(|count| count < cut)
        };
        let rebooted = dir.join("rebooted");
        disk.reboot(&rebooted);
        let s = Snapshotter::open(&rebooted).unwrap_or_else(|e| panic!("cut {cut}: open: {e}"));
        let store = Store::open(&rebooted).unwrap();
        // A GC first: what it keeps of a snapshot's layers, the database said to keep.
        store.gc(GcOptions::default()).unwrap();
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "cut {cut}: {:?}", report.problems);

        if acked(Step::Import) {
            assert_image(&store, "img", 1, cut);
        }
        if acked(Step::PrepareOnImage) && !started(Step::Remove) {
            let stat = s
                .stat("c")
                .unwrap_or_else(|e| panic!("cut {cut} of {total}: {e}"));
            assert_eq!(stat.kind, Kind::Active, "cut {cut}");
            assert_mountable(&s, "c", cut);
        }
        if acked(Step::CommitImage) {
            assert_image(&store, "img2", 2, cut);
        }
        if acked(Step::Remove) {
            assert!(s.stat("c").is_err(), "cut {cut}: removed snapshot is back");
        }
        drop((store, s));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Power cuts after every flush: a sequence of operations runs on a store whose flushes go to a
//! [`ShadowDisk`] that keeps only the first N of them; the store rebooted from the shadow must
//! open, pass fsck, and hold everything an operation acknowledged before the cut.
//!
//! SIGKILL keeps the page cache, so only this kind of test fails when an fsync goes missing.

use std::path::Path;
use std::sync::Arc;

use strata_layer_store::{FsckOptions, GcOptions, Store, Strategy, SyncSeam, probe_strategy};
use strata_testkit::shadow::ShadowDisk;

use crate::fixtures::{Comp, Image, Item, sample_layers, sha256};
use crate::import;

strata_testkit::shadow_seam!(Seam, SyncSeam);

/// The operations, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    ImportA,
    ImportB,
    Materialize,
    /// `dedup_tree` of [`TREE`] (skipped where the machine makes no stubs).
    Dedup,
    RemoveA,
    Gc,
}

const OPS: [Op; 6] = [
    Op::ImportA,
    Op::ImportB,
    Op::Materialize,
    Op::Dedup,
    Op::RemoveA,
    Op::Gc,
];

/// A tree in the root, as a snapshot's would be, never flushed: a file that image a also has,
/// and two of its own.
const TREE: &str = "snapshots/1/fs";
const TREE_FILES: [(&str, &[u8]); 3] = [
    ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    ("big", &[0x33; 100_000]),
    ("small", b"only in the tree\n"),
];
const TREE_OWNER: &str = "snapshotter:1";

fn write_tree(root: &Path) {
    for (name, bytes) in TREE_FILES {
        let path = root.join(TREE).join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// Two images sharing their base layer, their top layers sharing an object with each other.
struct Sources {
    a: Image,
    b: Image,
}

impl Sources {
    fn new(dir: &Path) -> Sources {
        let layers = sample_layers();
        let a = Image::new(&layers, Comp::Gzip);
        let b_top = vec![
            Item::Dir("usr".into(), 0o755),
            Item::File("usr/b".into(), vec![0x7f; 70_000], 0o644),
            Item::File("usr/only-b".into(), b"only in b\n".to_vec(), 0o644),
        ];
        let b = Image::new(&[layers[0].clone(), b_top], Comp::Zstd);
        a.write_oci(&dir.join("a"), "a");
        b.write_oci(&dir.join("b"), "b");
        Sources { a, b }
    }

    fn diff_ids(image: &Image) -> Vec<String> {
        image
            .tars
            .iter()
            .map(|t| sha256(t)[7..].to_owned())
            .collect()
    }
}

/// Runs the operations on `store`; the flush count when each returned success (`None`: failed).
fn run(
    store: &Store,
    sources_dir: &Path,
    sources: &Sources,
    disk: &ShadowDisk,
) -> Vec<Option<usize>> {
    OPS.iter()
        .map(|op| {
            let done = match op {
                Op::ImportA => import(store, &sources_dir.join("a"), "a").map(drop),
                Op::ImportB => import(store, &sources_dir.join("b"), "b").map(drop),
                Op::Materialize => store
                    .materialize(&Sources::diff_ids(&sources.a)[0], Some(Strategy::Hardlink))
                    .map(drop)
                    .map_err(Into::into),
                Op::Dedup if probe_strategy() == Strategy::Stub => store
                    .dedup_tree(&store.root().join(TREE), TREE_OWNER, Some(Strategy::Stub))
                    .map(drop)
                    .map_err(Into::into),
                Op::Dedup => Ok(()),
                Op::RemoveA => store.remove_image("a").map_err(Into::into),
                Op::Gc => store.gc(GcOptions::default()).map(drop).map_err(Into::into),
            };
            done.ok().map(|()| disk.count())
        })
        .collect()
}

/// A store at `dir/store` whose flushes go to a shadow disk that keeps the first `cut` (and
/// with `failing`, fails the rest); `None` if opening it failed at the cut.
fn store_with_cut(
    dir: &Path,
    cut: Option<usize>,
    failing: bool,
) -> (Option<Store>, Arc<ShadowDisk>) {
    let root = dir.join("store");
    // An empty root counts as durable; everything the store makes in it must be flushed.
    std::fs::create_dir_all(&root).unwrap();
    // The snapshot's own directory is durable (the snapshotter's pool makes it so); what
    // containerd's applier writes into it is not flushed.
    std::fs::create_dir_all(root.join(TREE)).unwrap();
    let disk = ShadowDisk::new(&root, cut);
    write_tree(&root);
    let disk = Arc::new(if failing { disk.failing() } else { disk });
    let store = Store::open_with_sync(&root, Arc::new(Seam(disk.clone())));
    assert!(store.is_ok() || failing, "{store:?}");
    (store.ok(), disk)
}

/// Whether every layer of `image` exports bit for bit.
fn assert_layers_export(store: &Store, image: &Image, cut: usize) {
    for (tar, id) in image.tars.iter().zip(Sources::diff_ids(image)) {
        let record = store
            .layer_record(&id)
            .unwrap_or_else(|e| panic!("cut {cut}: layer {id}: {e}"));
        let mut out = Vec::new();
        store
            .write_layer_tar(&record, &mut out)
            .unwrap_or_else(|e| panic!("cut {cut}: export of {id}: {e}"));
        assert!(out == *tar, "cut {cut}: layer {id} exports other bytes");
    }
}

#[test]
fn every_acknowledged_operation_survives_a_power_cut_after_any_flush() {
    // On tmpfs where there is one: the database's own fsyncs are real, and cost seconds on a
    // busy disk over the hundreds of transactions here.
    let tmp = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let sources = Sources::new(tmp.path());
    let total = {
        let dir = tmp.path().join("count");
        let (store, disk) = store_with_cut(&dir, None, false);
        let acked = run(&store.unwrap(), tmp.path(), &sources, &disk);
        assert!(acked.iter().all(Option::is_some), "{acked:?}");
        disk.count()
    };
    assert!(total > OPS.len(), "only {total} flushes");
    // Flushes after the cut pretend to succeed (the operations go on), or fail.
    for (cut, failing) in (0..=total).flat_map(|cut| [(cut, false), (cut, true)]) {
        let dir = tmp.path().join(format!("cut-{cut}-{failing}"));
        let (store, disk) = store_with_cut(&dir, Some(cut), failing);
        let returned = match store {
            Some(store) => run(&store, tmp.path(), &sources, &disk),
            None => vec![None; OPS.len()],
        };
        // Acknowledged before the power went: returned success having seen at most `cut`
        // flushes (so its last flush, if any, reached the disk).
        let acked = |op: Op| {
            let i = OPS.iter().position(|o| *o == op).unwrap();
            returned[i].is_some_and(|count| count <= cut)
        };
        let rebooted = dir.join("rebooted");
        disk.reboot(&rebooted);
        let store = Store::open(&rebooted).unwrap_or_else(|e| panic!("cut {cut}: open: {e}"));
        let report = store
            .fsck(FsckOptions::default())
            .unwrap_or_else(|e| panic!("cut {cut}: fsck: {e}"));
        assert!(report.is_clean(), "cut {cut}: {:?}", report.problems);

        if acked(Op::ImportA) && !acked(Op::RemoveA) {
            let image = store
                .image("a")
                .unwrap_or_else(|e| panic!("cut {cut}: image a: {e}"));
            assert_eq!(
                format!("sha256:{}", image.id()),
                sources.a.manifest_digest()
            );
            assert_layers_export(&store, &sources.a, cut);
        }
        if acked(Op::ImportB) {
            store
                .image("b")
                .unwrap_or_else(|e| panic!("cut {cut}: image b: {e}"));
            assert_layers_export(&store, &sources.b, cut);
        }
        let base = &Sources::diff_ids(&sources.a)[0];
        if acked(Op::Materialize) {
            let meta = store.layer_meta(base).unwrap().expect("base layer");
            assert_eq!(meta.materialized, Some(Strategy::Hardlink), "cut {cut}");
            let passwd = std::fs::read(store.layer_tree(base).join("etc/passwd"))
                .unwrap_or_else(|e| panic!("cut {cut}: materialized tree: {e}"));
            assert_eq!(passwd, b"root:x:0:0::/root:/bin/sh\n", "cut {cut}");
        }
        // Once acknowledged, every name of the tree holds its stub and every object is rooted
        // (and fsck above found each one whole).
        if acked(Op::Dedup) && probe_strategy() == Strategy::Stub {
            for (name, _) in TREE_FILES {
                let path = rebooted.join(TREE).join(name);
                assert!(path.is_file(), "cut {cut}: {name} is gone");
            }
            let roots = store.object_roots().unwrap();
            assert_eq!(roots.len(), TREE_FILES.len(), "cut {cut}: {roots:?}");
        }
        if acked(Op::RemoveA) {
            assert!(
                store.image("a").is_err(),
                "cut {cut}: removed image a is back"
            );
        }
        if acked(Op::Gc) {
            let top_a = &Sources::diff_ids(&sources.a)[1];
            assert!(
                store.layer_meta(top_a).unwrap().is_none(),
                "cut {cut}: collected layer is back"
            );
        }

        // The store goes on: what the cut interrupted can be redone, and a GC cleans up.
        import(&store, &tmp.path().join("a"), "a")
            .unwrap_or_else(|e| panic!("cut {cut}: import after reboot: {e}"));
        import(&store, &tmp.path().join("b"), "b")
            .unwrap_or_else(|e| panic!("cut {cut}: import after reboot: {e}"));
        assert_layers_export(&store, &sources.a, cut);
        assert_layers_export(&store, &sources.b, cut);
        store.gc(GcOptions::default()).unwrap();
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(
            report.is_clean(),
            "cut {cut}: after redo: {:?}",
            report.problems
        );
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

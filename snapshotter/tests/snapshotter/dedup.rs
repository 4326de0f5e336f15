//! Deduplicating commits: an image unpacked as containerd's unpacker does it (each layer applied
//! into an `extract-…` snapshot through its mount, then committed) ends up as stubs over the
//! store's objects, mounts exactly as the layers applied, shares the objects of a second unpack,
//! and keeps its objects exactly as long as its snapshots.

use std::path::Path;

use strata_diff::ApplyOptions;
use strata_layer_store::{FsckOptions, GcOptions};
use strata_snapshotter::Labels;
use strata_testkit::tree;

use crate::conformance::{Suite, suite};
use crate::fstest::assert_same_tree;
use crate::image::{image_layout, mounted};

/// Unpacks `tars` (bottom first) into snapshots named `<prefix>-<n>`, each committed from an
/// extraction snapshot; returns the top one's name.
fn unpack(suite: &Suite, prefix: &str, tars: &[Vec<u8>]) -> String {
    let mut parent: Option<String> = None;
    for (n, tar) in tars.iter().enumerate() {
        let key = format!("extract-{prefix}-{n} sha256:{n}");
        suite
            .sn
            .prepare(&key, parent.as_deref(), Labels::new())
            .unwrap();
        let (target, guard) = mounted(suite, &key);
        strata_diff::apply_layer(&tar[..], &target, &ApplyOptions::default()).unwrap();
        drop(guard);
        let name = format!("{prefix}-{n}");
        suite.sn.commit(&name, &key, Labels::new()).unwrap();
        parent = Some(name);
    }
    parent.unwrap()
}

/// How many of the non-empty regular files under `upper` are stubs, and how many are not.
fn stubs_and_files(upper: &Path) -> (usize, usize) {
    if !upper.is_dir() {
        return (0, 0);
    }
    let metacopy = |name: &[u8]| name == b"trusted.overlay.metacopy";
    let options = tree::Options::default().with_xattrs(tree::Xattrs::Matching(metacopy));
    let files: Vec<tree::Node> = tree::snapshot(upper, &options)
        .into_values()
        .filter(|node| matches!(&node.kind, tree::Kind::File(bytes) if !bytes.is_empty()))
        .collect();
    let stubs = files.iter().filter(|node| !node.xattrs.is_empty()).count();
    (stubs, files.len() - stubs)
}

/// The objects the store holds.
fn object_count(store: &strata_layer_store::Store) -> usize {
    tree::snapshot(store.objects_dir(), &tree::Options::default())
        .values()
        .filter(|node| matches!(node.kind, tree::Kind::File(_)))
        .count()
}

#[test]
fn unpacked_layers_commit_to_stubs_that_mount_as_applied_and_share_objects() {
    let Some(suite) = suite() else { return };
    if strata_layer_store::probe_strategy() != strata_layer_store::Strategy::Stub {
        eprintln!("skipped: this kernel's overlay takes no data-only lowers, so no stubs");
        return;
    }
    let (_, tars) = image_layout(&suite);
    let applied = suite.scratch("applied");
    for tar in &tars {
        strata_diff::apply_layer(&tar[..], &applied, &ApplyOptions::default()).unwrap();
    }
    let store = suite.sn.store();

    let top = unpack(&suite, "a", &tars);
    assert!(!store.object_roots().unwrap().is_empty());
    let objects = object_count(store);
    // One upper per layer holds stubs; hard links stay files (the image has one pair at most).
    let uppers: Vec<(usize, usize)> = std::fs::read_dir(suite.sn.root().join("snapshots"))
        .unwrap()
        .map(|dir| stubs_and_files(&dir.unwrap().path().join("fs")))
        .filter(|(stubs, files)| stubs + files > 0)
        .collect();
    assert_eq!(uppers.len(), tars.len(), "{uppers:?}");
    assert!(
        uppers
            .iter()
            .all(|(stubs, files)| *stubs > 0 && *files <= 2),
        "{uppers:?}"
    );
    suite.sn.view("view-a", Some(&top), Labels::new()).unwrap();
    let (target, guard) = mounted(&suite, "view-a");
    assert_same_tree(&applied, &target);
    drop(guard);

    // The same layers unpacked again (another containerd namespace, say) add no object.
    let top_b = unpack(&suite, "b", &tars);
    assert_eq!(object_count(store), objects);
    suite
        .sn
        .view("view-b", Some(&top_b), Labels::new())
        .unwrap();
    let (target, guard) = mounted(&suite, "view-b");
    assert_same_tree(&applied, &target);
    drop(guard);

    // The objects live as long as a snapshot roots them.
    for key in ["view-a", "a-1", "a-0"] {
        suite.sn.remove(key).unwrap();
    }
    assert_eq!(store.gc(GcOptions::default()).unwrap().objects, 0);
    let (target, guard) = mounted(&suite, "view-b");
    assert_same_tree(&applied, &target);
    drop(guard);
    for key in ["view-b", "b-1", "b-0"] {
        suite.sn.remove(key).unwrap();
    }
    assert!(store.object_roots().unwrap().is_empty());
    assert_eq!(
        store.gc(GcOptions::default()).unwrap().objects as usize,
        objects
    );
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

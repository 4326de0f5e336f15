//! Remote snapshots: a Prepare labelled with the chain ID of a layer the store holds commits
//! that layer's snapshot and answers AlreadyExists, as containerd's unpacker expects; the
//! snapshot is found by containerd's Walk filter and mounts the image without an unpack, and
//! the layer store's GC keeps its layer exactly as long as an image or a snapshot needs it.

use std::fs;

use strata_layer_store::{GcOptions, Store};
use strata_snapshotter::{ErrorKind, Kind, Labels, Snapshotter, TARGET_LABEL};

use crate::conformance::{Suite, suite};
use crate::fstest::assert_same_tree;
use crate::image::{image, mounted};
use crate::labels;

/// What containerd's metadata store asks after an AlreadyExists: the committed snapshots
/// labelled with `chain` whose parent is `parent` (`""`: none).
fn walk(sn: &Snapshotter, chain: &str, parent: &str) -> Vec<String> {
    let filter = format!(r#"labels."containerd.io/snapshot.ref"=={chain},parent=="{parent}""#);
    sn.list(&[filter])
        .unwrap()
        .into_iter()
        .filter(|info| info.kind == Kind::Committed)
        .map(|info| info.name)
        .collect()
}

/// Asks for the extraction snapshot `key` of `chain` on `parent`, as containerd's unpacker
/// does; the store has the chain, so the answer is AlreadyExists and `key` is not made.
/// Returns the snapshot containerd's Walk then finds.
fn adopt(sn: &Snapshotter, key: &str, chain: &str, parent: Option<&str>) -> String {
    let err = sn
        .prepare_remote(key, parent, labels(&[(TARGET_LABEL, chain)]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(sn.stat(key).is_err(), "{key} was made");
    let found = walk(sn, chain, parent.unwrap_or(""));
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// The image's two layers as remote snapshots, bottom then top; returns their names.
fn adopt_image(suite: &Suite, store: &Store) -> (String, String) {
    let chains: Vec<String> = store
        .image("img")
        .unwrap()
        .chain_ids
        .iter()
        .map(ToString::to_string)
        .collect();
    let bottom = adopt(&suite.sn, "extract-1", &chains[0], None);
    let top = adopt(&suite.sn, "extract-2", &chains[1], Some(&bottom));
    // Asked again (another containerd namespace, or a retry): the same snapshot.
    assert_eq!(
        adopt(&suite.sn, "extract-3", &chains[1], Some(&bottom)),
        top
    );
    (bottom, top)
}

fn layer_dirs(store: &Store) -> usize {
    fs::read_dir(store.root().join("layers")).unwrap().count()
}

#[test]
fn layers_in_the_store_become_snapshots_containerd_finds() {
    let Some(suite) = suite() else { return };
    let (store, applied) = image(&suite);
    let sn = &suite.sn;
    let (bottom, top) = adopt_image(&suite, &store);
    assert_eq!(sn.stat(&top).unwrap().parent.as_deref(), Some(&*bottom));

    // A container on the top one sees the image; its writes land in its own upper.
    sn.prepare("c", Some(&top), Labels::new()).unwrap();
    let (target, guard) = mounted(&suite, "c");
    assert_same_tree(&applied, &target);
    fs::write(target.join("bin/tool"), "rewritten").unwrap();
    guard.unmount().unwrap();
    sn.prepare("c2", Some(&top), Labels::new()).unwrap();
    let (target, guard) = mounted(&suite, "c2");
    assert_same_tree(&applied, &target);
    guard.unmount().unwrap();

    // A chain the store lacks: an ordinary Prepare, to unpack into.
    let unknown = format!("sha256:{}", "0".repeat(64));
    sn.prepare_remote("extract-4", Some(&top), labels(&[(TARGET_LABEL, &unknown)]))
        .unwrap();
    assert_eq!(sn.stat("extract-4").unwrap().kind, Kind::Active);
    assert!(walk(sn, &unknown, &top).is_empty());

    // containerd's GC removing the snapshots leaves the store's image whole.
    for key in ["extract-4", "c", "c2", &top, &bottom] {
        sn.remove(key).unwrap();
    }
    assert!(store.gc(GcOptions::default()).unwrap().layers.is_empty());
    sn.prepare_on_image("on-image", "img", Labels::new())
        .unwrap();
    let (target, guard) = mounted(&suite, "on-image");
    assert_same_tree(&applied, &target);
    guard.unmount().unwrap();
    sn.remove("on-image").unwrap();
}

#[test]
fn the_store_gc_keeps_the_layers_of_remote_snapshots() {
    let Some(suite) = suite() else { return };
    let (store, applied) = image(&suite);
    let sn = &suite.sn;
    let chain = store.image("img").unwrap().chain_ids[0].to_string();
    let (bottom, top) = adopt_image(&suite, &store);

    // The image gone from the store, its layers stay while containerd's snapshots need them.
    store.remove_image("img").unwrap();
    let report = store.gc(GcOptions::default()).unwrap();
    assert!(report.layers.is_empty(), "{:?}", report.layers);
    sn.prepare("c", Some(&top), Labels::new()).unwrap();
    let (target, guard) = mounted(&suite, "c");
    assert_same_tree(&applied, &target);
    guard.unmount().unwrap();

    // Without image or snapshot, GC takes them; a remote snapshot is no longer made.
    for key in ["c", &top, &bottom] {
        sn.remove(key).unwrap();
    }
    assert_eq!(store.gc(GcOptions::default()).unwrap().layers.len(), 2);
    assert_eq!(layer_dirs(&store), 0);
    sn.prepare_remote("extract-9", None, labels(&[(TARGET_LABEL, &chain)]))
        .unwrap();
    assert_eq!(sn.stat("extract-9").unwrap().kind, Kind::Active);
}

/// Two Prepares of the same chain at once (two containerd namespaces pulling one image) make one
/// snapshot between them, and leave the GC roots of that one only.
#[test]
fn concurrent_prepares_of_one_chain_make_one_snapshot() {
    let Some(suite) = suite() else { return };
    let (store, _) = image(&suite);
    let sn = &suite.sn;
    let chain = store.image("img").unwrap().chain_ids[0].to_string();
    let errors: Vec<ErrorKind> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let chain = &chain;
                s.spawn(move || {
                    let key = format!("extract-{i}");
                    sn.prepare_remote(&key, None, labels(&[(TARGET_LABEL, chain)]))
                        .unwrap_err()
                        .kind()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(errors, [ErrorKind::AlreadyExists; 4]);
    assert_eq!(walk(sn, &chain, "").len(), 1);
    assert_eq!(
        sn.list::<&str>(&[]).unwrap().len(),
        1,
        "only the remote snapshot"
    );
    let mut owners: Vec<String> = store.gc_roots().unwrap().into_iter().map(|r| r.0).collect();
    owners.dedup();
    assert_eq!(owners.len(), 1, "{owners:?}");
}

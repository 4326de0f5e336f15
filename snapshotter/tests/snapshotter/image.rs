//! Snapshots on layer-store images: `prepare_on_image` mounts the image's materialized layers
//! without copying, writes land in the upper, and the layer store's GC keeps the layers while a
//! snapshot sits on them.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use strata_diff::{ApplyOptions, Compression, DiffOptions, WriteOptions};
use strata_layer_store::digest::Sha256;
use strata_layer_store::{Durability, GcOptions, ImportOptions, Store, Strategy};
use strata_snapshotter::{ErrorKind, Labels};

use crate::conformance::{Suite, suite};
use crate::fstest::{Op, apply, assert_same_tree, file};

/// Writes `blob` under `dir/blobs/sha256/` and returns its OCI descriptor.
fn put_blob(dir: &Path, media_type: &str, blob: &[u8]) -> serde_json::Value {
    let digest = Sha256::of(blob);
    fs::write(dir.join("blobs/sha256").join(digest.hex()), blob).unwrap();
    serde_json::json!({ "mediaType": media_type, "digest": digest.to_string(), "size": blob.len() })
}

/// An OCI layout at `dir` holding image `name` made of the plain layer `tars`, bottom first.
pub fn write_oci(dir: &Path, name: &str, tars: &[Vec<u8>]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let layers: Vec<_> = tars
        .iter()
        .map(|t| put_blob(dir, "application/vnd.oci.image.layer.v1.tar", t))
        .collect();
    let diff_ids: Vec<String> = tars.iter().map(|t| Sha256::of(t).to_string()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = put_blob(
        dir,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": layers,
    });
    let mut manifest = put_blob(
        dir,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    manifest["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [manifest] });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Image `name` has one history entry per layer (its base had none: empty ones stand in for
/// its layers), the last written by the commit, and never `"history": null`.
fn assert_committed_history(store: &Store, name: &str, layers: usize) {
    let config: serde_json::Value =
        serde_json::from_slice(&store.image(name).unwrap().config).unwrap();
    assert_eq!(
        config["history"].as_array().map(Vec::len),
        Some(layers),
        "{config}"
    );
    let history = store.history(name).unwrap();
    assert_eq!(history.len(), layers);
    assert!(history.iter().all(|entry| entry.layer.is_some()));
    let last = history.last().unwrap();
    assert_eq!(last.created_by.as_deref(), Some("strata commit"));
    assert!(last.created.as_deref().is_some_and(|c| c.starts_with("20")));
}

/// The layer turning tree `old` into tree `new`.
pub fn layer(old: &Path, new: &Path) -> Vec<u8> {
    let set = strata_diff::changes(old, new, &DiffOptions::default()).unwrap();
    let mut tar = Vec::new();
    strata_diff::write_layer(&set, &WriteOptions::new(Compression::None), &mut tar).unwrap();
    tar
}

fn base_ops() -> Vec<Op> {
    vec![
        Op::Dir("etc", 0o755),
        file("etc/hostname", "base\n", 0o644),
        Op::Dir("bin", 0o755),
        file("bin/tool", vec![7u8; 70_000], 0o755),
        Op::Dir("gone", 0o755),
        file("gone/x", "x", 0o644),
        Op::Dir("opaque", 0o755),
        file("opaque/old", "old", 0o644),
    ]
}

fn app_ops() -> Vec<Op> {
    vec![
        file("etc/hostname", "app\n", 0o644),
        Op::RemoveAll("gone"),
        Op::RemoveAll("opaque"),
        Op::Dir("opaque", 0o700),
        file("opaque/new", "new", 0o600),
        file("app", "the app\n", 0o755),
    ]
}

/// Every object file's content: what writes through a mount must never change.
fn objects(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for fan in fs::read_dir(root.join("objects")).unwrap() {
        for entry in fs::read_dir(fan.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            out.insert(path.display().to_string(), fs::read(&path).unwrap());
        }
    }
    out
}

/// A two-layer image "img" imported into the store of `suite`; returns the store and the tree
/// applying the layers in order gives.
pub fn image(suite: &Suite) -> (Store, std::path::PathBuf) {
    let (oci, tars) = image_layout(suite);
    let store = import(suite, &oci);
    let applied = suite.scratch("applied");
    for tar in &tars {
        strata_diff::apply_layer(&tar[..], &applied, &ApplyOptions::default()).unwrap();
    }
    (store, applied)
}

/// The two-layer image "img" of [`image`] as an OCI layout, not imported; its layer tars,
/// bottom first.
pub fn image_layout(suite: &Suite) -> (std::path::PathBuf, [Vec<u8>; 2]) {
    let (empty, base, app) = (
        suite.scratch("empty"),
        suite.scratch("base"),
        suite.scratch("app"),
    );
    apply(&base, &base_ops()).unwrap();
    apply(&app, &base_ops()).unwrap();
    apply(&app, &app_ops()).unwrap();
    let tars = [layer(&empty, &base), layer(&base, &app)];
    let oci = suite.dir.path().join("oci");
    write_oci(&oci, "img", &tars);
    (oci, tars)
}

/// Imports the OCI layout `oci` into the store of `suite` as "img".
pub fn import(suite: &Suite, oci: &Path) -> Store {
    let store = Store::open(suite.sn.root())
        .unwrap()
        .with_durability(Durability::None);
    let options = ImportOptions::default().with_name(Some("img".into()));
    store.import(oci, &options).unwrap();
    store
}

fn layer_dirs(store: &Store) -> usize {
    fs::read_dir(store.root().join("layers")).unwrap().count()
}

#[test]
fn rootfs_on_image_layers() {
    let Some(suite) = suite() else { return };
    let (store, applied) = image(&suite);
    let sn = &suite.sn;

    let mounts = sn.prepare_on_image("c1", "img", Labels::new()).unwrap();
    let options = mounts[0].options.join(",");
    let record = store.image("img").unwrap();
    let (top, bottom) = (record.layers[1].hex(), record.layers[0].hex());
    let lowers = format!(
        "lowerdir={}:{}",
        store.layer_tree(&top).display(),
        store.layer_tree(&bottom).display()
    );
    assert!(options.contains(&lowers), "{options}");
    if strata_layer_store::probe_strategy() == Strategy::Stub {
        let data_lower = format!("::{}", store.objects_dir().display());
        assert!(options.contains(&data_lower), "{options}");
    }

    let before = objects(store.root());
    let target = suite.scratch("rootfs");
    let guard = sn.mount("c1", &target).unwrap();
    assert_same_tree(&applied, &target);
    fs::write(target.join("bin/tool"), "rewritten").unwrap();
    fs::write(target.join("written"), "by the container").unwrap();
    guard.unmount().unwrap();
    assert_eq!(before, objects(store.root()), "objects changed");
    assert!(
        sn.usage("c1").unwrap().inodes >= 3,
        "writes land in the upper"
    );

    // Committed, the snapshot still sits on the layers; its child sees everything.
    sn.commit("c1-done", "c1", Labels::new()).unwrap();
    sn.prepare("c2", Some("c1-done"), Labels::new()).unwrap();
    let guard = sn.mount("c2", &target).unwrap();
    assert_eq!(fs::read(target.join("bin/tool")).unwrap(), b"rewritten");
    assert_eq!(fs::read(target.join("app")).unwrap(), b"the app\n");
    assert!(!target.join("gone").exists());
    guard.unmount().unwrap();

    // GC keeps the layers while a snapshot sits on them, even with the image gone.
    store.remove_image("img").unwrap();
    let report = store.gc(GcOptions::default()).unwrap();
    assert!(report.layers.is_empty(), "{:?}", report.layers);
    assert_eq!(layer_dirs(&store), 2);
    sn.remove("c2").unwrap();
    sn.remove("c1-done").unwrap();
    let report = store.gc(GcOptions::default()).unwrap();
    assert_eq!(report.layers.len(), 2);
    assert_eq!(layer_dirs(&store), 0);
}

#[test]
fn unknown_image_is_not_found_and_creates_nothing() {
    let Some(suite) = suite() else { return };
    let err = suite
        .sn
        .prepare_on_image("c", "nope", Labels::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(suite.sn.stat("c").is_err(), "nothing created");
    assert!(suite.sn.store().gc_roots().unwrap().is_empty());
}

/// Mounts `key` at a fresh scratch dir.
pub fn mounted(suite: &Suite, key: &str) -> (std::path::PathBuf, strata_snapshotter::MountGuard) {
    let target = suite.scratch(key);
    let guard = suite.sn.mount(key, &target).unwrap();
    (target, guard)
}

/// Image `name` exports under its own id, every layer blob byte for byte: the blobs Strata
/// compressed on commit are rebuilt, not kept.
fn assert_exports_as_committed(store: &Store, name: &str) {
    let image = store.image(name).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let exported = store.export(name, &dest.path().join("oci")).unwrap();
    assert_eq!(exported.manifest, image.manifest_digest.to_string());
    assert!(exported.layers.iter().all(|l| l.reproduced), "{exported:?}");
    let kept = store.du().unwrap().kept_blob_bytes;
    assert_eq!(kept, 0, "a blob Strata wrote was kept");
}

#[test]
fn container_changes_become_an_image() {
    let Some(suite) = suite() else { return };
    let (store, _) = image(&suite);
    let sn = &suite.sn;
    sn.prepare_on_image("c1", "img", Labels::new()).unwrap();
    let (target, guard) = mounted(&suite, "c1");
    fs::write(target.join("etc/hostname"), "container\n").unwrap();
    fs::remove_file(target.join("app")).unwrap();
    fs::create_dir(target.join("data")).unwrap();
    fs::write(target.join("data/file"), "data").unwrap();
    // Over a megabyte of text: many deflate blocks, past the import's reproduction probe.
    let text: String = (0..40_000)
        .map(|i| format!("line {i} of {}\n", i * 7919 % 10007))
        .collect();
    fs::write(target.join("data/log"), text).unwrap();
    guard.unmount().unwrap();

    let made = sn.commit_image("c1", "img2").unwrap();
    assert!(made.from_upper_dir);
    assert_eq!(store.image("img2").unwrap().layers.len(), 3);
    assert_committed_history(&store, "img2", 3);
    sn.prepare_on_image("c2", "img2", Labels::new()).unwrap();
    let (view1, g1) = mounted(&suite, "c1");
    let (view2, g2) = mounted(&suite, "c2");
    assert_same_tree(&view1, &view2);
    drop((g1, g2));

    // A chown of a lower file is a metadata-only copy-up: the slow path diffs mounted trees.
    let (target, guard) = mounted(&suite, "c2");
    std::os::unix::fs::lchown(target.join("bin/tool"), Some(1000), Some(1000)).unwrap();
    guard.unmount().unwrap();
    let made = sn.commit_image("c2", "img3").unwrap();
    assert!(!made.from_upper_dir, "{made:?}");
    assert_committed_history(&store, "img3", 4);
    sn.prepare_on_image("c3", "img3", Labels::new()).unwrap();
    let (view2, g2) = mounted(&suite, "c2");
    let (view3, g3) = mounted(&suite, "c3");
    assert_same_tree(&view2, &view3);
    drop((g2, g3));
    assert_eq!(made.changes, 1, "{made:?}");
    assert_exports_as_committed(&store, "img3");

    sn.prepare("plain", None, Labels::new()).unwrap();
    let err = sn.commit_image("plain", "x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

/// GC roots whose snapshot is gone (a crash between a Remove's commit and its roots' removal)
/// are dropped when a snapshotter opens the root, but only while nobody holds the store: a
/// Prepare in flight registers its roots under a hold before its record exists.
#[test]
fn open_drops_the_gc_roots_of_snapshots_that_are_gone_unless_the_store_is_held() {
    let Some(suite) = suite() else { return };
    let (store, _) = image(&suite);
    suite
        .sn
        .prepare_on_image("live", "img", Labels::new())
        .unwrap();
    let layer = store.image("img").unwrap().layers[0].hex();
    let owners = |store: &Store| -> Vec<String> {
        let mut owners: Vec<String> = store.gc_roots().unwrap().into_iter().map(|r| r.0).collect();
        owners.dedup();
        owners
    };
    let live = owners(&store);
    assert_eq!(live.len(), 1, "{live:?}");
    store.add_gc_root("snapshotter:gone", &layer).unwrap();
    store.add_gc_root("build-cache:other", &layer).unwrap();
    // Object roots too: those of a deduplicated snapshot that is gone.
    let tree = suite.scratch("gone-tree");
    std::fs::write(tree.join("f"), b"rooted\n").unwrap();
    store.dedup_tree(&tree, "snapshotter:gone", None).unwrap();

    let hold = store.hold().unwrap();
    drop(strata_snapshotter::Snapshotter::open(suite.sn.root()).unwrap());
    assert!(
        owners(&store).contains(&"snapshotter:gone".to_owned()),
        "pruned under a hold"
    );
    assert_eq!(
        store.object_roots().unwrap().len(),
        1,
        "pruned under a hold"
    );
    drop(hold);

    drop(strata_snapshotter::Snapshotter::open(suite.sn.root()).unwrap());
    assert!(store.object_roots().unwrap().is_empty());
    let mut expected = vec!["build-cache:other".to_owned(), live[0].clone()];
    expected.sort();
    assert_eq!(
        owners(&store),
        expected,
        "only the dead snapshot's roots go"
    );
}

//! Export into a parent directory others can write (like `/tmp`), where an attacker planted
//! symlinks and directories first: nothing may be written outside the destination, an `outside/`
//! directory and a victim file stay byte-identical, and the layout is complete at the
//! destination or absent. Also: an image that lists one layer twice exports.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use strata_layer_store::{ExportError, Store, StoreError};
use strata_testkit::tree;

use crate::fixtures::{Comp, Image, Item, sample_layers, sha256};
use crate::import;

const VICTIM: &[u8] = b"root-owned file an export must never touch\n";

/// A store holding image `img`, a shared parent dir, and `outside/` with a victim file.
struct Sandbox {
    _tmp: tempfile::TempDir,
    store: Store,
    image: Image,
    shared: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let tmp = tempfile::tempdir().unwrap();
    let image = Image::new(&sample_layers(), Comp::Zstd);
    let src = tmp.path().join("src");
    image.write_oci(&src, "img");
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, &src, "img").unwrap();
    let (shared, outside) = (tmp.path().join("shared"), tmp.path().join("outside"));
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(outside.join("blobs/sha256")).unwrap();
    fs::write(outside.join("victim"), VICTIM).unwrap();
    Sandbox {
        _tmp: tmp,
        store,
        image,
        shared,
        outside,
    }
}

/// Every entry under `dir`: kind, content or link target, mode and owner.
fn snapshot(dir: &Path) -> tree::Snapshot {
    tree::snapshot(dir, &tree::Options::default())
}

/// The names the old exporter staged in, for `dest` named `name`.
fn old_staging_name(name: &str) -> String {
    format!(".{name}.strata-export.{}", std::process::id())
}

/// A complete layout at `dest`: every blob of the image, byte for byte, and an index.
fn assert_complete(sandbox: &Sandbox, dest: &Path) {
    assert!(!fs::symlink_metadata(dest).unwrap().is_symlink());
    let image = &sandbox.image;
    for blob in image.blobs.iter().chain([&image.config, &image.manifest]) {
        let path = dest.join("blobs/sha256").join(&sha256(blob)[7..]);
        assert!(fs::read(&path).unwrap() == *blob, "{path:?} differs");
    }
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dest.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], image.manifest_digest());
    assert_eq!(
        fs::symlink_metadata(dest).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

fn already_exists(err: &ExportError) -> bool {
    matches!(err, ExportError::Store(e) if matches!(&**e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists))
}

#[test]
fn symlinks_and_dirs_planted_at_the_staging_names_are_never_written_through() {
    let sandbox = sandbox();
    let (shared, outside) = (&sandbox.shared, &sandbox.outside);
    // The old staging name as a symlink to the outside dir...
    symlink(outside, shared.join(old_staging_name("out"))).unwrap();
    // ...and as a planted dir whose index.json and blob dir lead outside.
    let planted = shared.join(old_staging_name("out2"));
    fs::create_dir_all(planted.join("blobs")).unwrap();
    symlink(outside.join("victim"), planted.join("index.json")).unwrap();
    symlink(outside.join("blobs/sha256"), planted.join("blobs/sha256")).unwrap();
    let outside_before = snapshot(outside);
    let shared_before = snapshot(shared);

    for name in ["out", "out2"] {
        let dest = shared.join(name);
        let report = sandbox.store.export("img", &dest).unwrap();
        assert_eq!(report.manifest, sandbox.image.manifest_digest());
        assert_complete(&sandbox, &dest);
    }
    assert_eq!(snapshot(outside), outside_before);
    // What the attacker planted is as it was; the only new entries are the two layouts.
    let mut after = snapshot(shared);
    after.retain(|path, _| !(path.starts_with("out") || path.starts_with("out2")));
    assert_eq!(after, shared_before);
}

#[test]
fn a_symlink_or_a_dir_at_the_destination_is_refused_not_followed() {
    let sandbox = sandbox();
    let (shared, outside) = (&sandbox.shared, &sandbox.outside);
    // The destination a symlink to a dir outside, to the victim file, a planted empty dir, and
    // a planted dir whose index.json is a symlink to the victim.
    symlink(outside, shared.join("to-dir")).unwrap();
    symlink(outside.join("victim"), shared.join("to-file")).unwrap();
    symlink(shared.join("nowhere"), shared.join("dangling")).unwrap();
    fs::create_dir(shared.join("empty")).unwrap();
    fs::create_dir(shared.join("planted")).unwrap();
    symlink(outside.join("victim"), shared.join("planted/index.json")).unwrap();
    let outside_before = snapshot(outside);
    let shared_before = snapshot(shared);

    for name in ["to-dir", "to-file", "dangling", "empty", "planted"] {
        let err = sandbox.store.export("img", &shared.join(name)).unwrap_err();
        assert!(already_exists(&err), "{name}: {err}");
    }
    assert_eq!(snapshot(outside), outside_before);
    // Nothing left behind: no layout, no staging dir.
    assert_eq!(snapshot(shared), shared_before);
    assert!(!shared.join("nowhere").exists());
}

#[test]
fn a_failed_export_leaves_nothing_behind() {
    let sandbox = sandbox();
    let shared = &sandbox.shared;
    // A layer the store cannot rebuild: its objects are gone, and it keeps no blob.
    fs::remove_dir_all(sandbox.store.root().join("blobs")).unwrap();
    let objects = sandbox.store.root().join("objects");
    for (path, node) in snapshot(&objects) {
        if node.kind != tree::Kind::Dir {
            fs::remove_file(objects.join(path)).unwrap();
        }
    }
    assert!(sandbox.store.export("img", &shared.join("out")).is_err());
    assert!(snapshot(shared).is_empty(), "{:?}", snapshot(shared));
}

#[test]
fn an_image_listing_one_layer_many_times_exports() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // Many copies, so that parallel export tasks overlap on any shared temporary name.
    // A few MiB that do not compress to nothing keep each copy's task busy for a while.
    let data: Vec<u8> = (0u32..1 << 22)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let layer = vec![Item::File("big".into(), data, 0o644)];
    let image = Image::new(&vec![layer; 8], Comp::Zstd);
    let src = tmp.path().join("src");
    image.write_oci(&src, "twice");
    let store = Store::open(tmp.path().join("store"))?;
    import(&store, &src, "twice")?;

    let out = tmp.path().join("out");
    // One thread per copy: every copy's task runs at the same time.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(8).build()?;
    let report = pool.install(|| store.export("twice", &out))?;
    assert_eq!(report.manifest, image.manifest_digest());
    assert_eq!(report.layers.len(), 8);
    assert!(
        report
            .layers
            .iter()
            .all(|l| l.digest == report.layers[0].digest)
    );
    assert!(report.layers.iter().all(|l| l.reproduced));
    let blob = fs::read(out.join("blobs/sha256").join(&sha256(&image.blobs[0])[7..]))?;
    assert!(blob == image.blobs[0]);
    // One layer blob, the config and the manifest; no temporary file left.
    assert_eq!(fs::read_dir(out.join("blobs/sha256"))?.count(), 3);
    Ok(())
}

//! Damage is reported, never made worse: a damaged or missing metadata database, damaged
//! records and strays in `objects/` give typed errors or fsck problems, and GC deletes nothing.

use std::fs;
use std::path::Path;

use strata_layer_store::{
    FsckOptions, GcError, GcOptions, ImportError, Problem, Store, StoreError,
};

use crate::fixtures::{Comp, Image, sample_layers};
use crate::{files_under, import};

/// A store at `root` holding image "a" (sample layers); returns its OCI source dir.
fn store_with_image(tmp: &Path) -> (Store, std::path::PathBuf) {
    let store = Store::open(tmp.join("store")).unwrap();
    let image = Image::new(&sample_layers(), Comp::Gzip);
    let src = tmp.join("a");
    image.write_oci(&src, "a");
    import(&store, &src, "a").unwrap();
    (store, src)
}

/// Every file under the store's `objects/` and `layers/`.
fn payload(root: &Path) -> (Vec<String>, Vec<String>) {
    (
        files_under(&root.join("objects")),
        files_under(&root.join("layers")),
    )
}

/// Runs `f` in a write transaction of the database of the store at `root`, from outside the
/// store, as damage would.
fn poke(root: &Path, f: impl FnOnce(&rusqlite::Transaction<'_>)) {
    let mut conn = rusqlite::Connection::open(Store::database_path(root)).unwrap();
    let tx = conn.transaction().unwrap();
    f(&tx);
    tx.commit().unwrap();
}

fn damage_error(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::DatabaseDamaged { .. }
            | StoreError::Gc(GcError::Damaged { .. })
            | StoreError::Record(_)
    )
}

#[test]
fn flipped_bytes_in_the_database_give_typed_errors_and_gc_deletes_nothing() {
    let mut refused = 0;
    for seed in 1..=12u64 {
        let tmp = tempfile::tempdir().unwrap();
        let (store, src) = store_with_image(tmp.path());
        let root = store.root().to_path_buf();
        drop(store);
        let before = payload(&root);
        strata_testkit::flip_bytes(&Store::database_path(&root), seed);
        // Every call returns: a panic would fail the test. Errors name the damage.
        let store = match Store::open(&root) {
            Ok(store) => store,
            Err(e) => {
                // Damage SQLite sees on opening (e.g. in the schema) refuses the whole store.
                assert!(damage_error(&e), "seed {seed}: open: {e:?}");
                assert_eq!(before, payload(&root), "seed {seed}");
                refused += 1;
                continue;
            }
        };
        let check = |what: &str, r: Result<(), StoreError>| {
            if let Err(e) = r {
                assert!(damage_error(&e), "seed {seed}: {what}: {e:?}");
            }
        };
        check("images", store.images().map(|_| ()));
        check("fsck", store.fsck(FsckOptions::default()).map(|_| ()));
        match store.gc(GcOptions::default()) {
            Ok(report) => assert!(report.layers.is_empty() && report.objects == 0),
            Err(e) => {
                assert!(damage_error(&e.into()), "seed {seed}: gc");
                refused += 1;
            }
        }
        check("rmi", store.remove_image("a"));
        check(
            "import",
            import(&store, &src, "a")
                .map(|_| ())
                .map_err(|e| e.downcast::<ImportError>().expect("an import error").into()),
        );
        check(
            "fsck --repair",
            store
                .fsck(FsckOptions::default().with_repair(true))
                .map(|_| ()),
        );
        let after = payload(&root);
        assert_eq!(before.1, after.1, "seed {seed}: a layer dir was deleted");
        assert!(
            before.0.iter().all(|o| after.0.contains(o)),
            "seed {seed}: objects were deleted"
        );
    }
    // Some seeds hit only free pages; the others must have stopped GC.
    assert!(refused >= 3, "GC refused only {refused} damaged databases");
}

#[test]
fn a_missing_database_is_an_error_unless_the_store_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _src) = store_with_image(tmp.path());
    let root = store.root().to_path_buf();
    drop(store);
    let before = payload(&root);
    fs::remove_file(Store::database_path(&root)).unwrap();
    let err = Store::open(&root).expect_err("a store with layers and no database");
    assert!(
        matches!(&err, StoreError::DatabaseMissing { path } if *path == Store::database_path(&root)),
        "{err:?}"
    );
    assert!(
        !Store::database_path(&root).exists(),
        "open made a fresh database"
    );
    assert_eq!(payload(&root), before);

    // An empty store (as a crash before its first import leaves it) opens fresh.
    let empty = tmp.path().join("empty");
    assert!(Store::open(&empty).unwrap().images().unwrap().is_empty());
    fs::remove_file(Store::database_path(&empty)).unwrap();
    let store = Store::open(&empty).unwrap();
    assert!(store.images().unwrap().is_empty());
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

/// Damaged records of each kind: GC refuses and deletes nothing, fsck names the damage.
#[test]
fn gc_refuses_damaged_metadata_and_fsck_names_it() {
    type Damage = fn(&rusqlite::Transaction<'_>, &str, &str);
    let cases: [(&str, Damage); 4] = [
        ("layer row", |tx, layer, _| {
            let n = tx
                .execute("UPDATE layers SET meta = x'00ff' WHERE id = ?1", [layer])
                .unwrap();
            assert_eq!(n, 1);
        }),
        ("image record", |tx, _, image| {
            let n = tx
                .execute("UPDATE images SET record = x'00ff' WHERE id = ?1", [image])
                .unwrap();
            assert_eq!(n, 1);
        }),
        ("layer key", |tx, layer, _| {
            // One flipped character of a key: the row no longer names the image's layer.
            let bent = format!(
                "{}{}",
                if layer.starts_with('0') { "1" } else { "0" },
                &layer[1..]
            );
            let n = tx
                .execute("UPDATE layers SET id = ?1 WHERE id = ?2", [&bent, layer])
                .unwrap();
            assert_eq!(n, 1);
        }),
        ("name", |tx, _, image| {
            // The image record is lost; its name still points at it.
            tx.execute("DELETE FROM images WHERE id = ?1", [image])
                .unwrap();
            let named: i64 = tx
                .query_row(
                    "SELECT count(*) FROM names WHERE image = ?1",
                    [image],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(named > 0);
        }),
    ];
    for (what, damage) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _src) = store_with_image(tmp.path());
        let root = store.root().to_path_buf();
        let image = store.image("a").unwrap();
        let layer = image.layers[0].hex();
        drop(store);
        poke(&root, |txn| damage(txn, &layer, &image.id()));
        let before = payload(&root);
        let store = Store::open(&root).unwrap();
        let err = store.gc(GcOptions::default()).expect_err(what);
        let GcError::Damaged { problems } = &err else {
            panic!("{what}: {err:?}");
        };
        assert!(err.to_string().contains("strata fsck"), "{err}");
        assert_eq!(payload(&root), before, "{what}: GC deleted something");
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(
            problems.iter().all(|p| report.problems.contains(p)),
            "{what}: fsck misses what GC refused for: {problems:?} {:?}",
            report.problems
        );
        let named = report.problems.iter().any(|p| match p {
            Problem::BadLayer { id, .. } => *id == layer,
            Problem::BadImage { id, .. } => *id == image.id(),
            Problem::BadName { image: i, .. } => *i == image.id(),
            _ => false,
        });
        assert!(named, "{what}: {:?}", report.problems);
    }
}

#[test]
fn strays_in_objects_are_reported_and_quarantined_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _src) = store_with_image(tmp.path());
    let objects = store.root().join("objects");
    let fan = files_under(&objects)[0][..2].to_owned();
    fs::create_dir(objects.join(&fan).join("a-directory")).unwrap();
    fs::write(objects.join(&fan).join("not-an-id"), b"x").unwrap();
    fs::write(objects.join("top-level-file"), b"x").unwrap();
    // Not two base64url characters: no fan-out directory.
    fs::create_dir(objects.join("zzz")).unwrap();
    let strays = vec![
        format!("{fan}/a-directory"),
        format!("{fan}/not-an-id"),
        "top-level-file".to_owned(),
        "zzz".to_owned(),
    ];
    let mut expected: Vec<Problem> = strays
        .iter()
        .map(|path| Problem::StrayFile { path: path.clone() })
        .collect();
    expected.sort_by_key(|p| p.to_string());

    let mut report = store.fsck(FsckOptions::default()).unwrap();
    report.problems.sort_by_key(|p| p.to_string());
    assert_eq!(report.problems, expected);
    let gc = store.gc(GcOptions::default()).unwrap();
    assert!(gc.layers.is_empty() && gc.objects == 0, "{gc:?}");

    let repaired = store
        .fsck(FsckOptions::default().with_repair(true))
        .unwrap();
    let mut quarantined = repaired.quarantined.clone();
    quarantined.sort();
    assert_eq!(quarantined, strays);
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
    assert_eq!(
        fs::read_dir(store.root().join("quarantine"))
            .unwrap()
            .count(),
        4
    );
}

/// Flips a byte of the store's largest object; returns its path and its good bytes.
fn corrupt_largest_object(store: &Store) -> (std::path::PathBuf, Vec<u8>) {
    use std::os::unix::fs::PermissionsExt;
    let objects = store.root().join("objects");
    let victim = files_under(&objects)
        .into_iter()
        .map(|f| objects.join(f))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let good = fs::read(&victim).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 1;
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&victim, bad).unwrap();
    (victim, good)
}

/// After `fsck --repair` quarantines a corrupt object, importing the image again puts it
/// back: the store is clean and the layer exports again.
#[test]
fn a_reimport_heals_quarantined_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, src) = store_with_image(tmp.path());
    let (victim, good) = corrupt_largest_object(&store);
    let repaired = store
        .fsck(FsckOptions::default().with_repair(true))
        .unwrap();
    assert_eq!(repaired.quarantined.len(), 1);
    assert!(!victim.exists());
    assert!(!store.fsck(FsckOptions::default()).unwrap().is_clean());

    let report = import(&store, &src, "a").unwrap();
    assert!(report.objects_new >= 1, "{report:?}");
    assert_eq!(fs::read(&victim).unwrap(), good);
    let after = store.fsck(FsckOptions::default()).unwrap();
    assert!(after.is_clean(), "{:?}", after.problems);
    store.export("a", &tmp.path().join("out")).unwrap();
}

/// `fsck --repair` puts a corrupt object back from a checkout of a hardlink-materialized
/// layer holding the same bytes: no re-import needed.
#[test]
fn repair_restores_an_object_from_a_checkout() {
    use strata_layer_store::Strategy;
    let tmp = tempfile::tempdir().unwrap();
    let (store, _src) = store_with_image(tmp.path());
    for layer in store.image("a").unwrap().layers {
        store
            .materialize(&layer.hex(), Some(Strategy::Hardlink))
            .unwrap();
    }
    let (victim, good) = corrupt_largest_object(&store);

    let repaired = store
        .fsck(FsckOptions::default().with_repair(true))
        .unwrap();
    assert_eq!(repaired.quarantined.len(), 1);
    // Quarantined by file name, restored by id.
    let id = strata_layer_store::ObjectId::of(&good).hex();
    assert_eq!(repaired.restored, vec![id]);
    assert_eq!(fs::read(&victim).unwrap(), good);
    let after = store.fsck(FsckOptions::default()).unwrap();
    assert!(after.is_clean(), "{:?}", after.problems);
    assert!(files_under(&store.root().join("tmp")).is_empty());
}

/// A layer's record file that does not decode stops GC, naming the layer, instead of failing
/// the whole store with a bare checksum error.
#[test]
fn a_corrupt_layer_record_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _src) = store_with_image(tmp.path());
    let layer = store.image("a").unwrap().layers[0].hex();
    let manifest = store.layer_dir(&layer).join("manifest");
    let mut bytes = fs::read(&manifest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&manifest, bytes).unwrap();
    let before = payload(store.root());
    let err = store
        .gc(GcOptions::default())
        .expect_err("a live layer's record is damaged");
    let GcError::Damaged { problems } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(&problems[..], [Problem::BadLayer { id, .. }] if *id == layer),
        "{problems:?}"
    );
    assert!(err.to_string().contains(&layer), "{err}");
    assert_eq!(payload(store.root()), before);
    let report = store.fsck(FsckOptions::default()).unwrap();
    assert!(
        report.problems.contains(&problems[0]),
        "{:?}",
        report.problems
    );
}

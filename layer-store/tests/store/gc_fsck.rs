//! GC keeps what images and roots need and removes the rest; fsck finds corruption.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use strata_layer_store::{BlobPolicy, FsckOptions, GcOptions, Problem, Store};

use crate::fixtures::{Comp, Image, Item, sample_layers};
use crate::{files_under, import};

fn two_images(tmp: &std::path::Path) -> (Store, Image, Image) {
    let store = Store::open(tmp.join("store")).unwrap();
    let a = Image::new(&sample_layers(), Comp::Gzip);
    let b = Image::new(
        &[vec![
            Item::File("bin/tool".into(), vec![0x7f; 70_000], 0o755),
            Item::File("only-b".into(), b"b".to_vec(), 0o644),
        ]],
        Comp::Zstd,
    );
    a.write_oci(&tmp.join("a"), "a");
    b.write_oci(&tmp.join("b"), "b");
    import(&store, &tmp.join("a"), "a").unwrap();
    import(&store, &tmp.join("b"), "b").unwrap();
    (store, a, b)
}

#[test]
fn gc_removes_only_what_nothing_needs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (store, a, _b) = two_images(tmp.path());
    let before = files_under(&store.root().join("objects"));

    let dry = store.gc(GcOptions::default().with_dry_run(true))?;
    assert!(dry.layers.is_empty() && dry.objects == 0);

    store.remove_image("b")?;
    let layer_b = store.layers()?.into_iter().map(|(id, _)| id).find(|id| {
        !store
            .image("a")
            .unwrap()
            .layers
            .iter()
            .any(|l| l.hex() == *id)
    });
    let layer_b = layer_b.expect("b's layer");
    // A snapshot still uses b's layer: GC keeps it.
    store.add_gc_root("snapshot-1", &layer_b)?;
    let kept = store.gc(GcOptions::default())?;
    assert!(kept.layers.is_empty() && kept.objects == 0, "{kept:?}");
    store.remove_gc_root("snapshot-1", &layer_b)?;

    let dry = store.gc(GcOptions::default().with_dry_run(true))?;
    assert_eq!(dry.layers, vec![layer_b.clone()]);
    assert_eq!(files_under(&store.root().join("objects")), before);
    let report = store.gc(GcOptions::default())?;
    assert_eq!(report.layers, vec![layer_b]);
    // Only "b" was b's own; bin/tool's content is shared with a.
    assert_eq!(report.objects, 1);
    assert_eq!(
        files_under(&store.root().join("objects")).len(),
        before.len() - 1
    );
    assert!(store.fsck(FsckOptions::default())?.is_clean());
    let out = tmp.path().join("out");
    store.export("a", &out)?;
    assert!(
        fs::read(
            out.join("blobs/sha256")
                .join(&crate::fixtures::sha256(&a.blobs[0])[7..])
        )? == a.blobs[0]
    );
    Ok(())
}

#[test]
fn fsck_finds_a_flipped_byte_and_repair_quarantines_it() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (store, _a, _b) = two_images(tmp.path());
    assert!(store.fsck(FsckOptions::default())?.is_clean());
    let objects = store.root().join("objects");
    let victim = files_under(&objects)
        .into_iter()
        .map(|f| objects.join(f))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = fs::read(&victim)?;
    let object = strata_layer_store::ObjectId::of(&data).hex();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644))?;
    fs::write(&victim, data)?;

    let report = store.fsck(FsckOptions::default())?;
    let id = format!(
        "{}{}",
        victim
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        victim.file_name().unwrap().to_string_lossy()
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::CorruptObject { id: i, .. } if *i == id))
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::MissingObject { object: o, .. } if *o == object))
    );
    // Export refuses to emit a corrupt layer, when it rebuilds it (the kept blob is intact).
    let rebuilding = Store::open(store.root())?.with_blob_policy(BlobPolicy::Reproducible);
    rebuilding.gc(GcOptions::default())?;
    assert!(rebuilding.export("a", &tmp.path().join("bad")).is_err());
    assert!(!tmp.path().join("bad").exists());

    let repaired = store.fsck(FsckOptions::default().with_repair(true))?;
    assert_eq!(repaired.quarantined, vec![id.clone()]);
    assert!(store.root().join("quarantine").join(&id).exists());
    assert!(!victim.exists());
    Ok(())
}

/// Whether the kernel shows someone blocked on an `flock` of the file with inode `ino`.
fn flock_waiter_on(ino: u64) -> bool {
    // Blocked requests are the `->` lines of /proc/locks: "N: -> FLOCK ADVISORY WRITE pid maj:min:ino …".
    fs::read_to_string("/proc/locks").unwrap().lines().any(|l| {
        l.contains("-> FLOCK")
            && l.split_whitespace()
                .any(|f| f.ends_with(&format!(":{ino}")))
    })
}

/// A hold keeps GC out until it drops: GC waits on the store lock meanwhile, then removes what
/// nothing needs.
#[test]
fn gc_waits_while_the_store_is_held() -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tmp = tempfile::tempdir()?;
    let (store, _a, _b) = two_images(tmp.path());
    store.remove_image("b")?;
    let hold = store.hold()?;
    let lock_ino = fs::metadata(store.root().join("lock"))?.ino();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let report = store.gc(GcOptions::default());
            done.store(true, Ordering::SeqCst);
            report
        });
        while !flock_waiter_on(lock_ino) {
            assert!(!gc.is_finished(), "GC ran while the store was held");
            std::thread::yield_now();
        }
        assert!(!done.load(Ordering::SeqCst));
        drop(hold);
        let report = gc.join().unwrap()?;
        assert_eq!(report.layers.len(), 1, "{report:?}");
        anyhow::Ok(())
    })
}

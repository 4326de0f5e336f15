//! Object names: new objects get short names, so that a stub's redirect fits in a 256-byte ext4
//! inode; a store whose objects have the long names of before keeps working as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_cow::overlay::{Overlay, OverlayOptions, RedirectDir};
use strata_layer_store::{FsckOptions, GcOptions, ObjectId, Store, Strategy};
use strata_testkit::{can_mount, peer};

use crate::fixtures::{Comp, Image, Item, Node, apply_model, read_tree, sample_layers};
use crate::{files_under, import};

const METACOPY: &[u8] = b"trusted.overlay.metacopy";
const REDIRECT: &[u8] = b"trusted.overlay.redirect";

/// Renames every object of `store` to its long name, `ab/<62 hex digits>`: the store is then
/// as one written before objects got short names.
pub fn lengthen_names(store: &Store) {
    let objects = store.objects_dir();
    for rel in files_under(objects) {
        let path = objects.join(&rel);
        let hex = ObjectId::of(&fs::read(&path).unwrap()).hex();
        let fan = objects.join(&hex[..2]);
        fs::create_dir_all(&fan).unwrap();
        fs::rename(&path, fan.join(&hex[2..])).unwrap();
    }
}

/// A store in `dir` with the sample image imported as "a", its objects then given their long
/// names; the image's layers and the image.
fn long_named_store(dir: &Path) -> anyhow::Result<(Store, Vec<Vec<Item>>, Image)> {
    let layers = sample_layers();
    let image = Image::new(&layers, Comp::Gzip);
    image.write_oci(&dir.join("a"), "a");
    let store = Store::open(dir.join("store"))?;
    import(&store, &dir.join("a"), "a")?;
    lengthen_names(&store);
    Ok((store, layers, image))
}

/// The ids of the objects `store` holds (by hashing them), and the lengths of their file names.
fn stored(store: &Store) -> (BTreeSet<ObjectId>, BTreeSet<usize>) {
    let objects = store.objects_dir();
    let mut ids = BTreeSet::new();
    let mut lengths = BTreeSet::new();
    for rel in files_under(objects) {
        ids.insert(ObjectId::of(&fs::read(objects.join(&rel)).unwrap()));
        lengths.insert(rel.len() - 3);
    }
    (ids, lengths)
}

/// The objects the layers of image `name` need.
fn needed(store: &Store, name: &str) -> BTreeSet<ObjectId> {
    let mut ids = BTreeSet::new();
    for layer in store.image(name).unwrap().layers {
        let record = store.layer_record(&layer.hex()).unwrap();
        ids.extend(record.objects().map(|(id, _)| id));
    }
    ids
}

/// Every stub of the stub-materialized trees of image `name`, with its redirect, its allocated
/// 512-byte blocks and whether it carries xattrs of its own (besides metacopy and redirect).
fn stubs(store: &Store, name: &str) -> Vec<(PathBuf, Vec<u8>, u64, bool)> {
    let mut out = Vec::new();
    for layer in store.image(name).unwrap().layers {
        let tree = store.layer_tree(&layer.hex());
        for rel in files_under(&tree) {
            let path = tree.join(rel);
            let meta = fs::symlink_metadata(&path).unwrap();
            if !meta.is_file() || meta.len() == 0 {
                continue;
            }
            let names = strata_cow::xattr::list(&path).unwrap();
            let redirect = strata_cow::xattr::get(&path, REDIRECT).unwrap().unwrap();
            let own = names.iter().any(|n| n != METACOPY && n != REDIRECT);
            out.push((path, redirect, meta.blocks(), own));
        }
    }
    out
}

/// Materializes image `name` with stubs and mounts it: what it shows.
fn mounted(store: &Store, name: &str, target: &Path) -> anyhow::Result<BTreeMap<String, Node>> {
    let (guard, tree) = mount_stubs(store, name, target)?;
    drop(guard);
    Ok(tree)
}

/// Materializes image `name` with stubs and mounts it at `target`: the mount and what it shows.
fn mount_stubs(
    store: &Store,
    name: &str,
    target: &Path,
) -> anyhow::Result<(strata_cow::MountGuard, BTreeMap<String, Node>)> {
    let mut overlay = Overlay::new();
    for layer in store.image(name)?.layers.iter().rev() {
        let id = layer.hex();
        store.materialize(&id, Some(Strategy::Stub))?;
        overlay = overlay.lower(store.layer_tree(&id));
    }
    let overlay = overlay.data_lower(store.objects_dir()).options(
        OverlayOptions::default()
            .with_metacopy(Some(true))
            .with_redirect_dir(Some(RedirectDir::On)),
    );
    fs::create_dir_all(target)?;
    let guard = overlay.mount_at(target)?;
    let tree = read_tree(target);
    Ok((guard, tree))
}

/// Image `name` of `store` is `image`: its layers rebuild byte for byte from the objects, a
/// hardlink tree of its first layer holds its files, and (as root) its stub trees mount to
/// what applying its layers gives. Returns the stubs' redirects by file name, as root.
fn serves(
    store: &Store,
    name: &str,
    image: &Image,
    layers: &[Vec<Item>],
    dir: &Path,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let record = store.image(name)?;
    for (layer, tar) in record.layers.iter().zip(&image.tars) {
        let mut rebuilt = Vec::new();
        store.write_layer_tar(&store.layer_record(&layer.hex())?, &mut rebuilt)?;
        assert!(
            rebuilt == *tar,
            "layer {layer} of {name} rebuilds other bytes"
        );
    }
    let first = record.layers[0].hex();
    store.materialize(&first, Some(Strategy::Hardlink))?;
    assert_eq!(
        read_tree(&store.layer_tree(&first)),
        apply_model(&layers[..1])
    );
    let mut redirects = BTreeMap::new();
    if rustix::process::geteuid().is_root() {
        assert_eq!(mounted(store, name, &dir.join(name))?, apply_model(layers));
        for (path, redirect, _, _) in stubs(store, name) {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            redirects.insert(file, redirect.len());
        }
    }
    Ok(redirects)
}

#[test]
fn stubs_fit_in_a_256_byte_ext4_inode() -> anyhow::Result<()> {
    if !can_mount() || !peer("mkfs.ext4", "e2fsprogs") {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let disk = strata_testkit::loopfs::LoopFs::new(
        tmp.path(),
        "ext4",
        64 << 20,
        &["mkfs.ext4", "-q", "-F", "-I", "256"],
    )?;
    let image = Image::new(&sample_layers(), Comp::Gzip);
    image.write_oci(&tmp.path().join("src"), "a");
    let store = Store::open(disk.path().join("store"))?;
    import(&store, &tmp.path().join("src"), "a")?;
    for layer in store.image("a")?.layers {
        store.materialize(&layer.hex(), Some(Strategy::Stub))?;
    }
    // A stub with xattrs of its own may need a block for them; the rest need none.
    let plain: Vec<_> = stubs(&store, "a").into_iter().filter(|s| !s.3).collect();
    assert!(plain.len() >= 5, "{plain:?}");
    for (path, redirect, blocks, _) in &plain {
        assert_eq!(redirect.len(), 24, "{}", path.display());
        assert_eq!(*blocks, 0, "{} spills its xattrs", path.display());
    }

    // The long names of before did not fit: the same stubs took a block each.
    lengthen_names(&store);
    for layer in store.image("a")?.layers {
        store.materialize(&layer.hex(), Some(Strategy::Hardlink))?;
        store.materialize(&layer.hex(), Some(Strategy::Stub))?;
    }
    let long: Vec<_> = stubs(&store, "a").into_iter().filter(|s| !s.3).collect();
    assert_eq!(long.len(), plain.len());
    for (path, redirect, blocks, _) in &long {
        assert_eq!(redirect.len(), 66, "{}", path.display());
        assert!(*blocks > 0, "{}", path.display());
    }
    Ok(())
}

#[test]
fn a_store_of_long_named_objects_keeps_working() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = Store::open(tmp.path().join("store"))?;
    let a_layers = sample_layers();
    let a = Image::new(&a_layers, Comp::Gzip);
    // b shares bin/tool's content with a and has one object of its own.
    let b_layers = vec![vec![
        Item::Dir("bin".into(), 0o755),
        Item::File("bin/tool".into(), vec![0x7f; 70_000], 0o755),
        Item::File("only-b".into(), b"b".to_vec(), 0o644),
    ]];
    let b = Image::new(&b_layers, Comp::Zstd);
    a.write_oci(&tmp.path().join("a"), "a");
    b.write_oci(&tmp.path().join("b"), "b");
    let clean = |store: &Store| {
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    };

    import(&store, &tmp.path().join("a"), "a")?;
    lengthen_names(&store);
    let needed_a = needed(&store, "a");
    assert_eq!(stored(&store), (needed_a.clone(), BTreeSet::from([62])));
    clean(&store);
    let redirects = serves(&store, "a", &a, &a_layers, tmp.path())?;
    assert!(redirects.values().all(|&len| len == 66), "{redirects:?}");

    // A new import finds the shared object under its long name and names only its own short.
    let report = import(&store, &tmp.path().join("b"), "b")?;
    assert_eq!((report.objects_new, report.objects_existing), (1, 1));
    let needed_b = needed(&store, "b");
    let both: BTreeSet<ObjectId> = needed_a.union(&needed_b).copied().collect();
    assert_eq!(stored(&store), (both.clone(), BTreeSet::from([20, 62])));
    clean(&store);
    let redirects = serves(&store, "b", &b, &b_layers, tmp.path())?;
    if rustix::process::geteuid().is_root() {
        let expected = BTreeMap::from([("tool".to_owned(), 66), ("only-b".to_owned(), 24)]);
        assert_eq!(redirects, expected);
    }
    assert!(store.gc(GcOptions::default())?.objects == 0);
    assert_eq!(stored(&store).0, both);

    // GC removes a dead object under a short name...
    store.remove_image("b")?;
    assert_eq!(store.gc(GcOptions::default())?.objects, 1);
    assert_eq!(stored(&store), (needed_a.clone(), BTreeSet::from([62])));
    clean(&store);
    // ... and under long names, keeping the one still needed.
    import(&store, &tmp.path().join("b"), "b")?;
    store.remove_image("a")?;
    let gone = needed_a.difference(&needed_b).count() as u64;
    assert_eq!(store.gc(GcOptions::default())?.objects, gone);
    assert_eq!(stored(&store), (needed_b, BTreeSet::from([20, 62])));
    clean(&store);
    serves(&store, "b", &b, &b_layers, tmp.path())?;
    Ok(())
}

#[test]
fn repair_gives_long_named_objects_short_names_and_rewrites_their_stubs() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let (store, layers, image) = long_named_store(tmp.path())?;
    let needed = needed(&store, "a");
    let repair = FsckOptions::default().with_repair(true);

    // While a mount uses objects/, a stub it looked up may still need the long name: both stay.
    let target = tmp.path().join("mnt");
    assert_eq!(mounted(&store, "a", &target)?, apply_model(&layers));
    let (guard, _) = mount_stubs(&store, "a", &target)?;
    let report = store.fsck(repair)?;
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.shortened.is_empty());
    assert_eq!(report.long_names_kept, needed.len() as u64);
    assert_eq!(stored(&store), (needed.clone(), BTreeSet::from([20, 62])));
    assert!(stubs(&store, "a").iter().all(|s| s.1.len() == 24));
    assert_eq!(read_tree(&target), apply_model(&layers));
    // Two names of one object: GC keeps both, fsck finds both good.
    assert_eq!(store.gc(GcOptions::default())?.objects, 0);
    assert!(store.fsck(FsckOptions::default())?.is_clean());
    drop(guard);

    // With nothing mounted, the long names go.
    let report = store.fsck(repair)?;
    assert!(report.is_clean(), "{:?}", report.problems);
    let ids: BTreeSet<ObjectId> = report
        .shortened
        .iter()
        .map(|h| h.parse().unwrap())
        .collect();
    assert_eq!((ids, report.long_names_kept), (needed.clone(), 0));
    assert_eq!(stored(&store), (needed, BTreeSet::from([20])));
    assert_eq!(mounted(&store, "a", &target)?, apply_model(&layers));
    assert!(store.fsck(repair)?.shortened.is_empty());
    for (layer, tar) in store.image("a")?.layers.iter().zip(&image.tars) {
        let mut rebuilt = Vec::new();
        store.write_layer_tar(&store.layer_record(&layer.hex())?, &mut rebuilt)?;
        assert!(rebuilt == *tar);
    }
    Ok(())
}

/// A long-named object that was quarantined comes back under its short name; the next repair
/// points the stubs that named the long name at it.
#[test]
fn repair_points_stubs_at_an_object_put_back_under_its_short_name() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !can_mount() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let (store, layers, _) = long_named_store(tmp.path())?;
    let target = tmp.path().join("mnt");
    assert_eq!(mounted(&store, "a", &target)?, apply_model(&layers));
    // etc/caps, which the mounted image shows.
    let caps = store.objects_dir().join({
        let hex = ObjectId::of(b"cap").hex();
        format!("{}/{}", &hex[..2], &hex[2..])
    });
    fs::set_permissions(&caps, fs::Permissions::from_mode(0o644))?;
    fs::write(&caps, b"cat")?;

    let repair = FsckOptions::default().with_repair(true);
    let report = store.fsck(repair)?;
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert_eq!(report.shortened.len(), needed(&store, "a").len() - 1);
    let report = import(&store, &tmp.path().join("a"), "a")?;
    assert_eq!(report.objects_new, 1);
    assert!(stubs(&store, "a").iter().any(|s| s.1.len() == 66));
    assert!(store.fsck(repair)?.is_clean());
    assert!(stubs(&store, "a").iter().all(|s| s.1.len() == 24));
    assert_eq!(mounted(&store, "a", &target)?, apply_model(&layers));
    Ok(())
}

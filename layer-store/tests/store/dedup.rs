//! Deduplicating a tree in place (`Store::dedup_tree`): mounted with the objects as its
//! data-only lower, the tree shows exactly the files, metadata and directory times it held; its
//! objects are shared with the store's layers and kept by GC while their owner roots them.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_cow::overlay::{Overlay, OverlayOptions, RedirectDir};
use strata_diff::ApplyOptions;
use strata_layer_store::{FsckOptions, GcOptions, Store, Strategy, probe_strategy};
use strata_testkit::tree;

use crate::fixtures::{Comp, Image, read_meta, read_tree, sample_layers};
use crate::import;
use crate::materialize::can_mount;

/// Whether this machine makes stubs (root, overlay with data-only lowers); says so when not.
fn stubs() -> bool {
    if !can_mount() {
        return false;
    }
    let stub = probe_strategy() == Strategy::Stub;
    if !stub {
        eprintln!("skipped: this kernel's overlay takes no data-only lowers");
    }
    stub
}

/// The modification times of the directories under `root`.
fn dir_times(root: &Path) -> BTreeMap<std::path::PathBuf, Option<(i64, i64)>> {
    let options = tree::Options::default().with_mtime(tree::Mtime::Nanos);
    tree::snapshot(root, &options)
        .into_iter()
        .filter(|(_, node)| node.kind == tree::Kind::Dir)
        .map(|(path, node)| (path, node.mtime))
        .collect()
}

/// Mounts `tree` over the store's objects and returns what the mount shows.
fn mounted(
    store: &Store,
    tree: &Path,
    at: &Path,
) -> (
    BTreeMap<String, crate::fixtures::Node>,
    BTreeMap<String, crate::fixtures::Meta>,
) {
    std::fs::create_dir_all(at).unwrap();
    let guard = Overlay::new()
        .lower(tree)
        .data_lower(store.objects_dir())
        .options(
            OverlayOptions::default()
                .with_metacopy(Some(true))
                .with_redirect_dir(Some(RedirectDir::On)),
        )
        .mount_at(at)
        .unwrap();
    let view = (read_tree(at), read_meta(at));
    drop(guard);
    view
}

#[test]
fn a_deduplicated_tree_mounts_to_the_files_it_held_and_its_objects_live_while_rooted() {
    if !stubs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layers = sample_layers();
    // The store holds the first layer; the tree is that layer applied, plus files of its own.
    Image::new(&layers[..1], Comp::Gzip).write_oci(&tmp.path().join("src"), "x");
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, &tmp.path().join("src"), "x").unwrap();
    let tree = store.root().join("snapshots-like/fs");
    std::fs::create_dir_all(&tree).unwrap();
    let tar = &Image::new(&layers[..1], Comp::Plain).tars[0];
    strata_diff::apply_layer(&tar[..], &tree, &ApplyOptions::default()).unwrap();
    std::fs::create_dir(tree.join("own")).unwrap();
    std::fs::write(tree.join("own/unique"), vec![0x42; 300_000]).unwrap();
    std::fs::write(tree.join("own/same-as-unique"), vec![0x42; 300_000]).unwrap();
    std::fs::write(tree.join("own/empty"), b"").unwrap();
    std::fs::set_permissions(
        tree.join("own/unique"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    let (want_tree, want_meta, want_times) = (read_tree(&tree), read_meta(&tree), dir_times(&tree));
    let objects_before = crate::files_under(store.objects_dir()).len();

    let report = store
        .dedup_tree(&tree, "test-owner", Some(Strategy::Stub))
        .unwrap();

    // bin/tool and its hard link bin/tool2 stay; the empty file is no candidate.
    assert_eq!(report.skipped, 2, "{report:?}");
    // etc/hostname, etc/passwd, etc/caps, the long name, var/cache/{a,b}, and the two of own/.
    assert_eq!(report.files, 8, "{report:?}");
    // Of them only own/unique's bytes were new; its twin and the layer's files were shared.
    assert_eq!(report.new_objects, 1, "{report:?}");
    assert_eq!(
        crate::files_under(store.objects_dir()).len(),
        objects_before + 1
    );
    assert!(report.shared_bytes >= 300_000, "{report:?}");
    let unique = std::fs::symlink_metadata(tree.join("own/unique")).unwrap();
    assert_eq!(unique.mode() & 0o7777, 0o4755, "a stub keeps setuid");
    assert!(
        strata_cow::xattr::get(&tree.join("own/unique"), b"trusted.overlay.metacopy")
            .unwrap()
            .is_some(),
        "own/unique is a stub"
    );
    assert_eq!(dir_times(&tree), want_times, "directories keep their times");
    let (got_tree, got_meta) = mounted(&store, &tree, &tmp.path().join("mnt"));
    assert_eq!(got_tree, want_tree);
    assert_eq!(got_meta, want_meta);

    // Again: nothing left to do.
    let again = store
        .dedup_tree(&tree, "test-owner", Some(Strategy::Stub))
        .unwrap();
    assert_eq!((again.files, again.new_objects), (0, 0), "{again:?}");

    // Rooted, the objects outlive the image that brought most of them.
    store.remove_image("x").unwrap();
    let collected = store.gc(GcOptions::default()).unwrap();
    assert_eq!(
        collected.objects, 2,
        "bin/tool and the empty file: {collected:?}"
    );
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
    assert_eq!(mounted(&store, &tree, &tmp.path().join("mnt")).0, want_tree);

    // Unrooted, they go.
    store.remove_gc_roots_of("test-owner").unwrap();
    let collected = store.gc(GcOptions::default()).unwrap();
    assert_eq!(collected.objects, 7, "{collected:?}");
    assert!(store.object_roots().unwrap().is_empty());
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn fsck_names_a_rooted_object_that_is_missing() {
    if !stubs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), b"rooted bytes\n").unwrap();
    store
        .dedup_tree(&tree, "owner-1", Some(Strategy::Stub))
        .unwrap();
    let (owner, object) = store.object_roots().unwrap().remove(0);
    assert_eq!(owner, "owner-1");
    for file in crate::files_under(store.objects_dir()) {
        std::fs::remove_file(store.objects_dir().join(file)).unwrap();
    }
    let problems = store.fsck(FsckOptions::default()).unwrap().problems;
    assert_eq!(
        problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!("owner-1 needs missing or corrupt object {object}")]
    );
}

/// A tree deduplicated over objects that still have the long names of an older store names
/// them by their short names: a repair that drops the long names leaves it whole.
#[test]
fn a_tree_deduplicated_over_long_named_objects_outlives_their_renaming() {
    if !stubs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    Image::new(&sample_layers()[..1], Comp::Gzip).write_oci(&tmp.path().join("src"), "x");
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, &tmp.path().join("src"), "x").unwrap();
    crate::object_names::lengthen_names(&store);
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    // etc/passwd of the image.
    std::fs::write(tree.join("passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    let want = read_tree(&tree);

    let report = store
        .dedup_tree(&tree, "owner", Some(Strategy::Stub))
        .unwrap();
    assert_eq!((report.files, report.new_objects), (1, 0), "{report:?}");
    let redirect = strata_cow::xattr::get(&tree.join("passwd"), b"trusted.overlay.redirect")
        .unwrap()
        .unwrap();
    assert_eq!(redirect.len(), 24, "{}", String::from_utf8_lossy(&redirect));

    let repaired = store
        .fsck(FsckOptions::default().with_repair(true))
        .unwrap();
    assert!(repaired.is_clean(), "{:?}", repaired.problems);
    assert!(
        crate::files_under(store.objects_dir())
            .iter()
            .all(|name| name.len() == 23),
        "long names are gone"
    );
    assert_eq!(mounted(&store, &tree, &tmp.path().join("mnt")).0, want);
}

/// Without stubs (rootless), each file becomes the checkout of its bytes and metadata, or a
/// hard link to the one the store has: equal files with equal metadata share one inode, and a
/// checkout lives exactly as long as a tree links it.
#[test]
fn hardlinked_trees_share_checkouts_while_they_link_them() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let make = |name: &str| {
        let tree = tmp.path().join(name);
        std::fs::create_dir(&tree).unwrap();
        for (file, bytes, mode) in [
            ("same", &b"shared bytes\n"[..], 0o644),
            ("same-bytes-other-mode", &b"shared bytes\n"[..], 0o600),
            ("own", name.as_bytes(), 0o644),
        ] {
            let path = tree.join(file);
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        tree
    };
    let (a, b) = (make("a"), make("b"));
    let want = (read_tree(&a), read_meta(&a));

    let first = store
        .dedup_tree(&a, "unused", Some(Strategy::Hardlink))
        .unwrap();
    assert_eq!((first.files, first.new_objects), (3, 3), "{first:?}");
    let second = store
        .dedup_tree(&b, "unused", Some(Strategy::Hardlink))
        .unwrap();
    assert_eq!((second.files, second.new_objects), (3, 1), "{second:?}");
    assert_eq!(second.shared_bytes, 2 * 13, "{second:?}");
    let ino = |path: &Path| std::fs::metadata(path).unwrap().ino();
    assert_eq!(ino(&a.join("same")), ino(&b.join("same")));
    assert_ne!(ino(&a.join("same")), ino(&a.join("same-bytes-other-mode")));
    assert_eq!((read_tree(&a), read_meta(&a)), want);
    assert!(store.object_roots().unwrap().is_empty());

    assert_eq!(store.gc(GcOptions::default()).unwrap().checkouts, 0);
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
    assert_eq!(store.gc(GcOptions::default()).unwrap().checkouts, 4);
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

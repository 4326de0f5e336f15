//! A stack of materialized layers mounts to exactly what applying the layers in order gives,
//! for every strategy, and materialization copies no file data where it need not.

use std::os::unix::fs::MetadataExt;

use strata_cow::overlay::{Overlay, OverlayOptions, RedirectDir};
use strata_layer_store::{ImportOptions, Store, Strategy};

use strata_diff::ApplyOptions;

use std::collections::BTreeMap;

use crate::fixtures::{Comp, Image, Item, Meta, apply_model, read_meta, read_tree, sample_layers};
use crate::import;

pub use strata_testkit::can_mount;

/// When the layers are materialized.
#[derive(Debug, Clone, Copy)]
enum When {
    /// By `materialize`, after the import.
    AfterImport,
    /// By `import_materialized` (stubs are built while the layers stream).
    WithImport,
}

fn stack_equals_applied_layers(strategy: Strategy, when: When) -> anyhow::Result<()> {
    let mounted_meta = stack_matches(&sample_layers(), strategy, when)?;
    assert_eq!(mounted_meta["bin/tool"].0, 1000);
    Ok(())
}

/// Mounts the stack of `layers` materialized by `strategy`, compares it with the model and with
/// the diff crate's applier, and returns the mounted metadata.
fn stack_matches(
    layers: &[Vec<Item>],
    strategy: Strategy,
    when: When,
) -> anyhow::Result<BTreeMap<String, Meta>> {
    let tmp = tempfile::tempdir()?;
    let layers = layers.to_vec();
    let image = Image::new(&layers, Comp::Zstd);
    image.write_oci(&tmp.path().join("src"), "img");
    let store = Store::open(tmp.path().join("store"))?;
    match when {
        When::AfterImport => {
            import(&store, &tmp.path().join("src"), "img")?;
        }
        When::WithImport => {
            let options = ImportOptions::default().with_name(Some("img".into()));
            store.import_materialized(&tmp.path().join("src"), &options, Some(strategy))?;
            assert!(
                std::fs::read_dir(store.staging_dir()?)?.next().is_none(),
                "staging left behind"
            );
        }
    }
    let record = store.image("img")?;
    let mut overlay = Overlay::new();
    for layer in record.layers.iter().rev() {
        let id = layer.hex();
        if let When::WithImport = when {
            assert_eq!(store.layer_meta(&id)?.unwrap().materialized, Some(strategy));
        }
        assert_eq!(store.materialize(&id, Some(strategy))?, strategy);
        overlay = overlay.lower(store.layer_tree(&id));
    }
    if strategy == Strategy::Stub {
        // The kernel follows a lower's metacopy only with metacopy=on (which wants redirect_dir=on).
        overlay = overlay.data_lower(store.objects_dir()).options(
            OverlayOptions::default()
                .with_metacopy(Some(true))
                .with_redirect_dir(Some(RedirectDir::On)),
        );
    }
    let target = tmp.path().join("mnt");
    std::fs::create_dir(&target)?;
    let guard = overlay.mount_at(&target)?;
    let mounted = read_tree(&target);
    let mounted_meta = read_meta(&target);
    drop(guard);
    assert_eq!(mounted, apply_model(&layers), "{strategy:?}");

    // The diff crate's applier, layer after layer, gives the same tree, owners, times, xattrs.
    let applied = tmp.path().join("applied");
    std::fs::create_dir(&applied)?;
    for tar in &image.tars {
        strata_diff::apply_layer(&tar[..], &applied, &ApplyOptions::default())?;
    }
    assert_eq!(mounted, read_tree(&applied), "{strategy:?}");
    assert_eq!(mounted_meta, read_meta(&applied), "{strategy:?}");
    Ok(mounted_meta)
}

#[test]
fn entries_a_layer_replaces_or_whites_out_itself_mount_as_applied() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    let big = |b: u8| vec![b; 3000];
    let layer = vec![
        // A directory of stubs, then a file in its place.
        Item::Dir("a".into(), 0o755),
        Item::File("a/x".into(), big(1), 0o644),
        Item::File("a/y".into(), big(2), 0o644),
        Item::File("a".into(), big(3), 0o644),
        // A stub, then a directory in its place, with a child.
        Item::File("b".into(), big(4), 0o644),
        Item::Dir("b".into(), 0o755),
        Item::File("b/z".into(), big(5), 0o644),
        // A stub, then a whiteout of that name: it hides lower layers only.
        Item::File("c".into(), big(6), 0o644),
        Item::Whiteout("c".into()),
        // A hard link to a stub.
        Item::File("d".into(), big(7), 0o644),
        Item::Hardlink("e".into(), "d".into()),
    ];
    // What the whiteout hides.
    let lower = vec![Item::File("c".into(), big(10), 0o644)];
    for when in [When::AfterImport, When::WithImport] {
        let mounted = stack_matches(&[lower.clone(), layer.clone()], Strategy::Stub, when)?;
        assert!(mounted.contains_key("c"));
    }
    Ok(())
}

#[test]
fn stub_stack_mounts_to_the_applied_layers() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    stack_equals_applied_layers(Strategy::Stub, When::AfterImport)
}

#[test]
fn stubs_built_during_import_mount_to_the_applied_layers() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    stack_equals_applied_layers(Strategy::Stub, When::WithImport)
}

#[test]
fn hardlink_stack_mounts_to_the_applied_layers() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    stack_equals_applied_layers(Strategy::Hardlink, When::AfterImport)
}

#[test]
fn hardlinks_after_import_materialized_mount_to_the_applied_layers() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    stack_equals_applied_layers(Strategy::Hardlink, When::WithImport)
}

#[test]
fn copy_stack_mounts_to_the_applied_layers() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    stack_equals_applied_layers(Strategy::Copy, When::AfterImport)
}

#[test]
fn stubs_and_hardlinks_copy_no_file_data() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let image = Image::new(&sample_layers(), Comp::Plain);
    image.write_oci(&tmp.path().join("src"), "img");
    let store = Store::open(tmp.path().join("store"))?;
    let report = import(&store, &tmp.path().join("src"), "img")?;
    let base = &report.layers[0].id;
    store.materialize(base, Some(Strategy::Stub))?;
    let stub = std::fs::symlink_metadata(store.layer_tree(base).join("bin/tool"))?;
    // No data blocks; at most one block for the xattrs that do not fit in the inode.
    assert_eq!(stub.len(), 70_000);
    assert!(
        stub.blocks() <= 8,
        "a stub is sparse: {} blocks",
        stub.blocks()
    );
    // Switching strategy replaces the tree; identical metadata shares one checkout inode.
    store.materialize(base, Some(Strategy::Hardlink))?;
    let tool = std::fs::symlink_metadata(store.layer_tree(base).join("bin/tool"))?;
    let tool2 = std::fs::symlink_metadata(store.layer_tree(base).join("bin/tool2"))?;
    assert_eq!(tool.ino(), tool2.ino());
    assert!(
        tool.nlink() >= 3,
        "tree links plus the checkout: {}",
        tool.nlink()
    );
    assert_eq!(
        store.layer_meta(base)?.unwrap().materialized,
        Some(Strategy::Hardlink)
    );
    Ok(())
}

#[test]
fn import_materialized_materializes_layers_the_store_already_had() -> anyhow::Result<()> {
    if !can_mount() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let image = Image::new(&sample_layers(), Comp::Gzip);
    image.write_oci(&tmp.path().join("src"), "img");
    let store = Store::open(tmp.path().join("store"))?;
    let first = import(&store, &tmp.path().join("src"), "img")?;
    let again = store.import_materialized(
        &tmp.path().join("src"),
        &Default::default(),
        Some(Strategy::Stub),
    )?;
    assert!(again.layers.iter().all(|l| !l.imported));
    for layer in &first.layers {
        assert_eq!(
            store.layer_meta(&layer.id)?.unwrap().materialized,
            Some(Strategy::Stub)
        );
        assert!(store.layer_tree(&layer.id).is_dir());
    }
    let base = store.layer_tree(&first.layers[0].id).join("bin/tool");
    assert_eq!(std::fs::symlink_metadata(base)?.len(), 70_000);
    Ok(())
}

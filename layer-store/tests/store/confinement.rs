//! The contract of the `import` fuzz target, shared with the test that replays its corpus:
//! arbitrary bytes as a layer tar are imported and materialized (copies, so no root is needed)
//! into a store beside an `outside` directory. Errors are fine; panics and any change to
//! `outside` are bugs.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_layer_store::{ImportOptions, Store, Strategy};

/// Name, size, link count and bytes of everything directly in `dir`.
pub fn listing(dir: &Path) -> Vec<(String, u64, u64, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            let data = if meta.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.nlink(),
                data,
            )
        })
        .collect();
    out.sort();
    out
}

/// Imports and materializes `layer`, then checks that nothing outside the store moved.
pub fn import_confined(layer: &[u8]) {
    let sandbox = tempfile::tempdir().unwrap();
    let outside = sandbox.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "secret").unwrap();
    let before = listing(&outside);
    let source = sandbox.path().join("layer.tar");
    fs::write(&source, layer).unwrap();
    let store = Store::open(sandbox.path().join("store")).unwrap();
    let _ = store.import_materialized(&source, &ImportOptions::default(), Some(Strategy::Copy));
    assert_eq!(
        listing(&outside),
        before,
        "the layer changed a file outside the store"
    );
    let mut top: Vec<_> = listing(sandbox.path())
        .into_iter()
        .map(|(name, ..)| name)
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["layer.tar", "outside", "store"],
        "the layer wrote beside the store"
    );
}

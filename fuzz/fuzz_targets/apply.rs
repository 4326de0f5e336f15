//! Arbitrary bytes as a layer, applied inside a temporary root.
//!
//! Contract: errors are fine; panics and escapes are bugs. The root sits next to an `outside`
//! directory holding a secret; after the apply, `outside` must be untouched and nothing new may
//! appear beside the root.
#![no_main]

// Shared with the import target: its `listing` of a directory.
#[allow(dead_code)]
#[path = "../../layer-store/tests/store/confinement.rs"]
mod confinement;

use std::fs;

use confinement::listing;
use libfuzzer_sys::fuzz_target;
use strata_diff::ApplyOptions;

fuzz_target!(|data: &[u8]| {
    let sandbox = tempfile::tempdir().unwrap();
    let (root, outside) = (sandbox.path().join("root"), sandbox.path().join("outside"));
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "secret").unwrap();
    let before = listing(&outside);
    let _ = strata_diff::apply_layer(data, &root, &ApplyOptions::default());
    assert_eq!(
        listing(&outside),
        before,
        "the layer changed a file outside the root"
    );
    let top: Vec<_> = listing(sandbox.path())
        .into_iter()
        .map(|(name, ..)| name)
        .collect();
    assert_eq!(
        top,
        ["outside", "root"],
        "the layer created an entry beside the root"
    );
});

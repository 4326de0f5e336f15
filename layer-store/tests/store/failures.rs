//! Bad input is refused with a typed error and leaves nothing behind.

use std::fs;
use std::path::Path;

use strata_layer_store::tarstream::TarError;
use strata_layer_store::{ImportError, Store, StoreError, Strategy};

use crate::files_under;
use crate::fixtures::{Comp, Image, sample_layers};

/// The store holds no image, no layer, no object and nothing in tmp.
pub fn assert_empty(store: &Store, root: &Path) {
    assert!(store.images().unwrap().is_empty());
    assert!(store.layers().unwrap().is_empty());
    for dir in ["objects", "layers", "tmp"] {
        assert_eq!(
            files_under(&root.join(dir)),
            Vec::<String>::new(),
            "{dir} not empty"
        );
    }
}

pub fn import_err(src: &Path) -> (tempfile::TempDir, StoreError) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let err = store
        .import(src, &Default::default())
        .expect_err("import must fail");
    assert_empty(&store, &root);
    // Building trees while importing leaves nothing either.
    let strategy = if rustix::process::geteuid().is_root() {
        Strategy::Stub
    } else {
        Strategy::Hardlink
    };
    let again = store
        .import_materialized(src, &Default::default(), Some(strategy))
        .expect_err("import_materialized must fail");
    assert_eq!(again.to_string(), err.to_string());
    assert_empty(&store, &root);
    (tmp, err)
}

#[test]
fn wrong_layer_digest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let image = Image::new(&sample_layers(), Comp::Gzip);
    let src = tmp.path().join("src");
    image.write_oci(&src, "x");
    // Replace layer 2's blob by a valid gzip of other content, under the old name.
    let name = &crate::fixtures::sha256(&image.blobs[1])[7..];
    let other = crate::fixtures::compress(&image.tars[0], Comp::Gzip);
    fs::write(src.join("blobs/sha256").join(name), other).unwrap();
    let (_t, err) = import_err(&src);
    assert!(
        matches!(&err, StoreError::Import(ImportError::Mismatch { what, .. }) if *what == "size" || *what == "digest"),
        "{err}"
    );
}

#[test]
fn wrong_diff_id_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut image = Image::new(&sample_layers(), Comp::Zstd);
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["rootfs"]["diff_ids"][0] = crate::fixtures::sha256(b"not it").into();
    image.config = serde_json::to_vec(&config).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["config"]["digest"] = crate::fixtures::sha256(&image.config).into();
    manifest["config"]["size"] = image.config.len().into();
    image.manifest = serde_json::to_vec(&manifest).unwrap();
    let src = tmp.path().join("src");
    image.write_oci(&src, "x");
    let (_t, err) = import_err(&src);
    assert!(
        matches!(
            &err,
            StoreError::Import(ImportError::Mismatch {
                what: "diff_id",
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn truncated_blob_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let image = Image::new(&sample_layers(), Comp::Gzip);
    let src = tmp.path().join("src");
    image.write_oci(&src, "x");
    let path = src
        .join("blobs/sha256")
        .join(&crate::fixtures::sha256(&image.blobs[0])[7..]);
    let data = fs::read(&path).unwrap();
    fs::write(&path, &data[..data.len() / 2]).unwrap();
    let (_t, err) = import_err(&src);
    assert!(
        matches!(err, StoreError::Import(_) | StoreError::Tar(_)),
        "{err}"
    );
}

#[test]
fn escaping_paths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // Bypass the tar crate's own path check: write the name bytes directly.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(b"x");
        tar.resize(1024 + 1024, 0);
    }
    let path = tmp.path().join("evil.tar");
    fs::write(&path, tar).unwrap();
    let (_t, err) = import_err(&path);
    let chain = strata_testkit::error_chain(&err);
    assert!(
        matches!(
            &err,
            StoreError::Import(ImportError::Layer {
                source: TarError::UnsafePath { .. },
                ..
            })
        ),
        "{chain}"
    );
    assert!(
        chain
            .contains("layer evil.tar: tar entry \"../escape\" at offset 0 escapes the layer root"),
        "{chain}"
    );
}

#[test]
fn garbage_is_not_a_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();
    let (_t, err) = import_err(&dir);
    assert!(
        matches!(err, StoreError::Import(ImportError::UnknownSource { .. })),
        "{err}"
    );
}

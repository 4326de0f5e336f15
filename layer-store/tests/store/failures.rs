//! Bad input is refused with a typed error and leaves nothing behind.

use std::fs;
use std::path::Path;

use strata_layer_store::TarError;
use strata_layer_store::{BlobCheck, ImportError, Store, StoreError, Strategy};

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

pub fn import_err(src: &Path) -> (tempfile::TempDir, ImportError) {
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
        matches!(
            &err,
            ImportError::Mismatch {
                check: BlobCheck::Size | BlobCheck::Digest,
                ..
            }
        ),
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
            ImportError::Mismatch {
                check: BlobCheck::DiffId,
                ..
            }
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
        matches!(
            &err,
            ImportError::Read { .. } | ImportError::Layer { .. } | ImportError::Mismatch { .. }
        ) || matches!(&err, ImportError::Store(e) if matches!(**e, StoreError::Tar(_))),
        "{err}"
    );
}

/// Writes `evil.tar` in `dir`: a layer of one file named `name`, bytes as given (no check).
fn write_layer(dir: &Path, name: &[u8]) -> std::path::PathBuf {
    let mut tar = Vec::new();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    // Bypass the tar crate's own path check: write the name bytes directly.
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(b"x");
    tar.resize(1024 + 1024, 0);
    let path = dir.join("evil.tar");
    fs::write(&path, tar).unwrap();
    path
}

#[test]
fn escaping_paths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_t, err) = import_err(&write_layer(tmp.path(), b"../escape"));
    let chain = strata_testkit::error_chain(&err);
    assert!(
        matches!(
            &err,
            ImportError::Layer {
                source: TarError::UnsafePath { .. },
                ..
            }
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
    assert!(matches!(err, ImportError::UnknownSource { .. }), "{err}");
}

#[test]
fn a_failed_imports_chain_says_each_cause_once() {
    let tmp = tempfile::tempdir().unwrap();

    // The store's I/O error, lifted into the import's: the path, then what the kernel said.
    let missing = tmp.path().join("missing");
    let (_t, err) = import_err(&missing);
    let os = std::io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
    assert_eq!(
        strata_testkit::assert_chain_once(&err),
        format!("{}: {os}", missing.display())
    );

    // A truncated blob: the blob, then the decompressor's or the tar reader's complaint.
    let image = Image::new(&sample_layers(), Comp::Gzip);
    let src = tmp.path().join("src");
    image.write_oci(&src, "x");
    let blob = src
        .join("blobs/sha256")
        .join(&crate::fixtures::sha256(&image.blobs[0])[7..]);
    let data = fs::read(&blob).unwrap();
    fs::write(&blob, &data[..data.len() / 2]).unwrap();
    let (_t, err) = import_err(&src);
    strata_testkit::assert_chain_once(&err);

    // A layer that does not take apart: the layer, then the tar entry at fault.
    let (_t, err) = import_err(&write_layer(tmp.path(), b"../escape"));
    let chain = strata_testkit::assert_chain_once(&err);
    assert!(chain.starts_with("layer evil.tar: "), "{chain}");
}

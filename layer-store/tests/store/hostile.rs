//! Hostile layers and layouts: nothing outside the store is touched, and every resource an
//! import spends stays bounded by its limits.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata_layer_store::TarError;
use strata_layer_store::{BlobCheck, ImportError, ImportOptions, Limit, Limits, Store, Strategy};
use strata_testkit::error_chain;
use strata_testkit::hostile::{self, RawTar};

use crate::failures::import_err;

/// A directory beside the store with a victim file whose bytes and link count must not change.
struct Outside {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Outside {
    fn new() -> Outside {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("outside");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("secret"), b"host secret").unwrap();
        Outside { _tmp: tmp, dir }
    }

    fn assert_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "something was written outside");
        let victim = self.dir.join("secret");
        assert_eq!(fs::read(&victim).unwrap(), b"host secret");
        assert_eq!(
            fs::metadata(&victim).unwrap().nlink(),
            1,
            "the victim was linked"
        );
    }
}

fn strategies() -> Vec<Strategy> {
    let mut all = vec![Strategy::Hardlink, Strategy::Copy];
    if rustix::process::geteuid().is_root() {
        all.push(Strategy::Stub);
    }
    all
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn import_with(source: &Path, limits: Limits) -> Result<(tempfile::TempDir, Store), ImportError> {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let options = ImportOptions::default().with_limits(limits);
    store.import(source, &options)?;
    Ok((tmp, store))
}

/// The layer's tar error under the import error that names the layer.
fn tar_error(err: &ImportError) -> &TarError {
    match err {
        ImportError::Layer { source, .. } => source,
        other => panic!("not a layer error: {}", error_chain(other)),
    }
}

#[test]
fn a_hard_link_through_the_layers_own_symlink_to_a_host_file_is_refused() {
    let outside = Outside::new();
    let tmp = tempfile::tempdir().unwrap();
    let layer = write(
        tmp.path(),
        "evil.tar",
        &hostile::host_link_layer(&outside.dir.to_string_lossy()),
    );
    let (_t, err) = import_err(&layer);
    assert!(
        matches!(tar_error(&err), TarError::DanglingHardlink { path, target } if path == "h" && target == "d/secret"),
        "{}",
        error_chain(&err)
    );
    for strategy in strategies() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let err = store
            .import_materialized(&layer, &ImportOptions::default(), Some(strategy))
            .expect_err("refused");
        assert!(matches!(tar_error(&err), TarError::DanglingHardlink { .. }));
    }
    outside.assert_untouched();
}

#[test]
fn an_entry_below_the_layers_own_symlink_is_refused() {
    let outside = Outside::new();
    let tmp = tempfile::tempdir().unwrap();
    let layer = write(
        tmp.path(),
        "evil.tar",
        &hostile::write_through_symlink_layer(&outside.dir.to_string_lossy()),
    );
    let (_t, err) = import_err(&layer);
    assert!(
        matches!(tar_error(&err), TarError::BelowNonDirectory { path, .. } if path == "d/x"),
        "{}",
        error_chain(&err)
    );
    outside.assert_untouched();
}

#[test]
fn hard_links_to_non_files_and_to_themselves_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, tar) in [
        ("dir", RawTar::new().dir("d").hardlink("h", "d").finish()),
        (
            "symlink",
            RawTar::new()
                .symlink("s", "/etc/passwd")
                .hardlink("h", "s")
                .finish(),
        ),
        (
            "self",
            RawTar::new().file("h", b"x").hardlink("h", "h").finish(),
        ),
        (
            "replaced dir",
            RawTar::new()
                .dir("d")
                .file("d/f", b"x")
                .file("d", b"now a file")
                .hardlink("h", "d/f")
                .finish(),
        ),
    ] {
        let layer = write(tmp.path(), name, &tar);
        let (_t, err) = import_err(&layer);
        assert!(
            matches!(tar_error(&err), TarError::DanglingHardlink { .. }),
            "{name}: {}",
            error_chain(&err)
        );
    }
}

#[test]
fn hard_links_to_files_of_the_layer_still_materialize_in_every_strategy() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = write(
        tmp.path(),
        "ok.tar",
        &RawTar::new()
            .dir("d")
            .file("d/f", b"shared")
            .hardlink("h1", "d/f")
            .hardlink("h2", "h1")
            .finish(),
    );
    for strategy in strategies() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path().join("store")).unwrap();
        let report = store
            .import_materialized(&layer, &ImportOptions::default(), Some(strategy))
            .unwrap();
        let tree = Store::layer_tree_path(store.root(), &report.layers[0].id);
        let f = fs::metadata(tree.join("d/f")).unwrap();
        for link in ["h1", "h2"] {
            assert_eq!(
                fs::metadata(tree.join(link)).unwrap().ino(),
                f.ino(),
                "{strategy:?}"
            );
        }
    }
}

#[test]
fn nested_indexes_are_refused_before_they_are_walked() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    hostile::nested_index_layout(&layout, 8, 8);
    let (_t, err) = import_err(&layout);
    assert!(
        matches!(
            err,
            ImportError::OverLimit {
                limit: Limit::IndexDepth,
                ..
            }
        ),
        "{}",
        error_chain(&err)
    );
    // Within the depth limit, the descriptor count stops it: 8 + 64 + 512 + 4096.
    let shallow = tmp.path().join("shallow");
    hostile::nested_index_layout(&shallow, 8, 4);
    let (_t, err) = import_err(&shallow);
    assert!(
        matches!(
            err,
            ImportError::OverLimit {
                limit: Limit::IndexDescriptors,
                ..
            }
        ),
        "{}",
        error_chain(&err)
    );
}

#[test]
fn an_inflation_bomb_costs_no_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 256u64 << 20;
    let layer = write(tmp.path(), "bomb.tar.gz", &hostile::zero_bomb(size));
    let (_store_dir, store) = import_with(&layer, Limits::default()).unwrap();
    let mut allocated = 0;
    for object in crate::files_under(&store.root().join("objects")) {
        let meta = fs::metadata(store.root().join("objects").join(object)).unwrap();
        allocated += meta.blocks() * 512;
        assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    }
    assert!(
        allocated < 1 << 20,
        "{allocated} bytes allocated for {size} zeros"
    );
}

#[test]
fn xattr_and_pax_floods_are_refused_by_their_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "xattr",
            hostile::xattr_flood(3, 1 << 20),
            Limit::PaxBytesPerEntry,
        ),
        (
            "xattrs",
            hostile::xattr_flood(300, 100 << 10),
            Limit::XattrBytesPerLayer,
        ),
        (
            "global xattr",
            hostile::global_pax("SCHILY.xattr.user.big", 200 << 10, 3),
            Limit::XattrBytesPerEntry,
        ),
        (
            "global comment",
            hostile::global_pax("comment", 1000 << 10, 100),
            Limit::PaxBytesPerLayer,
        ),
    ];
    for (name, tar, limit) in cases {
        let layer = write(tmp.path(), name, &hostile::gzip(&tar));
        let (_t, err) = import_err(&layer);
        assert!(
            matches!(tar_error(&err), TarError::OverLimit { limit: l, .. } if *l == limit),
            "{name}: {}",
            error_chain(&err)
        );
    }
}

#[test]
fn limits_can_be_raised_for_a_trusted_source() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = write(tmp.path(), "many.tar", &hostile::many_entries(2_000));
    let Err(err) = import_with(&layer, Limits::default().with_entries_per_layer(1_000)) else {
        panic!("2,000 entries imported under a limit of 1,000");
    };
    assert!(
        matches!(
            tar_error(&err),
            TarError::OverLimit {
                limit: Limit::EntriesPerLayer,
                ..
            }
        ),
        "{}",
        error_chain(&err)
    );
    import_with(&layer, Limits::default().with_entries_per_layer(5_000)).unwrap();
    let flood = write(tmp.path(), "flood", &hostile::xattr_flood(3, 200 << 10));
    import_with(&flood, Limits::unlimited()).unwrap();
}

#[test]
fn a_fifo_is_refused_at_once_as_a_source_or_a_blob() {
    use std::sync::mpsc;
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("layer.tar");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let layout = tmp.path().join("layout");
    hostile::nested_index_layout(&layout, 0, 0);
    fs::remove_file(layout.join("index.json")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        layout.join("index.json"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for source in [fifo, layout] {
        // A hang would be the bug: the import runs on a thread the test waits for, bounded.
        let (tx, rx) = mpsc::channel();
        let path = source.clone();
        std::thread::spawn(move || {
            let (_t, err) = import_err(&path);
            let _ = tx.send(err.to_string());
        });
        let message = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("import of {} hangs", source.display()));
        assert!(message.contains("not a regular file"), "{message}");
    }
}

#[test]
fn the_tar_error_wins_over_the_decompressors_broken_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    // Incompressible data after each bad entry keeps the decompressor writing when the
    // reader stops.
    let noise: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let escape = {
        let mut tar = RawTar::new();
        tar.file("ok", b"fine");
        tar.entry(tar::EntryType::Regular, b"../escape", b"", &noise);
        tar.finish()
    };
    let long_name = {
        let mut tar = RawTar::new();
        tar.entry(
            tar::EntryType::GNULongName,
            b"././@LongLink",
            b"",
            &noise[..2 << 20],
        );
        tar.file("x", &noise[2 << 20..]);
        tar.finish()
    };
    let huge_pax = {
        let mut tar = RawTar::new();
        tar.pax(&noise[..], false).file("x", b"");
        tar.finish()
    };
    let trailing = {
        let mut tar = RawTar::new();
        tar.file("x", b"x");
        let mut bytes = tar.finish();
        bytes.extend_from_slice(&noise);
        bytes
    };
    for (name, tar, expected) in [
        (
            "escape",
            escape,
            "tar entry \"../escape\" at offset 1024 escapes the layer root",
        ),
        (
            "long-name",
            long_name,
            "bytes of one PAX or long-name record would be 2097152",
        ),
        (
            "huge-pax",
            huge_pax,
            "bytes of one PAX or long-name record would be 33554432",
        ),
        (
            "trailing",
            trailing,
            "bytes of data follow the end of the tar",
        ),
    ] {
        let layer = write(tmp.path(), &format!("{name}.tar.gz"), &hostile::gzip(&tar));
        let (_t, err) = import_err(&layer);
        let chain = error_chain(&err);
        assert!(chain.contains(&format!("layer {name}.tar.gz: ")), "{chain}");
        assert!(chain.contains(expected), "{chain}");
        assert!(!chain.to_lowercase().contains("broken pipe"), "{chain}");
    }
}

#[test]
fn malformed_json_names_the_blob_and_what_it_should_be() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    hostile::nested_index_layout(&layout, 0, 0);
    fs::write(layout.join("index.json"), b"{\"manifests\": 7}").unwrap();
    let (_t, err) = import_err(&layout);
    let chain = error_chain(&err);
    assert!(
        chain.starts_with("index.json is not an OCI image index: invalid type: integer `7`"),
        "{chain}"
    );
}

#[test]
fn sha512_descriptors_are_verified_and_imported() {
    use crate::fixtures::{Comp, Image, sample_layers};
    use sha2::Digest as _;
    let image = Image::new(&sample_layers(), Comp::Gzip);
    let sha512 = |bytes: &[u8]| format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes)));
    // A layout naming every blob by sha512; layer 1's descriptor says `layer1_digest`.
    let layout = |dir: &Path, layer1_digest: &str| {
        let blobs = dir.join("blobs/sha512");
        fs::create_dir_all(&blobs).unwrap();
        let put = |digest: &str, bytes: &[u8]| fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        let layers = manifest["layers"].as_array_mut().unwrap();
        for (i, (layer, blob)) in layers.iter_mut().zip(&image.blobs).enumerate() {
            let digest = if i == 1 {
                layer1_digest.to_owned()
            } else {
                sha512(blob)
            };
            put(&digest, blob);
            layer["digest"] = digest.into();
        }
        manifest["config"]["digest"] = sha512(&image.config).into();
        put(&sha512(&image.config), &image.config);
        let manifest = serde_json::to_vec(&manifest).unwrap();
        put(&sha512(&manifest), &manifest);
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha512(&manifest), "size": manifest.len(),
        }]});
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    };
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    layout(&good, &sha512(&image.blobs[1]));
    let (_s, store) = import_with(&good, Limits::default()).unwrap();
    assert_eq!(store.images().unwrap().len(), 1);

    // A descriptor whose sha512 is not the blob's is caught.
    let bad = tmp.path().join("bad");
    let wrong = sha512(b"another blob");
    layout(&bad, &wrong);
    let (_t, err) = import_err(&bad);
    assert!(
        matches!(&err, ImportError::Mismatch { check: BlobCheck::Digest, expected, .. } if *expected == wrong),
        "{}",
        error_chain(&err)
    );
}

#[test]
fn docker_save_links_and_symlinked_bare_layers_import() {
    use crate::fixtures::{Comp, Image, sample_layers};
    let tmp = tempfile::tempdir().unwrap();
    let layers = sample_layers();
    // The same layer twice, the second copy a symlink to the first, as docker save writes.
    let image = Image::new(&[layers[0].clone(), layers[0].clone()], Comp::Plain);
    let archive = tmp.path().join("saved.tar");
    image.write_docker_archive(&archive, "saved:1");
    let (_s, store) = import_with(&archive, Limits::default()).unwrap();
    assert_eq!(store.image("saved:1").unwrap().layers.len(), 2);

    let real = write(tmp.path(), "real.tar", &image.tars[0]);
    let link = tmp.path().join("elsewhere");
    fs::create_dir(&link).unwrap();
    std::os::unix::fs::symlink(&real, link.join("layer.tar")).unwrap();
    let (_s, store) = import_with(&link.join("layer.tar"), Limits::default()).unwrap();
    assert_eq!(store.images().unwrap().len(), 1);
}

#[test]
fn a_full_disk_says_so_and_names_the_path() {
    if !strata_testkit::can_mount() || !strata_testkit::peer("mkfs.ext4", "e2fsprogs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = strata_testkit::loopfs::LoopFs::new(
        tmp.path(),
        "ext4",
        16 << 20,
        &["mkfs.ext4", "-q", "-F"],
    )
    .unwrap();
    // Incompressible, so it takes its size in blocks; in a gzip, so the decompressor is still
    // writing when the store fails.
    let noise: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut tar = RawTar::new();
    tar.file("big", &noise);
    let layer = write(tmp.path(), "big.tar.gz", &hostile::gzip(&tar.finish()));
    let store = Store::open(disk.path().join("store")).unwrap();
    let err = store
        .import(&layer, &ImportOptions::default())
        .expect_err("the disk is full");
    let chain = error_chain(&err);
    assert!(chain.contains("No space left on device"), "{chain}");
    assert!(
        chain.contains(&disk.path().display().to_string()),
        "{chain}"
    );
    assert!(!chain.to_lowercase().contains("broken pipe"), "{chain}");
    // Nothing half-written is left, and the store still works.
    assert!(store.images().unwrap().is_empty());
    assert_eq!(
        crate::files_under(&disk.path().join("store/tmp")),
        Vec::<String>::new()
    );
}

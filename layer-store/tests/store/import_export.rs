//! Every source format and compression imports, and exports bit for bit.

use std::fs;

use strata_layer_store::Store;

use crate::fixtures::{Comp, Image, sample_layers, sha256};
use crate::import;

fn blob(dir: &std::path::Path, digest: &str) -> Vec<u8> {
    fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap()
}

#[test]
fn oci_layout_round_trips_bit_for_bit_in_every_reproducible_compression() -> anyhow::Result<()> {
    for comp in [Comp::Plain, Comp::Zstd, Comp::ZstdCli] {
        let tmp = tempfile::tempdir()?;
        let image = Image::new(&sample_layers(), comp);
        let src = tmp.path().join("src");
        image.write_oci(&src, "sample");
        let store = Store::open(tmp.path().join("store"))?;
        let report = import(&store, &src, "sample")?;
        assert_eq!(format!("sha256:{}", report.image), image.manifest_digest());
        assert!(report.layers.iter().all(|l| l.imported));

        let out = tmp.path().join("out");
        let exported = store.export("sample", &out)?;
        assert_eq!(exported.manifest, image.manifest_digest(), "{comp:?}");
        assert!(exported.layers.iter().all(|l| l.reproduced), "{comp:?}");
        for original in image.blobs.iter().chain([&image.config, &image.manifest]) {
            assert!(
                blob(&out, &sha256(original)) == *original,
                "{comp:?}: blob differs"
            );
        }
    }
    Ok(())
}

#[test]
fn archives_and_bare_layers_import_with_their_diff_ids() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let image = Image::new(&sample_layers(), Comp::ZstdCli);
    let oci_archive = tmp.path().join("oci.tar");
    image.write_oci_archive(&oci_archive, "a");
    let docker_archive = tmp.path().join("docker.tar");
    image.write_docker_archive(&docker_archive, "b:latest");
    let bare = tmp.path().join("layer.tar.zst");
    fs::write(&bare, crate::fixtures::compress(&image.tars[0], Comp::Zstd))?;

    let store = Store::open(tmp.path().join("store"))?;
    let a = import(&store, &oci_archive, "a")?;
    assert_eq!(format!("sha256:{}", a.image), image.manifest_digest());
    // Same layers again: nothing is read twice.
    let b = import(&store, &docker_archive, "b:latest")?;
    assert!(b.layers.iter().all(|l| !l.imported));
    let c = import(&store, &bare, "c")?;
    assert_eq!(format!("sha256:{}", c.layers[0].id), sha256(&image.tars[0]));

    for name in ["a", "b:latest", "c"] {
        let record = store.image(name)?;
        for (i, layer) in record.layers.iter().enumerate() {
            let mut tar = Vec::new();
            store.write_layer_tar(&store.layer_record(&layer.hex())?, &mut tar)?;
            assert!(tar == image.tars[i], "{name}: layer {i} differs");
        }
    }
    // The docker archive's synthesized manifest names the (plain) blobs it was read from.
    let out = tmp.path().join("out-b");
    let exported = store.export("b:latest", &out)?;
    assert!(exported.layers.iter().all(|l| l.reproduced));
    Ok(())
}

#[test]
fn unreproducible_gzip_exports_the_same_tar_and_a_rewritten_manifest() -> anyhow::Result<()> {
    for comp in [Comp::GzipCli, Comp::Gzip] {
        unreproducible_gzip(comp)?;
    }
    Ok(())
}

fn unreproducible_gzip(comp: Comp) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let image = Image::new(&sample_layers(), comp);
    let src = tmp.path().join("src");
    image.write_oci(&src, "cli");
    let store = Store::open(tmp.path().join("store"))?;
    import(&store, &src, "cli")?;
    let out = tmp.path().join("out");
    let exported = store.export("cli", &out)?;
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&out, &exported.manifest))?;
    for (i, layer) in exported.layers.iter().enumerate() {
        assert_eq!(manifest["layers"][i]["digest"], layer.digest.as_str());
        let mut tar = Vec::new();
        let data = blob(&out, &layer.digest);
        std::io::copy(&mut flate2::read::GzDecoder::new(&data[..]), &mut tar)?;
        assert!(tar == image.tars[i], "layer {i} tar differs");
        if layer.reproduced {
            assert_eq!(layer.digest, sha256(&image.blobs[i]));
        }
    }
    if exported.layers.iter().all(|l| l.reproduced) {
        assert_eq!(exported.manifest, image.manifest_digest());
    } else {
        assert_ne!(exported.manifest, image.manifest_digest());
    }
    // What Strata compressed, Strata reproduces: export → import → export is byte-identical.
    let again = Store::open(tmp.path().join("store2"))?;
    import(&again, &out, "cli")?;
    let out2 = tmp.path().join("out2");
    let second = again.export("cli", &out2)?;
    assert_eq!(second.manifest, exported.manifest, "{comp:?}");
    assert!(second.layers.iter().all(|l| l.reproduced), "{comp:?}");
    assert_eq!(crate::files_under(&out), crate::files_under(&out2));
    for file in crate::files_under(&out) {
        assert!(
            fs::read(out.join(&file))? == fs::read(out2.join(&file))?,
            "{file} differs"
        );
    }
    Ok(())
}

#[test]
fn shared_files_across_unrelated_images_are_stored_once() -> anyhow::Result<()> {
    use crate::fixtures::Item;
    let tmp = tempfile::tempdir()?;
    let big: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let one = Image::new(
        &[vec![Item::File("a/big".into(), big.clone(), 0o644)]],
        Comp::Gzip,
    );
    let two = Image::new(
        &[vec![
            Item::File("other/place/big".into(), big.clone(), 0o755),
            Item::File("small".into(), b"x".to_vec(), 0o644),
        ]],
        Comp::Zstd,
    );
    let (src1, src2) = (tmp.path().join("one"), tmp.path().join("two"));
    one.write_oci(&src1, "one");
    two.write_oci(&src2, "two");
    let store = Store::open(tmp.path().join("store"))?;
    import(&store, &src1, "one")?;
    let second = import(&store, &src2, "two")?;
    assert_eq!((second.objects_new, second.objects_existing), (1, 1));
    let du = store.du()?;
    assert_eq!(du.logical_bytes, 2 * big.len() as u64 + 1);
    // One copy of the big file, not two.
    assert!(du.object_bytes < big.len() as u64 * 11 / 10, "{du:?}");
    assert!(du.object_bytes >= big.len() as u64, "{du:?}");
    Ok(())
}

#[test]
fn import_and_export_report_their_progress_per_layer() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use strata_layer_store::Progress;
    #[derive(Default)]
    struct Counted {
        total: AtomicU64,
        done: AtomicU64,
        /// Bytes per part (layer).
        parts: std::sync::Mutex<std::collections::BTreeMap<usize, u64>>,
    }
    impl Progress for Counted {
        fn start(&self, total: u64) {
            self.total.store(total, Ordering::Relaxed);
        }
        fn advance(&self, index: usize, bytes: u64) {
            self.done.fetch_add(bytes, Ordering::Relaxed);
            *self.parts.lock().unwrap().entry(index).or_default() += bytes;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = Image::new(&sample_layers(), Comp::Gzip);
    image.write_oci(&tmp.path().join("src"), "x");
    let store = Store::open(tmp.path().join("store")).unwrap();
    let imported = Counted::default();
    let options = strata_layer_store::ImportOptions::default()
        .with_name(Some("x".into()))
        .with_progress(Some(&imported));
    store.import(&tmp.path().join("src"), &options).unwrap();
    // The import counts each layer's compressed bytes as that layer's.
    let blobs: Vec<u64> = image.blobs.iter().map(|b| b.len() as u64).collect();
    let per_part: Vec<u64> = imported.parts.lock().unwrap().values().copied().collect();
    assert_eq!(per_part, blobs);
    let counted = Counted::default();
    store
        .export_with_progress("x", &tmp.path().join("out"), Some(&counted))
        .unwrap();
    let tars: Vec<u64> = image.tars.iter().map(|t| t.len() as u64).collect();
    assert_eq!(
        counted.total.load(Ordering::Relaxed),
        tars.iter().sum::<u64>()
    );
    assert_eq!(
        counted.done.load(Ordering::Relaxed),
        tars.iter().sum::<u64>()
    );
    let per_part: Vec<u64> = counted.parts.lock().unwrap().values().copied().collect();
    assert_eq!(per_part, tars, "each layer's tar bytes counted as its own");
}

/// The same layers compressed by two tools: the store holds each layer once, keeps both blobs,
/// and exports each image under its own digests. Under `BlobPolicy::Reproducible` the second
/// image's layers are not read again.
#[test]
fn a_layer_held_from_another_blob_is_read_again_to_keep_this_one() -> anyhow::Result<()> {
    use strata_layer_store::{BlobPolicy, ImportOptions};
    let tmp = tempfile::tempdir()?;
    let (zlib, gnu) = (
        Image::new(&sample_layers(), Comp::Gzip),
        Image::new(&sample_layers(), Comp::GzipCli),
    );
    assert_eq!(zlib.tars, gnu.tars);
    assert_ne!(
        zlib.blobs, gnu.blobs,
        "GNU gzip wrote the same bytes as zlib-rs"
    );
    let (zlib_src, gnu_src) = (tmp.path().join("zlib"), tmp.path().join("gnu"));
    zlib.write_oci(&zlib_src, "zlib");
    gnu.write_oci(&gnu_src, "gnu");

    let store = Store::open(tmp.path().join("store"))?;
    import(&store, &zlib_src, "zlib")?;
    let second = import(&store, &gnu_src, "gnu")?;
    assert_eq!(second.objects_new, 0, "the files were stored again");
    let kept = fs::read_dir(store.root().join("blobs/sha256"))?.count();
    assert_eq!(
        kept,
        zlib.blobs.len() + gnu.blobs.len(),
        "every layer blob of both kept"
    );
    for (image, name) in [(&zlib, "zlib"), (&gnu, "gnu")] {
        let out = tmp.path().join(format!("out-{name}"));
        let exported = store.export(name, &out)?;
        assert_eq!(exported.manifest, image.manifest_digest(), "{name}");
        for (i, layer) in exported.layers.iter().enumerate() {
            assert!(
                blob(&out, &layer.digest) == image.blobs[i],
                "{name} layer {i}"
            );
        }
    }

    let lean = Store::open(tmp.path().join("lean"))?.with_blob_policy(BlobPolicy::Reproducible);
    import(&lean, &zlib_src, "zlib")?;
    let options = ImportOptions::default().with_name(Some("gnu".into()));
    let second = lean.import(&gnu_src, &options)?;
    assert_eq!(second.blob_bytes, 0, "layers read again: {second:?}");
    Ok(())
}

/// A layer first imported without keeping blobs, from a blob no compression setting rebuilds, is
/// read again when an import keeps blobs: its own blob is no longer trusted to come back.
#[test]
fn a_blob_no_setting_rebuilds_is_kept_when_a_keeping_import_comes() -> anyhow::Result<()> {
    use strata_layer_store::BlobPolicy;
    let tmp = tempfile::tempdir()?;
    let gnu = Image::new(&sample_layers(), Comp::GzipCli);
    let src = tmp.path().join("gnu");
    gnu.write_oci(&src, "gnu");
    let root = tmp.path().join("store");
    let lean = Store::open(&root)?.with_blob_policy(BlobPolicy::Reproducible);
    import(&lean, &src, "gnu")?;
    drop(lean);

    let store = Store::open(&root)?;
    let again = import(&store, &src, "gnu")?;
    assert_eq!(again.objects_new, 0, "{again:?}");
    let exported = store.export("gnu", &tmp.path().join("out"))?;
    assert_eq!(exported.manifest, gnu.manifest_digest());
    Ok(())
}

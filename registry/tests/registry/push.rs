//! Push: cross-repository mounts, blobs the export cannot reproduce, and `skopeo` as a peer
//! in both directions.

use std::fs;

use strata_registry::BlobOutcome;

use crate::fixtures::{Comp, Image};
use crate::{
    World, assert_all_present, assert_exports, base_image, fixtures, layer, pull_options,
    push_options, skopeo,
};

#[test]
fn push_mounts_blobs_from_another_repository() {
    let Some(world) = World::new() else {
        return;
    };
    let image = base_image();
    world.publish(&image, "one");
    let options = push_options().with_mount_from(Some("one".into()));
    let two = world.reference("two:1");
    let report = world.source.push("one", &two, &options).unwrap();
    let outcomes: Vec<BlobOutcome> = report.blobs.iter().map(|b| b.outcome).collect();
    // The layers and the config.
    assert_eq!(outcomes, [BlobOutcome::Mounted; 3]);
    assert_eq!(
        report.bytes_uploaded,
        image.manifest.len() as u64,
        "only the manifest"
    );
    let fresh = world.store("fresh");
    fresh.pull(&two, &pull_options()).unwrap();
    assert_exports(&fresh, &two, &image);
}

#[test]
fn an_image_pulled_from_one_repository_is_mounted_into_another_and_pushed_once() {
    let Some(world) = World::new() else {
        return;
    };
    let image = base_image();
    let one = world.publish(&image, "one");
    // Another store pulls it: the image's name says where its blobs are.
    let puller = world.store("puller");
    puller.pull(&one, &pull_options()).unwrap();
    let two = world.reference("two:1");
    let report = puller.push(&one, &two, &push_options()).unwrap();
    let outcomes: Vec<BlobOutcome> = report.blobs.iter().map(|b| b.outcome).collect();
    assert_eq!(outcomes, [BlobOutcome::Mounted; 3], "{report:?}");
    assert_eq!(report.manifest, image.manifest_digest());
    assert!(report.manifest_uploaded);
    // Again: the tag names that manifest already, so nothing at all is sent.
    let again = puller.push(&one, &two, &push_options()).unwrap();
    assert_all_present(&again);
    assert!(!again.manifest_uploaded);
    assert_eq!(again.bytes_uploaded, 0);
    let uploads = world
        .registry
        .log()
        .lines()
        .filter(|l| l.contains("/v2/two/blobs/uploads/") && !l.contains("mount="))
        .count();
    assert_eq!(uploads, 0, "{}", world.registry.log());
}

#[test]
fn a_blob_the_export_cannot_reproduce_is_pushed_as_received_under_its_digest() {
    // GNU gzip's deflate stream is not zlib-rs's: the store keeps the blob as received, and the
    // push sends those bytes, so every digest stays what the image had.
    let Some(world) = World::new() else {
        return;
    };
    let image = Image::new(&[layer("cli", 13, 256 << 10)], Comp::GzipCli);
    world.import(&image, "cli");
    let reference = world.reference("cli:1");
    let report = world.push("cli", &reference).unwrap();
    let layer = &report.blobs[0];
    assert_eq!(layer.outcome, BlobOutcome::Uploaded);
    assert_eq!(layer.digest, fixtures::sha256(&image.blobs[0]));
    assert_eq!(
        fs::read(world.registry.blob_path(&layer.digest)).unwrap(),
        image.blobs[0]
    );
    assert_eq!(report.manifest, image.manifest_digest());
    // The kept blob streams straight from the store: nothing is staged, nothing left behind.
    let staged = fs::read_dir(world.root("source").join("tmp/push")).map(|d| d.count());
    assert_eq!(staged.unwrap_or(0), 0, "a staged blob was left behind");
    // A second push finds every blob under the digest the store sends: nothing is uploaded.
    let again = world.push("cli", &reference).unwrap();
    assert_all_present(&again);
    assert_eq!(again.manifest, image.manifest_digest());
    let fresh = world.store("fresh");
    let pulled = fresh.pull(&reference, &pull_options()).unwrap();
    assert_eq!(pulled.layers[0].diff_id, fixtures::sha256(&image.tars[0]));
    assert_eq!(pulled.layers[0].digest, layer.digest);
}

#[test]
fn skopeo_copies_what_strata_pushed_and_strata_pulls_what_skopeo_pushed() {
    if !strata_testkit::peer("skopeo", "skopeo") {
        return;
    }
    let Some(world) = World::new() else {
        return;
    };
    let image = crate::app_image();
    let by_strata = world.publish(&image, "by-strata");

    let layout = world.root("skopeo-layout");
    let src = format!("docker://{by_strata}");
    let dst = format!("oci:{}:app", layout.display());
    skopeo(&["copy", "--src-tls-verify=false", &src, &dst]);
    for blob in image.blobs.iter().chain([&image.config, &image.manifest]) {
        let path = layout
            .join("blobs/sha256")
            .join(&fixtures::sha256(blob)[7..]);
        assert!(
            fs::read(&path).unwrap() == *blob,
            "skopeo got different bytes"
        );
    }

    let original = world.root("original");
    image.write_oci(&original, "app");
    let by_skopeo = world.reference("by-skopeo:1");
    let src = format!("oci:{}:app", original.display());
    let dst = format!("docker://{by_skopeo}");
    skopeo(&["copy", "--dest-tls-verify=false", &src, &dst]);
    let target = world.store("target");
    target.pull(&by_skopeo, &pull_options()).unwrap();
    assert_exports(&target, &by_skopeo, &image);
}

#[test]
fn push_reports_progress_in_blob_bytes_uploaded_or_not() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use strata_layer_store::Progress;
    #[derive(Default)]
    struct Counted {
        total: AtomicU64,
        done: AtomicU64,
    }
    impl Progress for Counted {
        fn start(&self, total: u64) {
            self.total.store(total, Ordering::Relaxed);
        }
        fn advance(&self, _index: usize, bytes: u64) {
            self.done.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    let Some(world) = World::new() else {
        return;
    };
    let image = base_image();
    world.import(&image, "one");
    let blobs: u64 = image.blobs.iter().map(|b| b.len() as u64).sum();
    // Uploaded, then already there: both count every layer blob once.
    for _ in 0..2 {
        let counted = Arc::new(Counted::default());
        let options = push_options().with_progress(Some(counted.clone()));
        world
            .source
            .push("one", &world.reference("one:1"), &options)
            .unwrap();
        assert_eq!(counted.total.load(Ordering::Relaxed), blobs);
        assert_eq!(counted.done.load(Ordering::Relaxed), blobs);
    }
}

//! Pull: round trip, only what is missing, resume, refusal of bad bytes, parallel pulls.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use strata_layer_store::Progress;
use strata_layer_store::{FsckOptions, StoreError};
use strata_registry::{BlobOutcome, LayerFetch, PullError, RegistryError};

use crate::fixtures::{Comp, Image};
use crate::server::RangeStripper;
use crate::{
    World, app_image, assert_all_present, assert_exports, base_image, fixtures, pull_options,
    single,
};

#[test]
fn push_then_pull_into_a_fresh_store_exports_the_same_bytes() {
    let Some(world) = World::new() else {
        return;
    };
    let image = app_image();
    world.import(&image, "app");
    let reference = world.reference("strata/app:v1");
    let pushed = world.push("app", &reference).unwrap();
    assert_eq!(pushed.manifest, image.manifest_digest());
    let uploaded = |outcome| pushed.blobs.iter().all(|b| b.outcome == outcome);
    assert!(uploaded(BlobOutcome::Uploaded));

    // Pushing again uploads nothing: every blob is there, and the tag names the manifest.
    let again = world.push("app", &reference).unwrap();
    assert_all_present(&again);
    assert_eq!(again.bytes_uploaded, 0);
    // Each blob went up as one streamed PUT, not in chunks.
    let log = world.registry.log();
    assert!(!log.contains("\"PATCH /v2/"), "{log}");
    assert!(log.contains("\"PUT /v2/strata/app/blobs/uploads/"), "{log}");

    let fresh = world.store("fresh");
    let report = fresh.pull(&reference, &pull_options()).unwrap();
    assert_eq!(format!("sha256:{}", report.image), image.manifest_digest());
    assert_eq!(report.tags, vec![reference.clone()]);
    let total: u64 = image.blobs.iter().map(|b| b.len() as u64).sum();
    assert_eq!(report.bytes_fetched, total);
    assert_eq!(report.bytes_present, 0);
    assert_exports(&fresh, &reference, &image);
    // Nothing is left behind in tmp/.
    assert_eq!(
        fs::read_dir(fresh.root().join("tmp/pull")).unwrap().count(),
        0
    );
}

#[test]
fn a_layer_held_from_another_blob_is_fetched_again_to_keep_the_images_digests() {
    // The same tar compressed by zlib-rs and by GNU gzip: one layer, two blobs.
    let Some(world) = World::new() else {
        return;
    };
    let items = [crate::layer("same", 21, 300 << 10)];
    let zlib = Image::new(&items, Comp::Gzip);
    let gnu = Image::new(&items, Comp::GzipCli);
    assert_ne!(zlib.blobs, gnu.blobs);
    let zlib_ref = world.publish(&zlib, "zlib");
    let gnu_ref = world.publish(&gnu, "gnu");

    let target = world.store("target");
    target.pull(&zlib_ref, &pull_options()).unwrap();
    let report = target.pull(&gnu_ref, &pull_options()).unwrap();
    assert_eq!(report.layers[0].fetch, LayerFetch::Fetched, "{report:?}");
    assert_eq!(report.bytes_fetched, gnu.blobs[0].len() as u64);
    assert_eq!(report.objects_new, 0, "the files were stored again");
    assert_exports(&target, &zlib_ref, &zlib);
    assert_exports(&target, &gnu_ref, &gnu);
    // Pulled again, nothing moves.
    let again = target.pull(&gnu_ref, &pull_options()).unwrap();
    assert_eq!(again.bytes_fetched, 0);
}

#[test]
fn pull_fetches_only_layers_the_store_lacks() {
    let Some(world) = World::new() else {
        return;
    };
    let app = app_image();
    let base_ref = world.publish(&base_image(), "base");
    let app_ref = world.publish(&app, "app");

    let target = world.store("target");
    target.pull(&base_ref, &pull_options()).unwrap();
    let report = target.pull(&app_ref, &pull_options()).unwrap();
    let fetched: Vec<LayerFetch> = report.layers.iter().map(|l| l.fetch).collect();
    assert_eq!(
        fetched,
        [
            LayerFetch::Present,
            LayerFetch::Present,
            LayerFetch::Fetched
        ]
    );
    assert_eq!(report.bytes_fetched, app.blobs[2].len() as u64);
    assert_eq!(
        report.bytes_present,
        (app.blobs[0].len() + app.blobs[1].len()) as u64
    );
    // The registry agrees: the base blobs were fetched once (by the first pull) from `base`,
    // never from `app`.
    let base_digest = fixtures::sha256(&app.blobs[0]);
    let log = world.registry.log();
    let app_gets = log
        .lines()
        .filter(|l| l.contains(&format!("GET /v2/app/blobs/{base_digest}")))
        .count();
    assert_eq!(app_gets, 0, "{log}");
    assert_exports(&target, &app_ref, &app);
}

#[test]
fn a_pull_reports_files_the_store_already_held_from_another_image() {
    // Two layers that differ (note.txt names the layer) but carry the same data.bin.
    let Some(world) = World::new() else {
        return;
    };
    let first = world.publish(&single("x", 5, 256 << 10), "x");
    let second = world.publish(&single("y", 5, 256 << 10), "y");
    let target = world.store("target");
    let report = target.pull(&first, &pull_options()).unwrap();
    assert_eq!((report.objects_new, report.objects_existing), (2, 0));
    let report = target.pull(&second, &pull_options()).unwrap();
    assert_eq!(report.layers[0].fetch, LayerFetch::Fetched, "{report:?}");
    assert_eq!((report.objects_new, report.objects_existing), (1, 1));
}

/// Cancels the pull once `after` bytes of some layer were imported.
struct CancelAfter {
    cancel: Arc<AtomicBool>,
    seen: AtomicU64,
    after: u64,
}

impl Progress for CancelAfter {
    fn advance(&self, _: usize, bytes: u64) {
        if self.seen.fetch_add(bytes, Ordering::Relaxed) + bytes >= self.after {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

#[test]
fn an_interrupted_pull_resumes_from_the_bytes_on_disk() {
    let Some(world) = World::new() else {
        return;
    };
    let image = single("big", 7, 4 << 20);
    let reference = world.publish(&image, "big");

    let target = world.store("target");
    let cancel = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(CancelAfter {
        cancel: cancel.clone(),
        seen: AtomicU64::new(0),
        after: 64 << 10,
    });
    let options = pull_options()
        .with_progress(Some(progress))
        .with_cancel(Some(cancel));
    let err = target.pull(&reference, &options).unwrap_err();
    assert!(matches!(err, PullError::Cancelled { .. }), "{err}");
    assert!(
        target.images().unwrap().is_empty(),
        "a cancelled pull made an image visible"
    );
    let partial = target
        .root()
        .join("tmp/pull")
        .join(&fixtures::sha256(&image.blobs[0])[7..]);
    let kept = fs::metadata(&partial).unwrap().len();
    let size = image.blobs[0].len() as u64;
    assert!(kept > 0 && kept < size, "kept {kept} of {size}");
    assert_eq!(
        fs::read(&partial).unwrap()[..],
        image.blobs[0][..kept as usize]
    );

    let report = target.pull(&reference, &pull_options()).unwrap();
    assert_eq!(report.bytes_resumed, kept);
    assert_eq!(report.bytes_fetched, size - kept);
    assert!(!partial.exists());
    // The second request asked for the rest only.
    let log = world.registry.log();
    assert!(log.contains("206"), "no partial content served:\n{log}");
    assert_exports(&target, &reference, &image);
}

/// Writes `bytes` as the partial download of `blob` in `store`, as a killed pull leaves it.
fn leave_partial(
    store: &strata_layer_store::Store,
    blob: &[u8],
    bytes: &[u8],
) -> std::path::PathBuf {
    let dir = store.root().join("tmp/pull");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&fixtures::sha256(blob)[7..]);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_partial_download_on_disk_is_resumed_if_good_and_discarded_if_corrupt() {
    // Interrupting by SIGKILL mid-blob is the CLI test's (a stalling proxy); here the partial
    // file a killed process leaves is written by hand.
    let Some(world) = World::new() else {
        return;
    };
    let image = single("k", 9, 1 << 20);
    let blob = &image.blobs[0];
    let reference = world.publish(&image, "k");
    let target = world.store("target");

    let mut wrong = blob[..1000].to_vec();
    wrong[500] ^= 0xff;
    let partial = leave_partial(&target, blob, &wrong);
    let err = target.pull(&reference, &pull_options()).unwrap_err();
    assert!(matches!(err, PullError::Layer { .. }), "{err}");
    strata_testkit::assert_chain_once(&err);
    assert!(target.images().unwrap().is_empty());
    assert!(!partial.exists(), "bytes that failed to verify were kept");

    let half = blob.len() / 2;
    leave_partial(&target, blob, &blob[..half]);
    let report = target.pull(&reference, &pull_options()).unwrap();
    assert_eq!(report.bytes_resumed, half as u64);
    assert_eq!(report.bytes_fetched, (blob.len() - half) as u64);
    assert_exports(&target, &reference, &image);
}

#[test]
fn a_registry_that_ignores_ranges_gets_the_blob_from_the_start() {
    let Some(world) = World::new() else {
        return;
    };
    let image = single("r", 12, 1 << 20);
    let blob = &image.blobs[0];
    let direct = world.publish(&image, "r");
    let partial_responses = || world.registry.log().matches("\" 206 ").count();
    // Directly, even a fresh pull asks for a range (from byte 0) and gets one.
    world
        .store("direct")
        .pull(&direct, &pull_options())
        .unwrap();
    let ranged = partial_responses();
    assert!(ranged > 0, "{}", world.registry.log());

    let proxy = RangeStripper::start(world.registry.port);
    let reference = format!("127.0.0.1:{}/r:1", proxy.port);
    let target = world.store("target");
    let partial = leave_partial(&target, blob, &blob[..blob.len() / 2]);
    let report = target.pull(&reference, &pull_options()).unwrap();
    // The half on disk was dropped: the whole blob came again, and verified.
    assert_eq!(partial_responses(), ranged, "a range reached the registry");
    assert_eq!(report.bytes_resumed, 0);
    assert_eq!(report.bytes_fetched, blob.len() as u64);
    assert!(!partial.exists());
    assert_exports(&target, &reference, &image);
}

#[test]
fn parallel_pulls_of_images_sharing_layers_leave_a_clean_store() {
    let Some(world) = World::new() else {
        return;
    };
    let (base, app) = (base_image(), app_image());
    let base_ref = world.publish(&base, "base");
    let app_ref = world.publish(&app, "app");

    std::thread::scope(|s| {
        for reference in [&base_ref, &app_ref] {
            let world = &world;
            // One handle per thread, as two processes would have.
            s.spawn(move || {
                world
                    .store("target")
                    .pull(reference, &pull_options())
                    .unwrap()
            });
        }
    });
    let target = world.store("target");
    let fsck = target.fsck(FsckOptions::default()).unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
    assert_exports(&target, &base_ref, &base);
    assert_exports(&target, &app_ref, &app);
}

#[test]
fn a_blob_the_registry_serves_wrong_is_refused_with_nothing_visible() {
    let Some(world) = World::new() else {
        return;
    };
    let image = base_image();
    let reference = world.publish(&image, "img");
    // Same length, one byte flipped, in the registry's own storage.
    let digest = fixtures::sha256(&image.blobs[1]);
    let path = world.registry.blob_path(&digest);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&path, bytes).unwrap();

    let target = world.store("target");
    let err = target.pull(&reference, &pull_options()).unwrap_err();
    match &err {
        PullError::Layer { digest: d, .. } => assert_eq!(*d, digest),
        other => panic!("unexpected error {other}"),
    }
    strata_testkit::assert_chain_once(&err);
    assert!(target.images().unwrap().is_empty());
    assert!(
        target.layers().unwrap().is_empty(),
        "a layer became visible"
    );
    assert!(!target.root().join("tmp/pull").join(&digest[7..]).exists());
}

#[test]
fn bad_references_and_missing_images_name_what_is_wrong() {
    let Some(world) = World::new() else {
        return;
    };
    let target = world.store("target");
    let err = RegistryError::from(target.pull("has spaces/x", &pull_options()).unwrap_err());
    assert!(matches!(err, RegistryError::BadReference { .. }), "{err}");
    let reference = world.reference("nothing:here");
    let err = target.pull(&reference, &pull_options()).unwrap_err();
    assert!(matches!(err, PullError::TagNotFound { .. }), "{err}");
    let err = RegistryError::from(world.push("nope", &reference).unwrap_err());
    assert!(
        matches!(&err, RegistryError::Store(e) if matches!(**e, StoreError::ImageNotFound { .. })),
        "{err}"
    );
}

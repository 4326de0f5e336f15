//! Pull and push against a real registry (Debian's `docker-registry` on 127.0.0.1), and
//! `skopeo` as a peer.

#[allow(dead_code)]
#[path = "../store/fixtures.rs"]
mod fixtures;
mod server;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fixtures::{Comp, Image, Item};
use server::Registry;
use strata_layer_store::digest::Sha256;
use strata_layer_store::registry::{
    Auth, BlobOutcome, Connection, LayerFetch, PullOptions, PullProgress, PushOptions,
    RegistryError,
};
use strata_layer_store::{Durability, FsckOptions, ImportOptions, Store, StoreError};

/// `len` bytes that do not compress (xorshift), different for each `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A layer of a few files, one of them `big` bytes of noise.
fn layer(name: &str, seed: u64, big: usize) -> Vec<Item> {
    vec![
        Item::Dir(name.into(), 0o755),
        Item::File(format!("{name}/data.bin"), noise(seed, big), 0o644),
        Item::File(
            format!("{name}/note.txt"),
            format!("layer {name}\n").into_bytes(),
            0o644,
        ),
        Item::Symlink(format!("{name}/link"), "data.bin".into()),
    ]
}

fn base_layers() -> Vec<Vec<Item>> {
    vec![layer("base", 1, 1 << 20), layer("lib", 2, 512 << 10)]
}

fn app_layers() -> Vec<Vec<Item>> {
    let mut layers = base_layers();
    layers.push(layer("app", 3, 2 << 20));
    layers
}

fn store(dir: &Path) -> Store {
    Store::open(dir).unwrap().with_durability(Durability::None)
}

fn insecure() -> Connection {
    Connection {
        insecure: true,
        ..Connection::default()
    }
}

fn pull_options<'a>() -> PullOptions<'a> {
    PullOptions {
        connection: insecure(),
        ..PullOptions::default()
    }
}

fn push_options() -> PushOptions {
    PushOptions {
        connection: insecure(),
        ..PushOptions::default()
    }
}

/// Imports `image` (written as an OCI layout) into `store` as `name`.
fn import(store: &Store, image: &Image, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    image.write_oci(dir.path(), name);
    let options = ImportOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    store.import(dir.path(), &options).unwrap();
}

/// Asserts the OCI layout `store` exports for `name` holds exactly `image`'s blobs.
fn assert_exports(store: &Store, name: &str, image: &Image) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let report = store.export(name, &out).unwrap();
    assert_eq!(report.manifest, image.manifest_digest());
    let blob = |bytes: &[u8]| {
        fs::read(out.join("blobs/sha256").join(&fixtures::sha256(bytes)[7..])).unwrap()
    };
    assert_eq!(blob(&image.manifest), image.manifest);
    assert_eq!(blob(&image.config), image.config);
    for b in &image.blobs {
        assert!(blob(b) == *b, "layer blob differs after the round trip");
    }
}

#[test]
fn push_then_pull_into_a_fresh_store_exports_the_same_bytes() {
    let registry = Registry::start(false);
    let image = Image::new(&app_layers(), Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &image, "app");
    let reference = registry.reference("strata/app:v1");
    let pushed = source.push("app", &reference, &push_options()).unwrap();
    assert_eq!(pushed.manifest, image.manifest_digest());
    assert!(
        pushed
            .blobs
            .iter()
            .all(|b| b.outcome == BlobOutcome::Uploaded)
    );

    // Pushing again uploads nothing but the manifest: every blob is already there.
    let again = source.push("app", &reference, &push_options()).unwrap();
    assert!(
        again
            .blobs
            .iter()
            .all(|b| b.outcome == BlobOutcome::Present)
    );
    assert_eq!(again.bytes_uploaded, image.manifest.len() as u64);

    let fresh = store(&tmp.path().join("b"));
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
fn pull_fetches_only_layers_the_store_lacks() {
    let registry = Registry::start(false);
    let base = Image::new(&base_layers(), Comp::Gzip);
    let app = Image::new(&app_layers(), Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &base, "base");
    import(&source, &app, "app");
    source
        .push("base", &registry.reference("base:1"), &push_options())
        .unwrap();
    let pushed = source
        .push("app", &registry.reference("app:1"), &push_options())
        .unwrap();
    // The app image's base layers were already in the registry (same repository or not, HEAD
    // finds them only in the same repository: here they were uploaded again).
    assert_eq!(pushed.blobs.len(), 4);

    let target = store(&tmp.path().join("b"));
    target
        .pull(&registry.reference("base:1"), &pull_options())
        .unwrap();
    let report = target
        .pull(&registry.reference("app:1"), &pull_options())
        .unwrap();
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
    let app_gets = registry
        .log()
        .lines()
        .filter(|l| l.contains(&format!("GET /v2/app/blobs/{base_digest}")))
        .count();
    assert_eq!(app_gets, 0, "{}", registry.log());
    assert_exports(&target, &registry.reference("app:1"), &app);
}

/// Cancels the pull once `after` bytes of some layer were imported.
struct CancelAfter<'a> {
    cancel: &'a AtomicBool,
    seen: AtomicU64,
    after: u64,
}

impl PullProgress for CancelAfter<'_> {
    fn layer_start(&self, _: usize, _: &Sha256, _: u64, _: u64) {}
    fn layer_advance(&self, _: usize, bytes: u64) {
        if self.seen.fetch_add(bytes, Ordering::Relaxed) + bytes >= self.after {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
    fn layer_done(&self, _: usize) {}
}

#[test]
fn an_interrupted_pull_resumes_from_the_bytes_on_disk() {
    let registry = Registry::start(false);
    let image = Image::new(&[layer("big", 7, 4 << 20)], Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &image, "big");
    let reference = registry.reference("big:1");
    source.push("big", &reference, &push_options()).unwrap();

    let target = store(&tmp.path().join("b"));
    let cancel = AtomicBool::new(false);
    let progress = CancelAfter {
        cancel: &cancel,
        seen: AtomicU64::new(0),
        after: 64 << 10,
    };
    let options = PullOptions {
        progress: Some(&progress),
        cancel: Some(&cancel),
        ..pull_options()
    };
    let err = target.pull(&reference, &options).unwrap_err();
    assert!(matches!(err, RegistryError::Cancelled { .. }), "{err}");
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
    assert!(
        registry.log().contains("206"),
        "no partial content served:\n{}",
        registry.log()
    );
    assert_exports(&target, &reference, &image);
}

#[test]
fn a_killed_pull_resumes() {
    // Interrupting by SIGKILL mid-blob needs a stall the test can observe without sleeping:
    // the library's cancel seam (above) covers it; here a leftover partial file from a killed
    // process (written by hand, a prefix of the blob) is resumed just the same.
    let registry = Registry::start(false);
    let image = Image::new(&[layer("k", 9, 1 << 20)], Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &image, "k");
    let reference = registry.reference("k:1");
    source.push("k", &reference, &push_options()).unwrap();
    let target = store(&tmp.path().join("b"));
    let pull_dir = target.root().join("tmp/pull");
    fs::create_dir_all(&pull_dir).unwrap();
    let half = image.blobs[0].len() / 2;
    fs::write(
        pull_dir.join(&fixtures::sha256(&image.blobs[0])[7..]),
        &image.blobs[0][..half],
    )
    .unwrap();
    let report = target.pull(&reference, &pull_options()).unwrap();
    assert_eq!(report.bytes_resumed, half as u64);
    assert_exports(&target, &reference, &image);
}

#[test]
fn a_corrupt_partial_download_is_refused_and_discarded() {
    let registry = Registry::start(false);
    let image = Image::new(&[layer("c", 11, 1 << 20)], Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &image, "c");
    let reference = registry.reference("c:1");
    source.push("c", &reference, &push_options()).unwrap();
    let target = store(&tmp.path().join("b"));
    let pull_dir = target.root().join("tmp/pull");
    fs::create_dir_all(&pull_dir).unwrap();
    let partial = pull_dir.join(&fixtures::sha256(&image.blobs[0])[7..]);
    let mut wrong = image.blobs[0][..1000].to_vec();
    wrong[500] ^= 0xff;
    fs::write(&partial, &wrong).unwrap();
    let err = target.pull(&reference, &pull_options()).unwrap_err();
    assert!(matches!(err, RegistryError::Layer { .. }), "{err}");
    assert!(target.images().unwrap().is_empty());
    assert!(!partial.exists(), "bytes that failed to verify were kept");
    // A second pull starts over and succeeds.
    target.pull(&reference, &pull_options()).unwrap();
    assert_exports(&target, &reference, &image);
}

#[test]
fn parallel_pulls_of_images_sharing_layers_leave_a_clean_store() {
    let registry = Registry::start(false);
    let base = Image::new(&base_layers(), Comp::Gzip);
    let app = Image::new(&app_layers(), Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &base, "base");
    import(&source, &app, "app");
    source
        .push("base", &registry.reference("base:1"), &push_options())
        .unwrap();
    source
        .push("app", &registry.reference("app:1"), &push_options())
        .unwrap();

    let root = tmp.path().join("b");
    std::thread::scope(|s| {
        for name in ["base:1", "app:1"] {
            let root = &root;
            let registry = &registry;
            s.spawn(move || {
                // One handle per thread, as two processes would have.
                store(root)
                    .pull(&registry.reference(name), &pull_options())
                    .unwrap()
            });
        }
    });
    let target = store(&root);
    let fsck = target.fsck(FsckOptions::default()).unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
    assert_exports(&target, &registry.reference("base:1"), &base);
    assert_exports(&target, &registry.reference("app:1"), &app);
}

#[test]
fn a_blob_the_registry_serves_wrong_is_refused_with_nothing_visible() {
    let registry = Registry::start(false);
    let image = Image::new(&base_layers(), Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &image, "img");
    let reference = registry.reference("img:1");
    source.push("img", &reference, &push_options()).unwrap();
    // Same length, one byte flipped, in the registry's own storage.
    let digest = fixtures::sha256(&image.blobs[1]);
    let path = registry.blob_path(&digest);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&path, bytes).unwrap();

    let target = store(&tmp.path().join("b"));
    let err = target.pull(&reference, &pull_options()).unwrap_err();
    match &err {
        RegistryError::Layer { digest: d, .. } => assert_eq!(*d, digest),
        other => panic!("unexpected error {other}"),
    }
    assert!(target.images().unwrap().is_empty());
    assert!(
        target.layers().unwrap().is_empty(),
        "a layer became visible"
    );
    assert!(!target.root().join("tmp/pull").join(&digest[7..]).exists());
}

#[test]
fn basic_auth_is_required_and_used() {
    let registry = Registry::start(true);
    let image = Image::new(&[layer("auth", 5, 64 << 10)], Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &image, "auth");
    let reference = registry.reference("private/auth:1");
    let err = source
        .push("auth", &reference, &push_options())
        .unwrap_err();
    assert!(matches!(err, RegistryError::Registry { .. }), "{err}");

    let connection = Connection {
        auth: Auth::Basic {
            username: server::USER.into(),
            password: server::PASSWORD.into(),
        },
        insecure: true,
    };
    let push = PushOptions {
        connection: connection.clone(),
        ..PushOptions::default()
    };
    source.push("auth", &reference, &push).unwrap();
    let target = store(&tmp.path().join("b"));
    assert!(target.pull(&reference, &pull_options()).is_err());
    let pull = PullOptions {
        connection,
        ..PullOptions::default()
    };
    target.pull(&reference, &pull).unwrap();
    assert_exports(&target, &reference, &image);
}

#[test]
fn push_mounts_blobs_from_another_repository() {
    let registry = Registry::start(false);
    let image = Image::new(&base_layers(), Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &image, "img");
    source
        .push("img", &registry.reference("one:1"), &push_options())
        .unwrap();
    let options = PushOptions {
        mount_from: Some("one".into()),
        ..push_options()
    };
    let report = source
        .push("img", &registry.reference("two:1"), &options)
        .unwrap();
    let outcomes: Vec<BlobOutcome> = report.blobs.iter().map(|b| b.outcome).collect();
    // Layers mounted; the config is uploaded (it is small and not mounted).
    assert_eq!(outcomes[..2], [BlobOutcome::Mounted, BlobOutcome::Mounted]);
    let fresh = store(&tmp.path().join("b"));
    fresh
        .pull(&registry.reference("two:1"), &pull_options())
        .unwrap();
    assert_exports(&fresh, &registry.reference("two:1"), &image);
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is needed");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skopeo_copies_what_strata_pushed_and_strata_pulls_what_skopeo_pushed() {
    let registry = Registry::start(false);
    let image = Image::new(&app_layers(), Comp::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let source = store(&tmp.path().join("a"));
    import(&source, &image, "app");
    source
        .push("app", &registry.reference("by-strata:1"), &push_options())
        .unwrap();

    let layout = tmp.path().join("skopeo-layout");
    let src = format!("docker://{}", registry.reference("by-strata:1"));
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

    let original = tmp.path().join("original");
    image.write_oci(&original, "app");
    let src = format!("oci:{}:app", original.display());
    let dst = format!("docker://{}", registry.reference("by-skopeo:1"));
    skopeo(&["copy", "--dest-tls-verify=false", &src, &dst]);
    let target = store(&tmp.path().join("b"));
    target
        .pull(&registry.reference("by-skopeo:1"), &pull_options())
        .unwrap();
    assert_exports(&target, &registry.reference("by-skopeo:1"), &image);
}

#[test]
fn bad_references_and_missing_images_name_what_is_wrong() {
    let registry = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let target = store(tmp.path());
    let err = target.pull("has spaces/x", &pull_options()).unwrap_err();
    assert!(matches!(err, RegistryError::BadReference { .. }), "{err}");
    let reference = registry.reference("nothing:here");
    let err = target.pull(&reference, &pull_options()).unwrap_err();
    assert!(err.to_string().contains(&reference), "{err}");
    let err = target
        .push("nope", &reference, &push_options())
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Store(e) if matches!(**e, StoreError::ImageNotFound { .. })),
        "{err}"
    );
}

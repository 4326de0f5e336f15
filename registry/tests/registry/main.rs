//! Pull and push against a real registry (Debian's `docker-registry` on 127.0.0.1), and
//! `skopeo` as a peer. Laid out like `src/`: `pull`, `push`, `auth` (basic and bearer-token),
//! `platform` (image indexes), `errors` (what a user is told), `runtime` (the async API and the
//! blocking wrapper, inside and outside a tokio runtime).

mod auth;
mod errors;
#[allow(dead_code)]
#[path = "../../../layer-store/tests/store/fixtures.rs"]
mod fixtures;
mod index;
mod platform;
mod pull;
mod push;
mod runtime;

use strata_testkit::registry::{self as server, token};

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fixtures::{Comp, Image, Item};
use server::{Access, Registry};
use strata_layer_store::{Durability, ImportOptions, Store};
use strata_registry::{
    Connection, PullError, PullOptions, PullReport, PushError, PushOptions, PushReport, blocking,
};

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

/// A one-layer gzip image of `big` bytes of noise.
fn single(name: &str, seed: u64, big: usize) -> Image {
    Image::new(&[layer(name, seed, big)], Comp::Gzip)
}

fn base_image() -> Image {
    Image::new(
        &[layer("base", 1, 1 << 20), layer("lib", 2, 512 << 10)],
        Comp::Gzip,
    )
}

/// The base image's layers and one more on top.
fn app_image() -> Image {
    Image::new(
        &[
            layer("base", 1, 1 << 20),
            layer("lib", 2, 512 << 10),
            layer("app", 3, 2 << 20),
        ],
        Comp::Gzip,
    )
}

fn store(dir: &Path) -> TestStore {
    let store = Arc::new(Store::open(dir).unwrap().with_durability(Durability::None));
    TestStore {
        client: blocking::Client::new(store.clone()),
        store,
    }
}

/// A store with the blocking registry client at hand, so a test reads `store.pull(…)`.
struct TestStore {
    store: Arc<Store>,
    client: blocking::Client,
}

impl TestStore {
    fn pull(&self, reference: &str, options: &PullOptions) -> Result<PullReport, PullError> {
        self.client.pull(reference, options)
    }

    fn push(
        &self,
        image: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<PushReport, PushError> {
        self.client.push(image, reference, options)
    }
}

impl Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

fn insecure() -> Connection {
    Connection::default().with_insecure(true)
}

fn pull_options() -> PullOptions {
    PullOptions::default().with_connection(insecure())
}

fn push_options() -> PushOptions {
    PushOptions::default().with_connection(insecure())
}

/// A registry, and a temp dir of stores: `source` publishes images to the registry, and
/// [`World::store`] makes fresh ones to pull into.
struct World {
    registry: Registry,
    tmp: tempfile::TempDir,
    source: TestStore,
}

impl World {
    /// A registry open to everyone; `None` (the test skips, saying why) without docker-registry.
    fn new() -> Option<World> {
        World::with_access(Access::Open)
    }

    /// A registry open to `access`; `None` (the test skips, saying why) when a tool it needs is
    /// missing.
    fn with_access(access: Access<'_>) -> Option<World> {
        let registry = Registry::start_if_installed(access)?;
        let tmp = tempfile::tempdir().unwrap();
        let source = store(&tmp.path().join("source"));
        Some(World {
            registry,
            tmp,
            source,
        })
    }

    /// `127.0.0.1:PORT/repo`.
    fn reference(&self, repo: &str) -> String {
        self.registry.reference(repo)
    }

    /// Imports `image` into the source store as `name` and pushes it to `name:1`; returns
    /// that reference.
    fn publish(&self, image: &Image, name: &str) -> String {
        self.import(image, name);
        let reference = self.reference(&format!("{name}:1"));
        self.push(name, &reference).unwrap();
        reference
    }

    /// Pushes image `name` of the source store to `reference`, anonymously.
    fn push(&self, name: &str, reference: &str) -> Result<PushReport, PushError> {
        self.source.push(name, reference, &push_options())
    }

    /// Imports `image` (written as an OCI layout) into the source store as `name`.
    fn import(&self, image: &Image, name: &str) {
        let dir = tempfile::tempdir().unwrap();
        image.write_oci(dir.path(), name);
        let options = ImportOptions::default().with_name(Some(name.to_owned()));
        self.source.import(dir.path(), &options).unwrap();
    }

    /// The root of store `name` under the temp dir.
    fn root(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A handle on store `name` under the temp dir (created empty the first time).
    fn store(&self, name: &str) -> TestStore {
        store(&self.root(name))
    }
}

/// Asserts the OCI layout `store` exports for `name` holds exactly `image`'s blobs.
/// Every blob of `report` was in the registry already: nothing went up.
fn assert_all_present(report: &strata_registry::PushReport) {
    assert!(
        report
            .blobs
            .iter()
            .all(|b| b.outcome == strata_registry::BlobOutcome::Present),
        "{report:?}"
    );
}

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

//! Pull from a loopback registry (Debian's `docker-registry`): Strata into an empty store, and
//! into a store holding the base layer, against `skopeo copy` of the same image to an OCI
//! layout dir (which only writes blobs; Strata also unpacks into deduplicated objects).
//!
//! The image is the two-layer OCI layout made by `layer-store/scripts/make-bench-image.py`
//! (`STRATA_BENCH_IMAGE`, default `/work/reg-bench-img`); skipped with a message when absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use strata_layer_store::{Durability, GcOptions, ImportOptions, Store};
use strata_registry::{PullOptions, blocking};
use strata_testkit::registry as server;

fn skopeo(args: &[&str]) {
    let status = Command::new("skopeo").args(args).status().unwrap();
    assert!(status.success(), "skopeo {args:?}");
}

fn store(root: &Path) -> Arc<Store> {
    Arc::new(Store::open(root).unwrap().with_durability(Durability::None))
}

/// The registry is on loopback: plain HTTP without asking.
fn options() -> PullOptions {
    PullOptions::default()
}

fn pull(c: &mut Criterion) {
    let images = PathBuf::from(
        std::env::var("STRATA_BENCH_IMAGE").unwrap_or_else(|_| "/work/reg-bench-img".into()),
    );
    if !images.join("two-layer/index.json").exists() {
        eprintln!(
            "skipping registry benches: no {}",
            images.join("two-layer").display()
        );
        return;
    }
    let registry = server::Registry::start(server::Access::Open);
    let reference = registry.reference("bench:1");
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:bench:latest", images.join("two-layer").display()),
        &format!("docker://{reference}"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("registry_pull");
    group.sample_size(10);

    group.bench_function("skopeo_copy_to_oci_dir", |b| {
        b.iter_batched(
            || tmp.path().join(format!("skopeo-{}", unique())),
            |dir| {
                skopeo(&[
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    &format!("docker://{reference}"),
                    &format!("oci:{}:x", dir.display()),
                ]);
                std::fs::remove_dir_all(dir).unwrap();
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("strata_pull_empty_store", |b| {
        b.iter_batched(
            || tmp.path().join(format!("store-{}", unique())),
            |root| {
                let report = blocking::Client::new(store(&root))
                    .pull(&reference, &options())
                    .unwrap();
                assert_eq!(report.bytes_present, 0);
                std::fs::remove_dir_all(root).unwrap();
            },
            BatchSize::PerIteration,
        )
    });

    // A store holding the base image: only the top layer moves.
    let base_root = tmp.path().join("with-base");
    let with_base = store(&base_root);
    let client = blocking::Client::new(with_base.clone());
    let import = ImportOptions::default().with_name(Some("base".into()));
    with_base.import(&images.join("base"), &import).unwrap();
    group.bench_function("strata_pull_base_present", |b| {
        b.iter_batched(
            || {
                // Forget the previous pull's top layer; the base stays.
                let _ = with_base.remove_image(&reference);
                with_base.gc(GcOptions::default()).unwrap();
            },
            |()| {
                let report = client.pull(&reference, &options()).unwrap();
                assert!(report.bytes_present > 0, "the base layer was fetched again");
                eprintln!(
                    "fetched {} B, present {} B",
                    report.bytes_fetched, report.bytes_present
                );
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The floor of any pull that verifies and unpacks, with no network and no filesystem: per
/// layer, sha256 of the compressed blob, gzip inflate, sha256 of the tar (the diff_id) and
/// blake3 of the content (the object names), each layer on its own thread, from memory. gzip
/// inflate is sequential within a stream, so on 2 cores no pull can finish faster than this.
fn verify_floor(c: &mut Criterion) {
    let images = PathBuf::from(
        std::env::var("STRATA_BENCH_IMAGE").unwrap_or_else(|_| "/work/reg-bench-img".into()),
    );
    let blobs = images.join("two-layer/blobs/sha256");
    let Ok(entries) = std::fs::read_dir(&blobs) else {
        eprintln!("skipping the pull floor: no {}", blobs.display());
        return;
    };
    let layers: Vec<Vec<u8>> = entries
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .filter(|blob| blob.starts_with(&[0x1f, 0x8b]))
        .collect();
    let mut group = c.benchmark_group("registry_pull");
    group.sample_size(10);
    group.bench_function("floor_verify_and_inflate_in_memory", |b| {
        b.iter(|| {
            std::thread::scope(|threads| {
                for blob in &layers {
                    threads.spawn(|| verify_and_inflate(blob));
                }
            })
        })
    });
    group.finish();
}

fn verify_and_inflate(blob: &[u8]) -> [[u8; 32]; 3] {
    use sha2::Digest;
    use std::io::Read;
    let digest = sha2::Sha256::digest(blob);
    let mut tar = flate2::read::GzDecoder::new(blob);
    let mut diff_id = sha2::Sha256::new();
    let mut content = blake3::Hasher::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = tar.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        diff_id.update(&buf[..n]);
        content.update(&buf[..n]);
    }
    [
        digest.into(),
        diff_id.finalize().into(),
        *content.finalize().as_bytes(),
    ]
}

criterion_group!(benches, pull, verify_floor);
criterion_main!(benches);

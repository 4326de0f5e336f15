//! Layer store benchmarks, each with its baseline in the same run:
//! - `import`: Strata's import of a gzip and a zstd layer (MB/s of compressed input) against
//!   decompressing and unpacking the same blob with the `tar` crate (what a plain unpacker does).
//! - `import-materialized`: import + materialize in one pass against import, then materialize.
//! - `export`: rebuilding and compressing a layer blob against compressing the same tar from
//!   memory.
//! - `materialize`: stub and hardlink trees against the copy strategy.
//! - `hardlink-chain`: importing N hard links, each naming the one before (a hostile layer that
//!   took quadratic time), against importing N empty files: both must grow linearly with N.

use std::fs;
use std::io::Write;
use std::path::Path;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_layer_store::{Durability, Store, Strategy};

/// A layer tar shaped like a rootfs: many small files, a few large ones, some repeated content.
fn rootfs_tar(files: u32) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut state = 7u64;
    for i in 0..files {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let size = match state >> 60 {
            0 => 1 << 20,                             // a few large files
            1..=5 => 16 << 10,                        // some medium
            _ => 200 + (state >> 52) as usize % 4000, // mostly small
        };
        // Text-like bytes (compresses about 3:1); every 8th file repeats another's content.
        let mut x = if i % 8 == 0 { 1 } else { u64::from(i) * 2 + 1 };
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                const TEXT: &[u8] = b"etaoinshrdlu cmfwypvbgkqjxz\n/._-0123456789ETAOINSHRDLU";
                TEXT[(x >> 40) as usize % TEXT.len()]
            })
            .collect();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, format!("usr/lib/d{}/f{i}", i % 50), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(tar).unwrap();
    e.finish().unwrap()
}

fn fresh_store(dir: &Path) -> Store {
    let _ = fs::remove_dir_all(dir);
    Store::open(dir).unwrap().with_durability(Durability::None)
}

fn import(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(1500);
    let mut group = c.benchmark_group("import");
    for (name, blob) in [
        ("gzip", gzip(&tar)),
        ("zstd", zstd::bulk::compress(&tar, 3).unwrap()),
    ] {
        let path = tmp.path().join(format!("layer.{name}"));
        fs::write(&path, &blob).unwrap();
        group.throughput(Throughput::Bytes(blob.len() as u64));
        group.bench_function(BenchmarkId::new("strata", name), |b| {
            b.iter_batched(
                || fresh_store(&tmp.path().join("store")),
                |store| store.import(&path, &Default::default()).unwrap(),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("tar-unpack", name), |b| {
            let dest = tmp.path().join("unpacked");
            b.iter_batched(
                || {
                    let _ = fs::remove_dir_all(&dest);
                },
                |()| {
                    let reader: Box<dyn std::io::Read> = if name == "gzip" {
                        Box::new(flate2::read::GzDecoder::new(&blob[..]))
                    } else {
                        Box::new(zstd::stream::read::Decoder::new(&blob[..]).unwrap())
                    };
                    tar::Archive::new(reader).unpack(&dest).unwrap()
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Import and materialize in one call (stub trees built while the objects are flushed and
/// published) against the same import followed by `materialize`, a second pass with its own
/// sync and commit.
fn import_materialized(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("layer.gzip");
    fs::write(&path, gzip(&rootfs_tar(1500))).unwrap();
    let strategy = strata_layer_store::probe_strategy();
    let mut group = c.benchmark_group("import-materialized");
    group.throughput(Throughput::Elements(1500));
    group.bench_function(BenchmarkId::new("one-pass", strategy.name()), |b| {
        b.iter_batched(
            || fresh_store(&tmp.path().join("store")),
            |store| {
                store
                    .import_materialized(&path, &Default::default(), Some(strategy))
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(
        BenchmarkId::new("import-then-materialize", strategy.name()),
        |b| {
            b.iter_batched(
                || fresh_store(&tmp.path().join("store")),
                |store| {
                    let report = store.import(&path, &Default::default()).unwrap();
                    store
                        .materialize(&report.layers[0].id, Some(strategy))
                        .unwrap()
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();
}

fn export(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(1500);
    let mut group = c.benchmark_group("export");
    group.throughput(Throughput::Bytes(tar.len() as u64));
    for (name, blob) in [
        ("gzip", gzip(&tar)),
        ("zstd", zstd::bulk::compress(&tar, 3).unwrap()),
    ] {
        let store = fresh_store(&tmp.path().join(format!("store-{name}")));
        let path = tmp.path().join(format!("layer.{name}"));
        fs::write(&path, &blob).unwrap();
        let report = store.import(&path, &Default::default()).unwrap();
        let record = store.layer_record(&report.layers[0].id).unwrap();
        group.bench_function(BenchmarkId::new("strata", name), |b| {
            b.iter(|| {
                store
                    .write_layer_blob(&record, &record.blob_digest, std::io::sink())
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("compress-from-memory", name), |b| {
            b.iter(|| {
                if name == "gzip" {
                    gzip(&tar).len()
                } else {
                    zstd::bulk::compress(&tar, 3).unwrap().len()
                }
            })
        });
    }
    group.finish();
}

fn materialize(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(1500);
    let path = tmp.path().join("layer.tar");
    fs::write(&path, &tar).unwrap();
    let store = fresh_store(&tmp.path().join("store"));
    let id = store.import(&path, &Default::default()).unwrap().layers[0]
        .id
        .clone();
    let root = rustix::process::geteuid().is_root();
    let mut group = c.benchmark_group("materialize");
    group.throughput(Throughput::Elements(1500));
    for strategy in [Strategy::Stub, Strategy::Hardlink, Strategy::Copy] {
        if strategy == Strategy::Stub && !root {
            continue;
        }
        group.bench_function(BenchmarkId::from_parameter(strategy.name()), |b| {
            // Alternate with another strategy so every iteration builds a fresh tree.
            let other = if strategy == Strategy::Copy {
                Strategy::Hardlink
            } else {
                Strategy::Copy
            };
            b.iter_batched(
                || store.materialize(&id, Some(other)).unwrap(),
                |_| store.materialize(&id, Some(strategy)).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn hardlink_chain(c: &mut Criterion) {
    use strata_testkit::hostile;
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("hardlink-chain");
    group.sample_size(10);
    for n in [20_000usize, 80_000, 160_000] {
        group.throughput(Throughput::Elements(n as u64));
        for (kind, tar) in [
            ("links", hostile::hardlink_chain(n)),
            ("files", hostile::many_entries(n)),
        ] {
            let layer = dir.path().join(format!("{kind}-{n}.tar"));
            fs::write(&layer, tar).unwrap();
            let root = dir.path().join("store");
            group.bench_function(BenchmarkId::new(kind, n), |b| {
                b.iter_batched(
                    || fresh_store(&root),
                    |store| store.import(&layer, &Default::default()).unwrap(),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    import,
    import_materialized,
    export,
    materialize,
    hardlink_chain
);
criterion_main!(benches);

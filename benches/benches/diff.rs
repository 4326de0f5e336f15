//! Diff throughput: `changes`, the overlay upper-dir path, the layer writer and the applier,
//! over a generated base → app pair shaped like Debian minbase and, when `STRATA_BENCH_ROOTFS`
//! names a dir made by `make-debian-rootfs.sh DEST python3 python3-pip`, over the real pair.
//!
//! Every group carries its baseline in the same run: the sequential walk against rayon on all
//! cores, the sequential writer against the overlapped one, and GNU tar for writing and
//! extracting the same layer.
//!
//! `changes` also runs its floor (`floor-seq`, `floor-rayon-N`): the system calls the pair
//! needs and nothing else (see `diff/floor.rs`).
//!
//! `STRATA_BENCH_SCALE` (default 1.0) scales the generated trees.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "diff/cpu.rs"]
mod cpu;
#[path = "diff/floor.rs"]
mod floor;

use criterion::measurement::Measurement;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use strata_benches::{Edits, Profile, Shape, generate, mutate};
use strata_diff::{
    ApplyOptions, ChangeKind, ChangeSet, Compression, ContentCheck, DiffOptions, Threads,
    WriteOptions,
};

/// An old → new pair of trees.
struct Pair {
    name: &'static str,
    old: PathBuf,
    new: PathBuf,
    /// Entries of the new tree.
    entries: u64,
    /// An overlay upper dir holding the same change, over `old` as the only lower (root only).
    upper: Option<PathBuf>,
}

struct Fixtures {
    _scratch: tempfile::TempDir,
    pairs: Vec<Pair>,
    /// The floor of `changes` for each pair, by pair name.
    floors: HashMap<&'static str, floor::Plan>,
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn options(threads: Threads) -> DiffOptions {
    DiffOptions::default()
        .with_content(ContentCheck::Ambiguous)
        .with_threads(threads)
}

fn count_entries(root: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        n += 1;
        if e.file_type().unwrap().is_dir() {
            n += count_entries(&e.path());
        }
    }
    n
}

impl Fixtures {
    fn new() -> Fixtures {
        let scratch = tempfile::Builder::new()
            .prefix("strata-bench-")
            .tempdir()
            .unwrap();
        let s = scratch.path();
        let mut pairs = Vec::new();
        let scale = std::env::var("STRATA_BENCH_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0);
        let profile = Profile::debian_minbase();
        let shape = Shape { seed: 1, scale };
        let (old, new) = (s.join("gen-old"), s.join("gen-new"));
        for dir in [&old, &new] {
            std::fs::create_dir(dir).unwrap();
            generate(dir, &profile, &shape).unwrap();
        }
        mutate(&new, &profile, &Edits::build_step(2, scale)).unwrap();
        let upper = make_upper(s, "gen", &old, |merged| {
            mutate(merged, &profile, &Edits::build_step(2, scale)).map(drop)
        });
        pairs.push(Pair {
            name: "generated",
            entries: count_entries(&new),
            old,
            new,
            upper,
        });
        if let Some(rootfs) = std::env::var_os("STRATA_BENCH_ROOTFS").map(PathBuf::from) {
            let (old, new) = (rootfs.join("base"), rootfs.join("app"));
            let layer = layer_bytes(
                &strata_diff::changes(&old, &new, &DiffOptions::default()).unwrap(),
                Compression::None,
            );
            let upper = make_upper(s, "real", &old, |merged| {
                strata_diff::apply_layer(&layer[..], merged, &ApplyOptions::default())
                    .map(drop)
                    .map_err(io::Error::other)
            });
            pairs.push(Pair {
                name: "debian-base-to-python",
                entries: count_entries(&new),
                old,
                new,
                upper,
            });
        }
        let floors = pairs
            .iter()
            .map(|p| (p.name, floor::Plan::new(&p.old, &p.new)))
            .collect();
        Fixtures {
            _scratch: scratch,
            pairs,
            floors,
        }
    }
}

/// Mounts an overlay of `lower` with a fresh upper, lets `work` change it through the mount,
/// unmounts it, and returns the upper dir. `None` when this process cannot mount.
fn make_upper(
    scratch: &Path,
    name: &str,
    lower: &Path,
    work: impl FnOnce(&Path) -> io::Result<()>,
) -> Option<PathBuf> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: skipping the upper-dir benches");
        return None;
    }
    let [upper, workdir, merged] =
        ["upper", "work", "merged"].map(|d| scratch.join(format!("{name}-{d}")));
    for d in [&upper, &workdir, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let guard = strata_cow::overlay::Overlay::new()
        .lower(lower)
        .upper(&upper, &workdir)
        .mount_at(&merged)
        .unwrap();
    work(&merged).unwrap();
    guard.unmount().unwrap();
    Some(upper)
}

fn layer_bytes(set: &ChangeSet, compression: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    strata_diff::write_layer(set, &WriteOptions::new(compression), &mut out).unwrap();
    out
}

fn data_bytes(set: &ChangeSet) -> u64 {
    set.changes
        .iter()
        .filter_map(|c| c.meta.as_ref())
        .map(|m| m.size)
        .sum()
}

/// `Sequential` and rayon on `threads()` workers.
fn thread_variants() -> Vec<(String, Option<rayon::ThreadPool>)> {
    let n = threads();
    let mut v = vec![("seq".to_owned(), None)];
    v.push((
        format!("rayon-{n}"),
        Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap(),
        ),
    ));
    v
}

fn run_on<T: Send>(pool: &Option<rayon::ThreadPool>, f: impl FnOnce(Threads) -> T + Send) -> T {
    match pool {
        None => f(Threads::Sequential),
        Some(pool) => pool.install(|| f(Threads::Rayon)),
    }
}

/// `changes` and its floor, timed by `M`: wall time (`changes`) or process CPU time
/// (`changes_cpu`, which a busy machine disturbs less).
fn bench_changes<M: Measurement>(c: &mut Criterion<M>, name: &str, fx: &Fixtures) {
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    for pair in &fx.pairs {
        group.throughput(Throughput::Elements(pair.entries));
        for (label, pool) in thread_variants() {
            group.bench_function(BenchmarkId::new(pair.name, &label), |b| {
                b.iter(|| {
                    run_on(&pool, |t| {
                        strata_diff::changes(&pair.old, &pair.new, &options(t)).unwrap()
                    })
                })
            });
        }
        let plan = &fx.floors[pair.name];
        for (label, pool) in thread_variants() {
            let id = BenchmarkId::new(pair.name, format!("floor-{label}"));
            group.bench_function(id, |b| {
                b.iter(|| run_on(&pool, |t| plan.run(t == Threads::Rayon)))
            });
        }
    }
    group.finish();
}

fn bench_upper(c: &mut Criterion, fx: &Fixtures) {
    let mut group = c.benchmark_group("upper_changes");
    group.sample_size(20);
    for pair in &fx.pairs {
        let Some(upper) = &pair.upper else { continue };
        group.throughput(Throughput::Elements(count_entries(upper)));
        for (label, pool) in thread_variants() {
            group.bench_function(BenchmarkId::new(pair.name, &label), |b| {
                b.iter(|| {
                    run_on(&pool, |t| {
                        strata_diff::upper_changes(&[&pair.old], upper, &options(t)).unwrap()
                    })
                })
            });
        }
    }
    group.finish();
}

fn bench_write(c: &mut Criterion, fx: &Fixtures) {
    let mut group = c.benchmark_group("write");
    group.sample_size(10);
    for pair in &fx.pairs {
        let set = strata_diff::changes(&pair.old, &pair.new, &DiffOptions::default()).unwrap();
        group.throughput(Throughput::Bytes(data_bytes(&set)));
        // `tar` overlaps reading with hashing on a second thread; `tar/seq` is its 1-thread
        // baseline.
        for (label, compression, threads) in [
            ("tar/seq", Compression::None, Threads::Sequential),
            ("tar", Compression::None, Threads::Rayon),
            ("tar+zstd", Compression::Zstd, Threads::Rayon),
        ] {
            let options = WriteOptions::new(compression).with_threads(threads);
            group.bench_function(BenchmarkId::new(pair.name, label), |b| {
                b.iter(|| strata_diff::write_layer(&set, &options, io::sink()).unwrap())
            });
        }
        // Baseline: GNU tar archiving the same entries (no whiteouts, which tar cannot make).
        let list: Vec<u8> = set
            .changes
            .iter()
            .filter(|c| c.kind != ChangeKind::Deleted)
            .flat_map(|c| {
                [
                    std::os::unix::ffi::OsStrExt::as_bytes(c.path.as_os_str()),
                    b"\0",
                ]
                .concat()
            })
            .collect();
        group.bench_function(BenchmarkId::new(pair.name, "gnu-tar-c"), |b| {
            b.iter(|| gnu_tar_create(&pair.new, &list))
        });
    }
    group.finish();
}

/// `tar -c` of the NUL-separated `list` under `root`, its output read and discarded.
fn gnu_tar_create(root: &Path, list: &[u8]) -> u64 {
    let mut child = Command::new("tar")
        .current_dir(root)
        .args([
            "--create",
            "--file=-",
            "--xattrs",
            "--no-recursion",
            "--null",
            "--files-from=-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let list = list.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&list));
    let n = io::copy(&mut child.stdout.take().unwrap(), &mut io::sink()).unwrap();
    feeder.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    n
}

fn bench_apply(c: &mut Criterion, fx: &Fixtures) {
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    for pair in &fx.pairs {
        // The whole new tree as one layer, extracted into an empty dir.
        let empty = tempfile::tempdir().unwrap();
        let set = strata_diff::changes(empty.path(), &pair.new, &DiffOptions::default()).unwrap();
        let layer = layer_bytes(&set, Compression::None);
        group.throughput(Throughput::Bytes(data_bytes(&set)));
        // Extract into memory (tmpfs) so that disk writeback, shared with everything else on
        // the machine, does not decide the race; STRATA_BENCH_APPLY_DIR picks another place.
        let scratch = std::env::var_os("STRATA_BENCH_APPLY_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/shm"));
        let target = || {
            tempfile::Builder::new()
                .prefix("strata-apply-")
                .tempdir_in(&scratch)
                .unwrap()
        };
        group.bench_function(BenchmarkId::new(pair.name, "strata"), |b| {
            b.iter_batched(
                target,
                |dir| {
                    strata_diff::apply_layer(&layer[..], dir.path(), &ApplyOptions::default())
                        .unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new(pair.name, "gnu-tar-x"), |b| {
            b.iter_batched(
                target,
                |dir| {
                    gnu_tar_extract(dir.path(), &layer);
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn gnu_tar_extract(dir: &Path, layer: &[u8]) {
    let mut child = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xf", "-", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(layer).unwrap();
    assert!(child.wait().unwrap().success());
}

fn main() {
    let fixtures = Fixtures::new();
    let mut c = Criterion::default().configure_from_args();
    bench_changes(&mut c, "changes", &fixtures);
    let mut cpu = Criterion::default()
        .with_measurement(cpu::ProcessCpu)
        .configure_from_args();
    bench_changes(&mut cpu, "changes_cpu", &fixtures);
    bench_upper(&mut c, &fixtures);
    bench_write(&mut c, &fixtures);
    bench_apply(&mut c, &fixtures);
    c.final_summary();
}

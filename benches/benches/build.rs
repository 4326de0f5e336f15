//! `strata build` of a two-stage Dockerfile on a busybox image (RUN, COPY, COPY --from): a
//! first build (`--no-cache`), a rebuild with nothing changed (every step from the cache: no
//! runc, no diff), and a rebuild after a one-file change of the context (the steps from that
//! COPY on run again), in the same run. Needs root, runc and busybox-static; skips otherwise.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use strata_build::{BuildOptions, Builder, Quiet};
use strata_layer_store::{Durability, ImportOptions, Store};

use strata_testkit::busybox::MULTI_STAGE_DOCKERFILE as DOCKERFILE;

fn ready() -> bool {
    let root = rustix::process::geteuid().is_root();
    let tools = ["runc", "busybox"].iter().all(|t| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join(t).is_file())
    });
    if !(root && tools) {
        eprintln!("skipped: building needs root, runc and busybox-static");
    }
    root && tools
}

fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = dir.join("store");
    let layout = dir.join("busybox");
    strata_testkit::busybox::busybox_layout(&layout);
    let options = ImportOptions::default().with_name(Some("busybox".into()));
    Store::open(&root)
        .expect("store")
        .import(&layout, &options)
        .expect("import busybox");
    let context = dir.join("context");
    fs::create_dir(&context).expect("context");
    fs::write(context.join("Dockerfile"), DOCKERFILE).expect("Dockerfile");
    fs::write(context.join("app.txt"), "world").expect("app.txt");
    (root, context)
}

fn build(c: &mut Criterion) {
    if !ready() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("strata-bench-build-")
        .tempdir()
        .expect("temp dir");
    let (root, context) = setup(tmp.path());
    let builder = Builder::open(&root, Durability::Immediate).expect("builder");
    let mut options = BuildOptions::default();
    options.tags.push("app:1".into());
    builder
        .build(&context, &options, &Quiet)
        .expect("warm-up build");
    let mut no_cache = options.clone();
    no_cache.no_cache = true;

    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter("first"), |b| {
        b.iter(|| builder.build(&context, &no_cache, &Quiet).expect("build"))
    });
    group.bench_function(BenchmarkId::from_parameter("cached"), |b| {
        b.iter(|| builder.build(&context, &options, &Quiet).expect("build"))
    });
    let edits = AtomicU64::new(0);
    group.bench_function(BenchmarkId::from_parameter("one-file-changed"), |b| {
        b.iter_batched(
            || {
                let n = edits.fetch_add(1, Ordering::Relaxed);
                fs::write(context.join("app.txt"), format!("edit {n}")).expect("edit");
            },
            |()| builder.build(&context, &options, &Quiet).expect("build"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);

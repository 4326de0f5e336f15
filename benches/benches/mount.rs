//! Overlay mount latency for 1, 16, 128 and 500 lower layers (plus an upper, as a container
//! gets), through the new mount API (`fsopen` + one `lowerdir+` fd per layer + `fsmount` +
//! `move_mount`) against the legacy `mount(2)` option string (compacted to relative paths, and
//! mounted from a `CLONE_FS` thread, once it outgrows a page). Only the mount is timed; each
//! mount is unmounted outside the timing. Needs root; skips otherwise.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_cow::overlay::{MountApi, Overlay};

const COUNTS: [usize; 4] = [1, 16, 128, 500];

fn mount_latency(c: &mut Criterion) {
    let tmp = tempfile::Builder::new()
        .prefix("strata-bench-mount-")
        .tempdir()
        .expect("temp dir");
    let layers: Vec<PathBuf> = (0..COUNTS[COUNTS.len() - 1])
        .map(|i| {
            let dir = tmp.path().join(format!("layers/{i:03}"));
            fs::create_dir_all(dir.join("etc")).expect("layer dir");
            fs::write(dir.join(format!("etc/layer-{i}")), i.to_string()).expect("layer file");
            dir
        })
        .collect();
    let (upper, work, target) = (
        tmp.path().join("upper"),
        tmp.path().join("work"),
        tmp.path().join("target"),
    );
    for dir in [&upper, &work, &target] {
        fs::create_dir(dir).expect("dir");
    }
    let probe = Overlay::new()
        .lower(&layers[0])
        .upper(&upper, &work)
        .mount_at(&target);
    match probe {
        Ok(guard) => guard.unmount().expect("unmount"),
        Err(err) if err.errno() == Some(strata_cow::Errno::PERM) => {
            eprintln!("skipped: mounting needs root ({err})");
            return;
        }
        Err(err) => panic!("mount: {err}"),
    }

    let mut group = c.benchmark_group("mount");
    for count in COUNTS {
        group.throughput(Throughput::Elements(count as u64));
        for api in [MountApi::New, MountApi::Legacy] {
            let overlay = Overlay::new()
                .lowers(&layers[..count])
                .upper(&upper, &work)
                .api(api);
            group.bench_with_input(
                BenchmarkId::new(format!("{api:?}"), count),
                &overlay,
                |b, overlay| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let start = Instant::now();
                            let guard = overlay.mount_at(&target).expect("mount");
                            total += start.elapsed();
                            guard.unmount().expect("unmount");
                        }
                        total
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, mount_latency);
criterion_main!(benches);

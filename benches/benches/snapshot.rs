//! Snapshot operations per second and latency: the library API, and containerd's snapshots
//! gRPC API served by `strata serve`'s code, with containerd's own overlayfs snapshotter behind
//! the same gRPC API as the baseline (when containerd is installed and we are root).
//!
//! Every Prepare and Commit is durable before it returns (directory fsync + a SQLite commit
//! with `synchronous=FULL`), like containerd's fsync'd bolt transactions.
//!
//! `cargo bench -p strata-benches --bench snapshot`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_snapshotter::grpc::proto::services::snapshots::v1 as pb;
use strata_snapshotter::{Labels, Snapshotter};
use tonic::transport::Channel;

type Client = pb::snapshots_client::SnapshotsClient<Channel>;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Time of `op` alone, `iters` times, each after an untimed `setup`.
fn timed<S>(iters: u64, mut setup: impl FnMut() -> S, mut op: impl FnMut(S)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = setup();
        let start = Instant::now();
        op(input);
        total += start.elapsed();
    }
    total
}

fn library(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let sn = Arc::new(Snapshotter::open(dir.path().join("root")).unwrap());
    sn.prepare("base-a", None, Labels::new()).unwrap();
    sn.commit("base", "base-a", Labels::new()).unwrap();

    let mut g = c.benchmark_group("snapshot/library");
    g.throughput(Throughput::Elements(1));
    g.bench_function("prepare", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || unique("p"),
                |key| {
                    sn.prepare(&key, Some("base"), Labels::new()).unwrap();
                },
            )
        })
    });
    g.bench_function("commit", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || {
                    let key = unique("c");
                    sn.prepare(&key, Some("base"), Labels::new()).unwrap();
                    key
                },
                |key| {
                    sn.commit(&format!("{key}-done"), &key, Labels::new())
                        .unwrap()
                },
            )
        })
    });
    // Baseline: the floor under any durable snapshot op on this file system, one 4 KiB
    // write and a bare `fdatasync`, and nothing else.
    let mut floor = std::fs::File::create(dir.path().join("baseline")).unwrap();
    g.bench_function("baseline/write+fdatasync", |b| {
        use std::io::{Seek, Write};
        let page = [7u8; 4096];
        b.iter(|| {
            floor.seek(std::io::SeekFrom::Start(0)).unwrap();
            floor.write_all(&page).unwrap();
            floor.sync_data().unwrap();
        })
    });
    // Prepare + Commit pairs from several threads: group commit shares the fsyncs.
    for threads in [1usize, 8] {
        let pairs = 16;
        g.throughput(Throughput::Elements((threads * pairs * 2) as u64));
        g.bench_with_input(
            BenchmarkId::new("prepare+commit/threads", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            s.spawn(|| {
                                for _ in 0..pairs {
                                    let key = unique("t");
                                    sn.prepare(&key, Some("base"), Labels::new()).unwrap();
                                    sn.commit(&format!("{key}-done"), &key, Labels::new())
                                        .unwrap();
                                }
                            });
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

/// A process killed (by PID) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.0.wait();
    }
}

/// A target of the gRPC benches: a socket, the snapshotter name and namespace to send.
struct Target {
    name: &'static str,
    socket: PathBuf,
    snapshotter: &'static str,
    namespace: Option<&'static str>,
}

fn request<T>(target: &Target, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(ns) = target.namespace {
        request
            .metadata_mut()
            .insert("containerd-namespace", ns.parse().unwrap());
    }
    request
}

/// containerd's GC removes snapshots without a root label behind our back.
fn gc_root(t: &Target) -> std::collections::HashMap<String, String> {
    t.namespace
        .map(|_| ("containerd.io/gc.root".to_owned(), "bench".to_owned()))
        .into_iter()
        .collect()
}

async fn prepare(client: &mut Client, t: &Target, key: &str, parent: &str) {
    let r = pb::PrepareSnapshotRequest {
        snapshotter: t.snapshotter.into(),
        key: key.into(),
        parent: parent.into(),
        labels: gc_root(t),
    };
    client.prepare(request(t, r)).await.unwrap();
}

async fn commit(client: &mut Client, t: &Target, name: &str, key: &str) {
    let r = pb::CommitSnapshotRequest {
        snapshotter: t.snapshotter.into(),
        name: name.into(),
        key: key.into(),
        labels: gc_root(t),
    };
    client.commit(request(t, r)).await.unwrap();
}

/// A private containerd (own root, state, socket) whose snapshots service fronts its overlayfs
/// snapshotter; `None` when containerd is not installed or we are not root.
fn containerd(dir: &Path) -> Option<(Daemon, PathBuf)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let d = dir.display();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n"
        ),
    )
    .ok()?;
    let mut child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let stderr = child.stderr.take()?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("successfully booted"));
    std::thread::spawn(move || lines.for_each(drop));
    ready.then(|| (Daemon(child), dir.join("containerd.sock")))
}

fn grpc(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let strata_socket = dir.path().join("strata.sock");
    let sn = Arc::new(Snapshotter::open(dir.path().join("strata")).unwrap());
    let listener = rt
        .block_on(async { tokio::net::UnixListener::bind(&strata_socket) })
        .unwrap();
    rt.spawn(strata_snapshotter::grpc::serve(
        sn,
        listener,
        std::future::pending(),
    ));

    let ctrd_dir = dir.path().join("containerd");
    std::fs::create_dir(&ctrd_dir).unwrap();
    let ctrd = containerd(&ctrd_dir);
    let mut targets = vec![Target {
        name: "strata",
        socket: strata_socket,
        snapshotter: "strata",
        namespace: None,
    }];
    if let Some((_, socket)) = &ctrd {
        targets.push(Target {
            name: "containerd-overlayfs",
            socket: socket.clone(),
            snapshotter: "overlayfs",
            namespace: Some("bench"),
        });
    } else {
        eprintln!("containerd baseline skipped: needs root and containerd");
    }

    let mut g = c.benchmark_group("snapshot/grpc");
    for t in &targets {
        let mut client = rt
            .block_on(strata_snapshotter::grpc::connect(t.socket.clone()))
            .unwrap();
        let base = unique("base");
        rt.block_on(async {
            prepare(&mut client, t, &format!("{base}-a"), "").await;
            commit(&mut client, t, &base, &format!("{base}-a")).await;
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("prepare", t.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let key = unique("p");
                        let start = Instant::now();
                        prepare(&mut client, t, &key, &base).await;
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
        g.bench_function(BenchmarkId::new("commit", t.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let key = unique("c");
                        prepare(&mut client, t, &key, &base).await;
                        let start = Instant::now();
                        commit(&mut client, t, &format!("{key}-done"), &key).await;
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
        // Concurrent clients, each doing Prepare + Commit pairs.
        let clients = 8;
        let pairs = 8;
        g.throughput(Throughput::Elements((clients * pairs * 2) as u64));
        g.bench_function(BenchmarkId::new("prepare+commit/8-clients", t.name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..clients)
                        .map(|_| {
                            let mut client = client.clone();
                            let (base, t) = (
                                base.clone(),
                                Target {
                                    socket: t.socket.clone(),
                                    ..*t
                                },
                            );
                            tokio::spawn(async move {
                                for _ in 0..pairs {
                                    let key = unique("t");
                                    prepare(&mut client, &t, &key, &base).await;
                                    commit(&mut client, &t, &format!("{key}-done"), &key).await;
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
    drop(ctrd);
}

criterion_group!(benches, library, grpc);
criterion_main!(benches);

//! Many processes on one root: `strata serve` driven over gRPC, and CLI commands from four
//! workers (imports, removes, gc, snapshot prepare/commit/remove, container rootfs), all at once
//! for a bounded time. Afterwards everything that any of them was told succeeded is there,
//! nothing removed came back, and `fsck` is clean.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ok_json, run_ok, strata};
use strata_snapshotter::grpc::proto::services::snapshots::v1 as pb;
use strata_testkit::daemon::Daemon;

/// How long the workers run.
const RUN_FOR: Duration = Duration::from_secs(20);

/// xorshift: deterministic per worker, no crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one worker was told succeeded and is still meant to be there.
#[derive(Debug, Default)]
struct Model {
    images: BTreeSet<String>,
    removed_images: BTreeSet<String>,
    snapshots: BTreeSet<String>,
    removed_snapshots: BTreeSet<String>,
}

/// Three small layer tars, sharing a file so that imports deduplicate.
fn layers(dir: &Path) -> Vec<PathBuf> {
    (0..3)
        .map(|i| {
            let tree = dir.join(format!("tree{i}"));
            std::fs::create_dir_all(tree.join("etc")).unwrap();
            std::fs::write(tree.join("etc/shared"), "the same in every layer\n").unwrap();
            std::fs::write(
                tree.join(format!("etc/own{i}")),
                vec![b'x'; 10_000 * (i + 1)],
            )
            .unwrap();
            let tar = dir.join(format!("layer{i}.tar"));
            run_ok(
                Command::new("tar")
                    .arg("-C")
                    .arg(&tree)
                    .arg("-cf")
                    .arg(&tar)
                    .arg("."),
            );
            tar
        })
        .collect()
}

fn succeeded(root: &Path, args: &[&str]) -> bool {
    let out = strata(root, args);
    // Every failure here is a bug: nothing in this test races for the same name.
    assert!(
        out.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// A CLI worker: `seed` picks its operations; its names carry `w`.
fn cli_worker(root: &Path, tars: &[PathBuf], w: usize, seed: u64, until: Instant) -> Model {
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        match rng.below(10) {
            0..=2 => {
                let name = format!("w{w}-img{n}");
                let tar = tars[rng.below(tars.len() as u64) as usize]
                    .to_str()
                    .unwrap();
                if succeeded(root, &["import", tar, "--name", &name]) {
                    model.images.insert(format!("{name}:latest"));
                }
            }
            3 => {
                if let Some(name) = model.images.iter().next().cloned()
                    && succeeded(root, &["rmi", &name])
                {
                    model.images.remove(&name);
                    model.removed_images.insert(name);
                }
            }
            4 => {
                succeeded(root, &["gc"]);
            }
            5 | 6 => {
                let (key, name) = (format!("w{w}-k{n}"), format!("w{w}-c{n}"));
                if succeeded(root, &["snapshot", "prepare", &key])
                    && succeeded(root, &["snapshot", "commit", &name, &key])
                {
                    model.snapshots.insert(name);
                }
            }
            7 => {
                // A container rootfs on one of our images; its layers outlive a later rmi.
                if let Some(image) = model.images.iter().last().cloned() {
                    let key = format!("w{w}-rootfs{n}");
                    if succeeded(root, &["rootfs", &image, &key]) {
                        model.snapshots.insert(key);
                    }
                }
            }
            _ => {
                if let Some(key) = model.snapshots.iter().next().cloned()
                    && succeeded(root, &["snapshot", "rm", &key])
                {
                    model.snapshots.remove(&key);
                    model.removed_snapshots.insert(key);
                }
            }
        }
    }
    model
}

/// A containerd-like worker on `strata serve`'s gRPC API.
fn grpc_worker(socket: &Path, seed: u64, until: Instant) -> Model {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = strata_snapshotter::grpc::connect(socket).await.unwrap();
        let mut rng = Rng(seed);
        let mut model = Model::default();
        let mut n = 0;
        while Instant::now() < until {
            n += 1;
            if rng.below(3) == 0
                && let Some(name) = model.snapshots.iter().next().cloned()
            {
                let r = pb::RemoveSnapshotRequest {
                    snapshotter: "strata".into(),
                    key: name.clone(),
                };
                client.remove(r).await.unwrap();
                model.snapshots.remove(&name);
                model.removed_snapshots.insert(name);
                continue;
            }
            let (key, name) = (format!("grpc/{n}/active"), format!("grpc/{n}/done"));
            let prepare = pb::PrepareSnapshotRequest {
                snapshotter: "strata".into(),
                key: key.clone(),
                ..Default::default()
            };
            client.prepare(prepare).await.unwrap();
            let commit = pb::CommitSnapshotRequest {
                snapshotter: "strata".into(),
                name: name.clone(),
                key,
                ..Default::default()
            };
            client.commit(commit).await.unwrap();
            model.snapshots.insert(name);
        }
        model
    })
}

#[test]
fn four_workers_and_a_server_on_one_root_lose_nothing() {
    if !common::can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let tars = layers(tmp.path());
    let socket = tmp.path().join("strata.sock");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_strata"));
    serve
        .arg("--root")
        .arg(&root)
        .arg("serve")
        .arg("--address")
        .arg(&socket);
    let _serve = Daemon::start("strata serve", serve, "serving snapshots on");

    let until = Instant::now() + RUN_FOR;
    let (cli, grpc) = std::thread::scope(|s| {
        let cli: Vec<_> = (0..3)
            .map(|w| {
                let (root, tars) = (&root, &tars);
                s.spawn(move || cli_worker(root, tars, w, 0x9E37_79B9 + w as u64, until))
            })
            .collect();
        let grpc = s.spawn(|| grpc_worker(&socket, 0xC0FFEE, until));
        (
            cli.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
            grpc.join().unwrap(),
        )
    });

    let images = ok_json(&root, &["images"]).unwrap();
    let tags: BTreeSet<String> = images
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["tags"].as_array().unwrap().iter())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let listed = ok_json(&root, &["ls"]).unwrap();
    let snapshots = |namespace: &str| -> BTreeSet<String> {
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["namespace"] == namespace)
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (mine, containerd) = (snapshots("strata"), snapshots("containerd"));
    let mut operations = 0;
    for model in &cli {
        operations += model.images.len() + model.snapshots.len();
        assert!(
            model.images.is_subset(&tags),
            "an acknowledged image is gone"
        );
        assert!(
            model.removed_images.is_disjoint(&tags),
            "a removed image is back"
        );
        assert!(
            model.snapshots.is_subset(&mine),
            "an acknowledged snapshot is gone"
        );
        assert!(model.removed_snapshots.is_disjoint(&mine));
    }
    assert!(
        grpc.snapshots.is_subset(&containerd),
        "{:?}",
        grpc.snapshots
    );
    assert!(grpc.removed_snapshots.is_disjoint(&containerd));
    eprintln!(
        "acknowledged and still there: {operations} images and snapshots from the CLI workers, \
         {} snapshots over gRPC",
        grpc.snapshots.len()
    );
    assert!(operations > 10, "the workers did too little: {operations}");
    // Every container rootfs still has the layers it stands on.
    for key in mine.iter().filter(|k| k.contains("rootfs")) {
        let mounts = ok_json(&root, &["snapshot", "mounts", key]).unwrap();
        let options = mounts[0]["options"].as_array().unwrap();
        let lowers = options
            .iter()
            .filter_map(|o| o.as_str()?.strip_prefix("lowerdir="))
            .flat_map(|l| l.split(':'))
            .filter(|l| !l.is_empty());
        for lower in lowers {
            assert!(Path::new(lower).is_dir(), "{key}: lower {lower} is gone");
        }
    }
    let fsck = ok_json(&root, &["fsck"]).unwrap();
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
}

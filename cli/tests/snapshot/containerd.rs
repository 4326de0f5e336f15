//! A private containerd using `strata serve` as its `strata` proxy snapshotter: ctr's snapshot
//! commands, an image import, a container run, and a SIGKILL of `strata serve` mid-work.
//!
//! containerd is started once, with its own root, state and sockets under a temp dir, and
//! stopped by PID, as is every `strata serve` the test starts.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{can_mount, ok, run_ok};
use strata_testkit::containerd::{self, Containerd};
use strata_testkit::daemon::Daemon;

pub(crate) struct Env {
    pub dir: PathBuf,
    pub store: PathBuf,
    pub strata_sock: PathBuf,
    containerd_sock: PathBuf,
}

impl Env {
    pub fn new(dir: &Path) -> Env {
        Env {
            store: dir.join("strata"),
            strata_sock: dir.join("strata.sock"),
            containerd_sock: dir.join("containerd.sock"),
            dir: dir.to_owned(),
        }
    }

    /// A private containerd with `strata serve`'s socket as its `strata` proxy snapshotter.
    fn containerd(&self) -> Containerd {
        Containerd::start(&self.dir, &self.strata_sock)
    }

    pub fn serve(&self) -> Daemon {
        self.serve_with(&[])
    }

    /// `strata serve` with `args` added to its command line.
    pub fn serve_with(&self, args: &[&str]) -> Daemon {
        self.serve_command(args, &[])
    }

    /// `strata serve` with `envs` added to its environment.
    pub fn serve_env(&self, envs: &[(&str, &str)]) -> Daemon {
        self.serve_command(&[], envs)
    }

    fn serve_command(&self, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("--root")
            .arg(&self.store)
            .arg("serve")
            .args(args)
            .arg("--address")
            .arg(&self.strata_sock)
            // What it did, for the tests to read and for the log of a failed test (`envs` may
            // say otherwise: an empty STRATA_LOG is the default filter).
            .env("STRATA_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied());
        Daemon::start("strata serve", cmd, "serving snapshots on")
    }

    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        containerd::ctr(&self.containerd_sock, args)
    }

    fn snapshots(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["snapshots", "--snapshotter", "strata"];
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    pub fn strata_json(&self, args: &[&str]) -> serde_json::Value {
        crate::common::ok_json(&self.store, args).unwrap()
    }
}

/// A scratch dir and its [`Env`] when containerd, runc and busybox are installed and we may
/// mount; `None` (the test skips, saying which package is missing) otherwise.
pub(crate) fn containerd_env() -> Option<(tempfile::TempDir, Env)> {
    if !(can_mount() && containerd_peers() && strata_testkit::peer("busybox", "busybox-static")) {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let env = Env::new(tmp.path());
    Some((tmp, env))
}

/// Whether containerd, ctr and runc are installed (each missing one skips the test, saying so).
pub fn containerd_peers() -> bool {
    containerd::peers()
}

/// A one-layer OCI image of Debian's static busybox, as an OCI archive.
fn busybox_image(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    strata_testkit::busybox::busybox_layout(&layout);
    archive_layout(&layout, &dir.join("busybox.tar"))
}

/// Tars the OCI layout at `layout` into the OCI archive `archive` (what `ctr images import`
/// takes); returns `archive`.
pub(crate) fn archive_layout(layout: &Path, archive: &Path) -> PathBuf {
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(layout)
            .arg("-cf")
            .arg(archive)
            .arg("."),
    );
    archive.to_owned()
}

/// Passes `archive` through a second Strata store (`strata import`, then `strata export`), so that
/// containerd runs what Strata exports.
fn exported_by_strata(dir: &Path, archive: &Path) -> PathBuf {
    let store = dir.join("export-store");
    let layout = dir.join("strata-export");
    let (archive, layout) = (archive.to_str().unwrap(), layout.to_str().unwrap());
    ok(&store, &["import", archive, "--name", "busybox"]);
    ok(&store, &["export", "busybox", "-o", layout]);
    let exported = dir.join("strata-busybox.tar");
    run_ok(
        Command::new("tar")
            .args(["-C", layout, "-cf"])
            .arg(&exported)
            .arg("."),
    );
    exported
}

#[test]
fn containerd_runs_containers_on_strata() {
    let Some((_tmp, env)) = containerd_env() else {
        return;
    };
    let mut serve = env.serve();
    let _containerd = env.containerd();

    // ctr's snapshot commands.
    env.snapshots(&["prepare", "k1"]).unwrap();
    let mounts = env.snapshots(&["mounts", "/mnt", "k1"]).unwrap();
    assert!(mounts.starts_with("mount -t bind "), "{mounts}");
    assert!(mounts.contains("rw,rbind"), "{mounts}");
    env.snapshots(&["commit", "c1", "k1"]).unwrap();
    env.snapshots(&["prepare", "k2", "c1"]).unwrap();
    let mounts = env.snapshots(&["mounts", "/mnt", "k2"]).unwrap();
    assert!(
        mounts.contains("mount -t overlay overlay") && mounts.contains("upperdir="),
        "{mounts}"
    );
    let ls = env.snapshots(&["ls"]).unwrap();
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().eq(["c1", "Committed"])),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().eq(["k2", "c1", "Active"])),
        "{ls}"
    );
    let err = env.snapshots(&["rm", "c1"]).unwrap_err();
    assert!(err.contains("failed precondition"), "{err}");
    let err = env.snapshots(&["commit", "c1", "k2"]).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    env.snapshots(&["rm", "k2"]).unwrap();
    env.snapshots(&["rm", "c1"]).unwrap();
    let err = env.snapshots(&["info", "c1"]).unwrap_err();
    assert!(err.contains("not found"), "{err}");

    // An image exported by strata, unpacked onto strata, and a container running on it.
    let archive = exported_by_strata(&env.dir, &busybox_image(&env.dir));
    env.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "strata",
        archive.to_str().unwrap(),
    ])
    .unwrap();
    let hello = env
        .ctr(&[
            "run",
            "--rm",
            "--snapshotter",
            "strata",
            // The name strata stored the image under, as its export names it.
            "docker.io/library/busybox:latest",
            "strata-hello",
            "/bin/busybox",
            "echo",
            "hello",
        ])
        .unwrap();
    assert_eq!(hello.trim(), "hello");
    let layers = env.snapshots(&["ls"]).unwrap();
    assert!(
        layers.contains("sha256:"),
        "the image's layer is a strata snapshot: {layers}"
    );

    // SIGKILL mid-work: every commit ctr saw succeed survives, leftovers go.
    let mut committed = Vec::new();
    let mut parent = String::new();
    for i in 0.. {
        let key = format!("crash-a{i}");
        let name = format!("crash-c{i}");
        let mut prepare = vec!["prepare", key.as_str()];
        if !parent.is_empty() {
            prepare.push(parent.as_str());
        }
        env.snapshots(&prepare).unwrap();
        env.snapshots(&["commit", &name, &key]).unwrap();
        committed.push(name.clone());
        parent = name;
        if i == 9 {
            // One more prepare left in flight, then the kill.
            env.snapshots(&["prepare", "crash-open", &parent]).unwrap();
            break;
        }
    }
    serve.kill(rustix::process::Signal::KILL);
    // Reopening the store (as `strata serve` does on restart) removes what no record names.
    let listed = env.strata_json(&["ls", "kind==committed"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for name in &committed {
        assert!(
            names.iter().any(|n| n.ends_with(&format!("/{name}"))),
            "{name} lost: {names:?}"
        );
    }
    let all = env.strata_json(&["ls"]).as_array().unwrap().len();
    // Beyond the records' dirs, only spare (empty) dirs remain.
    let dirs: Vec<PathBuf> = std::fs::read_dir(env.store.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let used = dirs
        .iter()
        .filter(|d| std::fs::read_dir(d.join("fs")).unwrap().next().is_some())
        .count();
    assert!(
        dirs.len() >= all && used <= all,
        "{} dirs, {used} used, {all} records",
        dirs.len()
    );
    // The killed server's staging is the next GC's to remove.
    env.strata_json(&["gc"]);
    let staged = std::fs::read_dir(env.store.join("tmp")).unwrap().count();
    assert_eq!(staged, 0);

    let _serve = env.serve();
    // containerd redials the proxy with backoff: the first calls may still find it down.
    let info = (0..500)
        .find_map(|_| env.snapshots(&["info", committed.last().unwrap()]).ok())
        .expect("containerd reconnects to the restarted strata serve");
    assert!(info.contains("\"Committed\""), "{info}");
    env.snapshots(&["prepare", "after-restart", committed.last().unwrap()])
        .unwrap();
    env.snapshots(&["rm", "after-restart"]).unwrap();
}

/// The command line's snapshots on a served root, made before and during serving, survive
/// containerd's garbage collector; the command line works on the root beside `strata serve`,
/// two imports at once among it.
#[test]
fn the_cli_and_containerd_share_one_root() {
    let Some((_tmp, env)) = containerd_env() else {
        return;
    };
    let busybox = busybox_image(&env.dir);
    let archive = busybox.to_str().unwrap();
    let ok = |args: &[&str]| crate::common::ok(&env.store, args);
    ok(&["import", archive, "--name", "busybox"]);
    ok(&["rootfs", "busybox", "keepme"]);
    ok(&["snapshot", "prepare", "keep2"]);

    let _serve = env.serve();
    let _containerd = env.containerd();

    // Beside the server: reads, writes, and two imports at once.
    ok(&["rootfs", "busybox", "keepme-during"]);
    ok(&["snapshot", "prepare", "keep3"]);
    let other = env.dir.join("other");
    std::fs::create_dir_all(other.join("etc")).unwrap();
    std::fs::write(other.join("etc/motd"), "another image\n").unwrap();
    let other_tar = env.dir.join("other.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&other)
            .arg("-cf")
            .arg(&other_tar)
            .arg("."),
    );
    std::thread::scope(|s| {
        let imports = [
            s.spawn(|| ok(&["import", archive, "--name", "busybox-again"])),
            s.spawn(|| ok(&["import", other_tar.to_str().unwrap(), "--name", "other"])),
        ];
        for import in imports {
            import.join().unwrap();
        }
    });
    let images = ok(&["images"]);
    for name in ["busybox", "busybox-again", "other"] {
        assert!(
            images.lines().any(|l| l.starts_with(name)),
            "{name}: {images}"
        );
    }
    let dry = env.strata_json(&["gc", "--dry-run"]);
    assert_eq!(dry["layers"].as_array().map(Vec::len), Some(0), "{dry}");

    // containerd's own work on the root: an image unpacked onto strata, a container run and
    // removed, the image removed with a synchronous garbage collection.
    let exported = exported_by_strata(&env.dir, &busybox);
    env.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "strata",
        exported.to_str().unwrap(),
    ])
    .unwrap();
    let image = "docker.io/library/busybox:latest";
    let hello = env
        .ctr(&[
            "run",
            "--rm",
            "--snapshotter",
            "strata",
            image,
            "shared",
            "/bin/busybox",
            "echo",
            "hi",
        ])
        .unwrap();
    assert_eq!(hello.trim(), "hi");
    let containerd_snapshots = |env: &Env| {
        env.strata_json(&["ls"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["namespace"] == "containerd")
            .count()
    };
    assert!(
        containerd_snapshots(&env) > 0,
        "containerd unpacked onto strata"
    );
    env.ctr(&["images", "rm", "--sync", image]).unwrap();

    // containerd's GC took its own snapshots and none of the command line's.
    assert_eq!(containerd_snapshots(&env), 0, "containerd's GC ran");
    let listed = env.strata_json(&["ls"]);
    let mine: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["namespace"] == "strata")
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(mine, ["keep2", "keep3", "keepme", "keepme-during"]);
    let table = ok(&["ls"]);
    assert!(table.lines().next().unwrap().contains("OWNER"), "{table}");
    // The container rootfs still mounts, on layers GC kept.
    let target = env.dir.join("mnt");
    std::fs::create_dir(&target).unwrap();
    ok(&["snapshot", "mount", "keepme", target.to_str().unwrap()]);
    let mounted = target.join("bin/busybox").exists();
    ok(&["snapshot", "umount", target.to_str().unwrap()]);
    assert!(
        mounted,
        "the image's files under the CLI's container rootfs"
    );
    let gc = env.strata_json(&["gc"]);
    let fsck = env.strata_json(&["fsck"]);
    assert_eq!(
        fsck["problems"].as_array().map(Vec::len),
        Some(0),
        "{fsck} after {gc}"
    );
}

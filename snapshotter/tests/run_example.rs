//! `examples/run.rs` on a busybox image: the command runs in a runc container, its output comes
//! through, its write becomes a new image's layer, and nothing stays mounted.

#[path = "../examples/run.rs"]
#[allow(dead_code)] // the example's `main`
mod example;

use std::fs;
use std::path::Path;
use std::process::Stdio;

use strata_layer_store::Store;
use strata_snapshotter::runc::Container;

fn peers() -> bool {
    strata_testkit::can_mount()
        && strata_testkit::peer("runc", "runc")
        && strata_testkit::peer("busybox", "busybox-static")
}

/// Lines of this process's mount table that name `root`: a snapshot of the store at `root` is
/// mounted wherever its mount point is, and its overlay options name the store's dirs.
fn mounts_of(root: &Path) -> Vec<String> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = root.to_str().unwrap();
    table
        .lines()
        .filter(|line| line.contains(root))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_example_runs_a_command_and_commits_its_changes() {
    if !peers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("busybox");
    strata_testkit::busybox::busybox_layout(&layout);
    let root = dir.path().join("root");
    let out = dir.path().join("stdout");
    let args = example::Args::parse(
        [
            "--root",
            root.to_str().unwrap(),
            "--image",
            layout.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo hello > /hello.txt; echo ran",
        ]
        .map(Into::into),
    )
    .unwrap();
    let image = example::run(&args, fs::File::create(&out).unwrap().into()).unwrap();

    assert_eq!(fs::read_to_string(&out).unwrap(), "ran\n");
    assert_eq!(image.len(), 64, "an image id: {image}");
    assert_eq!(mounts_of(&root), Vec::<String>::new());
    let store = Store::open(&root).unwrap();
    let exported = dir.path().join("exported");
    store.export(&image, &exported).unwrap();
    let top = top_layer(&exported);
    let names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(&top[..]))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"hello.txt".to_owned()), "{names:?}");
}

#[test]
fn a_failing_command_commits_nothing_and_leaves_no_mount() {
    if !peers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("busybox");
    strata_testkit::busybox::busybox_layout(&layout);
    let root = dir.path().join("root");
    let args = example::Args {
        root: root.clone(),
        image: layout,
        tag: Some("never".to_owned()),
        command: vec!["sh".into(), "-c".into(), "exit 3".into()],
    };
    let err = example::run(&args, Stdio::null()).unwrap_err();
    assert!(format!("{err:#}").contains("exit status: 3"), "{err:#}");
    assert_eq!(mounts_of(&root), Vec::<String>::new());
    let store = Store::open(&root).unwrap();
    assert!(store.image("never").is_err());
}

#[test]
fn the_launcher_captures_output_and_isolates_the_network() {
    if !peers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    for sub in ["proc", "dev", "sys", "tmp"] {
        fs::create_dir(rootfs.join(sub)).unwrap();
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let bundle = dir.path().join("bundle");
    let script = "echo $GREETING; cat /proc/net/dev | grep -c :; pwd; hostname";
    let out = Container::new(&rootfs, ["sh", "-c", script])
        .env("GREETING=hi")
        .cwd("/tmp")
        .output(&bundle, "launcher-test")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the loopback device: a network namespace of its own.
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "hi\n1\n/tmp\nstrata\n"
    );
    // runc's state was private to the bundle, and the container is gone from it.
    assert_eq!(fs::read_dir(bundle.join("runc-state")).unwrap().count(), 0);
}

/// The last layer blob of the only image in the OCI layout at `dir`.
fn top_layer(dir: &Path) -> Vec<u8> {
    let blob = |digest: &str| fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    blob(layers.last().unwrap()["digest"].as_str().unwrap())
}

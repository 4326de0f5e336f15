//! The snapshot commands of `strata`, driven through the built binary.

#[path = "snapshot/containerd.rs"]
mod containerd;
#[path = "snapshot/cri_fetch.rs"]
mod cri_fetch;
#[path = "snapshot/dedup.rs"]
mod dedup;
#[path = "snapshot/pod.rs"]
mod pod;
#[path = "snapshot/recipe.rs"]
mod recipe;
#[path = "snapshot/remote.rs"]
mod remote;
use strata_testkit::registry as server;
use strata_testkit::tree;

mod common;

use std::path::Path;

use std::process::Command;

use common::{can_mount, ok, ok_json, run_ok, strata};
use strata_testkit::daemon::Daemon;

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    ok_json(root, args).unwrap()
}

fn fails(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(!out.status.success(), "strata {args:?} succeeded");
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn lifecycle_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mounts = json(root, &["prepare", "base-a", "--label", "a=1"]);
    assert_eq!(mounts[0]["type"], "bind");
    assert_eq!(mounts[0]["options"], serde_json::json!(["rw", "rbind"]));
    let committed = json(root, &["commit", "base", "base-a", "--label", "gc=yes"]);
    assert_eq!(committed["name"], "base");
    assert_eq!(committed["kind"], "committed");
    assert_eq!(committed["labels"], serde_json::json!({"gc": "yes"}));

    let mounts = json(root, &["prepare", "top", "base"]);
    assert_eq!(mounts[0]["type"], "overlay");
    let options: Vec<String> = serde_json::from_value(mounts[0]["options"].clone()).unwrap();
    assert!(
        options.iter().any(|o| o.starts_with("upperdir=")),
        "{options:?}"
    );
    assert_eq!(json(root, &["mounts", "top"]), mounts);
    let view = json(root, &["view", "v", "base"]);
    assert_eq!(view[0]["options"], serde_json::json!(["ro", "rbind"]));

    let stat = json(root, &["stat", "top"]);
    assert_eq!(
        (stat["kind"].as_str(), stat["parent"].as_str()),
        (Some("active"), Some("base"))
    );
    let names = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(json(root, &["ls"])), ["base", "top", "v"]);
    assert_eq!(
        names(json(root, &["ls", "kind==view", "labels.gc==yes"])),
        ["base", "v"]
    );
    assert_eq!(
        names(json(root, &["ls", "parent==base,kind==active"])),
        ["top"]
    );
    let usage = json(root, &["usage", "top"]);
    assert_eq!(usage["inodes"], 1);

    ok(root, &["rm", "v"]);
    ok(root, &["rm", "top"]);
    ok(root, &["rm", "base"]);
    assert_eq!(names(json(root, &["ls"])), Vec::<String>::new());
}

#[test]
fn text_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let line = ok(root, &["prepare", "a"]);
    assert_eq!(
        line.trim(),
        format!("bind {}/snapshots/1/fs rw,rbind", root.display())
    );
    let ls = ok(root, &["ls"]);
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["KEY", "PARENT", "KIND", "OWNER"],
            vec!["a", "active", "strata"]
        ]
    );
    assert!(ok(root, &["stat", "a"]).contains("kind: active"));
}

#[test]
fn errors_name_the_key_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(root, &["prepare", "a"]);
    assert!(fails(root, &["stat", "ghost"]).contains("\"ghost\" not found"));
    assert!(fails(root, &["prepare", "a"]).contains("\"a\" already exists"));
    assert!(fails(root, &["view", "v", "a"]).contains("not a committed snapshot"));
    assert!(fails(root, &["prepare", "b", "nope"]).contains("\"nope\""));
    ok(root, &["commit", "c", "a"]);
    assert!(fails(root, &["mounts", "c"]).contains("committed"));
    ok(root, &["prepare", "child", "c"]);
    assert!(fails(root, &["rm", "c"]).contains("cannot remove snapshot with child"));
    assert!(fails(root, &["ls", "kind=="]).contains("kind=="));
    assert!(fails(root, &["prepare", "x", "--label", "novalue"]).contains("KEY=VALUE"));
}

#[test]
fn mount_write_umount() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    ok(&root, &["prepare", "base-a"]);
    ok(&root, &["mount", "base-a", target.to_str().unwrap()]);
    // Unmount even if an assertion below fails.
    let guard = strata_testkit::Unmount(&target);
    std::fs::write(target.join("hello"), "world").unwrap();
    ok(&root, &["umount", target.to_str().unwrap()]);
    std::mem::forget(guard);
    assert!(!target.join("hello").exists());
    ok(&root, &["commit", "base", "base-a"]);
    ok(&root, &["view", "v", "base"]);
    ok(&root, &["mount", "v", target.to_str().unwrap()]);
    let guard = strata_testkit::Unmount(&target);
    assert_eq!(
        std::fs::read_to_string(target.join("hello")).unwrap(),
        "world"
    );
    assert!(
        std::fs::write(target.join("x"), "y").is_err(),
        "a view is read-only"
    );
    drop(guard);
    let target = target.to_str().unwrap();
    let err = fails(&root, &["umount", target]);
    assert!(
        err.contains(&format!("{target}: not a mount point")),
        "{err}"
    );
}

/// A one-file layer tar.
fn one_file_layer(path: &str, data: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, path, data).unwrap();
    tar.into_inner().unwrap()
}

#[test]
fn rootfs_on_an_imported_image() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let tar = dir.path().join("layer.tar");
    std::fs::write(&tar, one_file_layer("hello.txt", b"from the image")).unwrap();
    ok(&root, &["import", tar.to_str().unwrap(), "--name", "img"]);
    let mounts = json(&root, &["rootfs", "img", "c1"]);
    let options = mounts[0]["options"].to_string();
    assert_eq!(mounts[0]["type"], "overlay");
    assert!(options.contains("/layers/"), "{options}");
    assert!(fails(&root, &["rootfs", "img", "c1"]).contains("c1"));
    assert!(fails(&root, &["rootfs", "nope", "c2"]).contains("nope"));

    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    ok(&root, &["mount", "c1", target.to_str().unwrap()]);
    let _guard = strata_testkit::Unmount(&target);
    assert_eq!(
        std::fs::read(target.join("hello.txt")).unwrap(),
        b"from the image"
    );
    std::fs::write(target.join("hello.txt"), "changed").unwrap();
    ok(&root, &["umount", target.to_str().unwrap()]);
    let usage = json(&root, &["usage", "c1"]);
    assert!(usage["inodes"].as_u64().unwrap() >= 1, "{usage}");
}

#[test]
fn commit_image_exports_what_the_container_sees() {
    if !strata_testkit::peer("umoci", "umoci") {
        return;
    }
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let tar = dir.path().join("layer.tar");
    std::fs::write(&tar, one_file_layer("hello.txt", b"from the image")).unwrap();
    ok(&root, &["import", &path(&tar), "--name", "img"]);
    ok(&root, &["rootfs", "img", "c1"]);
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    ok(&root, &["mount", "c1", &path(&target)]);
    let guard = strata_testkit::Unmount(&target);
    std::fs::remove_file(target.join("hello.txt")).unwrap();
    std::fs::create_dir(target.join("etc")).unwrap();
    std::fs::write(target.join("etc/motd"), "made in a container\n").unwrap();
    ok(&root, &["umount", &path(&target)]);
    std::mem::forget(guard);

    let made = json(&root, &["commit", "c1-done", "c1", "--image", "img2"]);
    assert_eq!(made["snapshot"]["kind"], "committed", "{made}");
    assert_eq!(made["image"]["changes"], 3, "{made}");
    ok(&root, &["rootfs", "img", "c2"]);
    assert!(fails(&root, &["commit", "c1-done", "c2", "--image", "x"]).contains("c1-done"));
    assert!(
        fails(
            &root,
            &["export", "x", "--output", &path(&dir.path().join("x"))]
        )
        .contains('x')
    );
    let oci = dir.path().join("oci");
    ok(&root, &["export", "img2", "--output", &path(&oci)]);
    let bundle = dir.path().join("bundle");
    run_ok(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:docker.io/library/img2:latest", path(&oci)),
        &path(&bundle),
    ]));

    ok(&root, &["view", "v", "c1-done"]);
    ok(&root, &["mount", "v", &path(&target)]);
    let _guard = strata_testkit::Unmount(&target);
    let seen = tree::snapshot(&target, &tree::Options::default());
    assert!(seen.contains_key(Path::new("etc/motd")) && !seen.contains_key(Path::new("hello.txt")));
    tree::assert_same(
        &tree::snapshot(&bundle.join("rootfs"), &tree::Options::default()),
        &seen,
    );
}

/// While `strata serve` keeps the store's database open, other commands on that store fail at
/// once with an error naming the server's pid, rather than wait for it forever; once it
/// stops they work again.
#[test]
fn commands_work_on_a_served_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_strata"));
    serve
        .arg("--root")
        .arg(&root)
        .args(["serve", "--address"])
        .arg(dir.path().join("s.sock"));
    let mut server = Daemon::start("strata serve", serve, "serving snapshots on");
    for args in [&["images"][..], &["ls"], &["gc"], &["prepare", "k"]] {
        ok(&root, args);
    }
    assert_eq!(json(&root, &["images"]), serde_json::json!([]));
    server.kill(rustix::process::Signal::TERM);
    assert_eq!(json(&root, &["ls"])[0]["name"], "k");
}

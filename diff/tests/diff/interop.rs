//! Interop with real peers: GNU tar and umoci read our layers, and we read umoci's.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_diff::{ApplyOptions, Compression, ContentCheck, WriteOptions};
use strata_testkit::tree;

use crate::support::{both, can_mount, set_mtime, state};

/// An old/new pair with every kind of change a layer carries.
fn fixture(old: &Path, new: &Path) {
    for root in [old, new] {
        fs::create_dir_all(root.join("etc/conf.d")).unwrap();
        fs::create_dir_all(root.join("usr/share/doc/pkg")).unwrap();
        fs::write(root.join("etc/hostname"), "base\n").unwrap();
        fs::write(root.join("etc/conf.d/keep"), "k").unwrap();
        fs::write(root.join("etc/conf.d/drop"), "d").unwrap();
        fs::write(root.join("usr/share/doc/pkg/README"), "doc").unwrap();
        fs::write(root.join("type-swap"), "file first").unwrap();
        symlink("hostname", root.join("etc/link")).unwrap();
    }
    fs::write(new.join("etc/hostname"), "app\n").unwrap();
    fs::remove_file(new.join("etc/conf.d/drop")).unwrap();
    fs::remove_dir_all(new.join("usr/share/doc")).unwrap();
    fs::remove_file(new.join("type-swap")).unwrap();
    fs::create_dir(new.join("type-swap")).unwrap();
    fs::write(new.join("type-swap/inside"), "i").unwrap();
    fs::remove_file(new.join("etc/link")).unwrap();
    symlink("conf.d/keep", new.join("etc/link")).unwrap();
    fs::create_dir_all(new.join("opt/app/bin")).unwrap();
    fs::write(new.join("opt/app/bin/tool"), vec![b'x'; 100_000]).unwrap();
    fs::set_permissions(
        new.join("opt/app/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(
        new.join("opt/app/bin/tool"),
        new.join("opt/app/bin/tool-alias"),
    )
    .unwrap();
    let long = "l".repeat(140);
    fs::write(new.join("opt/app").join(&long), "long name").unwrap();
    fs::write(new.join("opt/app/attrs"), "x").unwrap();
    strata_cow::xattr::set(&new.join("opt/app/attrs"), b"user.origin", b"strata").unwrap();
    fs::set_permissions(
        new.join("etc/conf.d/keep"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // Whole-second times, as every tar keeps them.
    for root in [old, new] {
        for entry in walk(root) {
            set_mtime(&entry, 1_600_000_000, 0);
        }
    }
}

/// Every path under `root`, parents first.
fn walk(root: &Path) -> Vec<PathBuf> {
    tree::snapshot(root, &tree::Options::default())
        .into_keys()
        .map(|path| root.join(path))
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gnu_tar_with_whiteout_handling_applies_our_layers() {
    if !can_mount() {
        return;
    }
    let (old, new, copy, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    fixture(old.path(), new.path());
    tree::copy(old.path(), copy.path());
    let set = both(old.path(), new.path(), ContentCheck::Ambiguous);
    let layer = work.path().join("layer.tar.gz");
    strata_diff::write_layer(
        &set,
        &WriteOptions::new(Compression::Gzip),
        fs::File::create(&layer).unwrap(),
    )
    .unwrap();
    // A tar-based runtime: extract with GNU tar, then act on the whiteout markers.
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--same-owner", "-xpzf"])
        .arg(&layer)
        .arg("-C")
        .arg(copy.path()));
    apply_whiteouts(copy.path());
    tree::assert_same(&state(copy.path()), &state(new.path()));
}

/// Removes each `.wh.<name>` marker and the `<name>` it hides.
fn apply_whiteouts(root: &Path) {
    for path in walk(root) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(target) = name.strip_prefix(".wh.") {
            // Removing entries touches the directory; keep the mtime the layer gave it.
            let dir = path.parent().unwrap();
            let mtime = fs::symlink_metadata(dir).unwrap().modified().unwrap();
            let hidden = path.with_file_name(target);
            if fs::symlink_metadata(&hidden).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&hidden).unwrap();
            } else {
                let _ = fs::remove_file(&hidden);
            }
            fs::remove_file(&path).unwrap();
            fs::File::open(dir).unwrap().set_modified(mtime).unwrap();
        }
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Stores `bytes` as a blob of the OCI layout `layout`; returns its descriptor.
fn blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let digest = sha(bytes);
    fs::write(layout.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

#[test]
fn umoci_unpacks_images_made_of_our_layers() {
    if !strata_testkit::peer("umoci", "umoci") {
        return;
    }
    if !can_mount() {
        return;
    }
    let (empty, old, new, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    fixture(old.path(), new.path());
    let layout = work.path().join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    // umoci 0.4 reads gzip and plain layers (not zstd, which it predates).
    for (compression, (from, to)) in [
        (Compression::Gzip, (empty.path(), old.path())),
        (Compression::None, (old.path(), new.path())),
    ] {
        let set = both(from, to, ContentCheck::Ambiguous);
        let mut bytes = Vec::new();
        let digests =
            strata_diff::write_layer(&set, &WriteOptions::new(compression), &mut bytes).unwrap();
        let media = match compression {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            _ => "application/vnd.oci.image.layer.v1.tar",
        };
        let descriptor = blob(&layout, media, &bytes);
        assert_eq!(descriptor["digest"], digests.digest.as_str());
        layers.push(descriptor);
        diff_ids.push(digests.diff_id);
    }
    let config = json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let config = blob(
        &layout,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": layers});
    let mut manifest = blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    manifest["annotations"] = json!({"org.opencontainers.image.ref.name": "t"});
    fs::write(
        layout.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [manifest]}).to_string(),
    )
    .unwrap();

    let bundle = work.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    tree::assert_same(&state(&bundle.join("rootfs")), &state(new.path()));
}

#[test]
fn we_apply_layers_made_by_umoci() {
    if !strata_testkit::peer("umoci", "umoci") {
        return;
    }
    if !can_mount() {
        return;
    }
    let (old, new, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    fixture(old.path(), new.path());
    let layout = work.path().join("layout");
    let bundle = work.path().join("bundle");
    let image = format!("{}:t", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    tree::copy(old.path(), &rootfs);
    run(Command::new("umoci")
        .args(["repack", "--refresh-bundle", "--image", &image])
        .arg(&bundle));
    // Turn the bundle's rootfs into `new`: wipe it and copy `new` in.
    for entry in fs::read_dir(&rootfs).unwrap() {
        let p = entry.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            fs::remove_dir_all(&p).unwrap()
        } else {
            fs::remove_file(&p).unwrap()
        }
    }
    tree::copy(new.path(), &rootfs);
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));

    // Apply umoci's layers, in manifest order, with Strata.
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "t")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let read_blob =
        |digest: &str| fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
    let manifest: Value = serde_json::from_slice(&read_blob(&manifest_digest)).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "umoci wrote a base and a diff layer");
    let target = tempfile::tempdir().unwrap();
    for layer in layers {
        let bytes = read_blob(layer["digest"].as_str().unwrap());
        strata_diff::apply_layer(&bytes[..], target.path(), &ApplyOptions::default()).unwrap();
    }
    tree::assert_same(&state(target.path()), &state(new.path()));
}

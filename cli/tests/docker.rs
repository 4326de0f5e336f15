//! The commands a docker user guesses: images, tag, inspect, rmi, commit CONTAINER IMAGE, and
//! names and ids as docker takes them; errors that say what to do.

use std::fs;
use std::path::Path;

mod common;
use common::{can_mount, ok, ok_json, strata};

/// sha256 of `bytes`, `sha256:HEX`.
fn digest(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum runs");
    let text = String::from_utf8(out.stdout).expect("hex");
    format!("sha256:{}", &text[..64])
}

/// Writes an OCI layout at `dir` of one uncompressed layer holding `file`, whose config says
/// it was created at `created` and runs `cmd`.
fn oci_image(dir: &Path, file: &str, created: &str, cmd: &str) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(file.len() as u64);
    tar.append_data(&mut header, file, file.as_bytes())
        .expect("tar entry");
    let layer = tar.into_inner().expect("tar");
    let config = serde_json::to_vec(&serde_json::json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": [cmd], "Env": ["PATH=/bin"], "WorkingDir": "/srv" },
        "rootfs": { "type": "layers", "diff_ids": [digest(&layer)] },
    }))
    .expect("config");
    let descriptor = |media: &str, bytes: &[u8]| serde_json::json!({ "mediaType": media, "digest": digest(bytes), "size": bytes.len() });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .expect("manifest");
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("blobs dir");
    for bytes in [&layer, &config, &manifest] {
        let name = digest(bytes);
        fs::write(blobs.join(&name["sha256:".len()..]), bytes).expect("blob");
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [descriptor("application/vnd.oci.image.manifest.v1+json", &manifest)],
    });
    fs::write(dir.join("index.json"), index.to_string()).expect("index");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
}

fn fails(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(!out.status.success(), "strata {args:?} succeeded");
    String::from_utf8(out.stderr).expect("UTF-8")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn read_only_commands_on_a_missing_store_fail_naming_it_and_create_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("typo");
    let out = tmp.path().join("out");
    let read_only: &[&[&str]] = &[
        &["images"],
        &["images", "-q"],
        &["layers"],
        &["inspect", "busybox"],
        &["tag", "busybox", "b2"],
        &["rmi", "busybox"],
        &["history", "busybox"],
        &["export", "busybox", "-o", path(&out)],
        &["push", "busybox", "localhost:5000/b"],
        &["gc"],
        &["fsck"],
        &["du"],
        &["rootfs", "busybox", "c1"],
        &["commit", "c1", "img"],
        &["snapshot", "ls"],
        &["snapshot", "stat", "k"],
        &["snapshot", "rm", "k"],
        &["ls"],
        &["stat", "k"],
    ];
    for args in read_only {
        let err = fails(&root, args);
        assert!(
            err.contains(&format!("no store at {}", root.display())) && err.contains("--root"),
            "strata {args:?}: {err}"
        );
        assert!(!root.exists(), "strata {args:?} created the store");
    }
    // A writing command creates it.
    ok(&root, &["snapshot", "prepare", "k"]);
    assert!(ok(&root, &["images"]).starts_with("REPOSITORY"));
}

#[test]
fn names_and_id_prefixes_work_as_in_docker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let layout = tmp.path().join("layout");
    oci_image(&layout, "a", "2020-01-02T03:04:05Z", "/bin/a");

    let imported = ok_json(&root, &["import", path(&layout), "--name", "myimg:da"]).unwrap();
    assert_eq!(imported["tags"], serde_json::json!(["myimg:da"]));
    let id = imported["image"].as_str().expect("id")["sha256:".len()..].to_owned();
    let inspect = |name: &str| ok_json(&root, &["inspect", name]).unwrap()[0].clone();
    for name in [
        "myimg:da",
        "docker.io/library/myimg:da",
        &id[..4],
        &format!("sha256:{}", &id[..8]),
    ] {
        assert_eq!(inspect(name)["Id"], format!("sha256:{id}"), "{name}");
    }
    let err = fails(&root, &["rmi", &id[..3]]);
    assert!(err.contains("at least 4 hex digits"), "{err}");
    let err = fails(&root, &["inspect", "myimg"]);
    assert!(err.contains("no image named \"myimg\""), "{err}");

    ok(&root, &["tag", "myimg:da", "busybox"]);
    ok(&root, &["tag", &id[..6], "localhost:5000/x"]);
    assert_eq!(
        inspect("busybox")["RepoTags"],
        serde_json::json!(["myimg:da", "busybox:latest", "localhost:5000/x:latest"])
    );
    let err = fails(&root, &["tag", "busybox", "Not/Valid"]);
    assert!(err.contains("not an image reference"), "{err}");
    let err = fails(&root, &["tag", "nothing", "x"]);
    assert!(err.contains("no image named \"nothing\""), "{err}");

    ok(&root, &["rmi", "docker.io/library/busybox:latest"]);
    ok(&root, &["rmi", "myimg:da"]);
    assert_eq!(
        inspect("localhost:5000/x")["RepoTags"],
        serde_json::json!(["localhost:5000/x:latest"])
    );
}

#[test]
fn images_and_inspect_show_what_docker_shows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    for (name, created) in [
        ("old", "2020-01-02T03:04:05Z"),
        ("new", "2024-06-01T00:00:00.5+02:00"),
    ] {
        let layout = tmp.path().join(name);
        oci_image(&layout, name, created, &format!("/bin/{name}"));
        ok(
            &root,
            &["import", path(&layout), "--name", &format!("{name}:1")],
        );
    }

    let text = ok(&root, &["images"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let columns: Vec<&str> = lines[0]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        columns,
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        "{text}"
    );
    // Newest first, sizes in docker's units, dates relative.
    assert!(lines[1].starts_with("new          1   "), "{text}");
    assert!(lines[2].starts_with("old          1   "), "{text}");
    assert!(lines[1].ends_with(" years ago   2.05kB"), "{text}");

    let json = ok_json(&root, &["images"]).unwrap();
    assert_eq!(json[0]["tags"], serde_json::json!(["new:1"]));
    assert_eq!(json[0]["created"], "2024-05-31T22:00:00.500000000Z");
    assert_eq!(json[1]["size"], 2048);
    let quiet = ok(&root, &["images", "-q"]);
    let ids: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap()["sha256:".len()..][..12].to_owned())
        .collect();
    assert_eq!(quiet.lines().collect::<Vec<_>>(), ids);

    let inspect = ok_json(&root, &["inspect", "old:1", "new:1"]).unwrap();
    let old = &inspect[0];
    assert_eq!(old["Created"], "2020-01-02T03:04:05.000000000Z");
    assert_eq!(old["Config"]["Cmd"], serde_json::json!(["/bin/old"]));
    assert_eq!(old["Config"]["Env"], serde_json::json!(["PATH=/bin"]));
    assert_eq!(old["Config"]["WorkingDir"], "/srv");
    assert_eq!(old["Size"], 2048);
    let layer = &old["RootFS"]["Layers"][0];
    assert!(layer["DiffID"].as_str().unwrap().starts_with("sha256:"));
    // Uncompressed, the blob is the layer tar: its digest is the diff_id.
    assert_eq!(layer["Digest"], layer["DiffID"]);
    assert_eq!(inspect[1]["Config"]["Cmd"], serde_json::json!(["/bin/new"]));
    // `layers` lists the same diff_id.
    let layers = ok(&root, &["layers", "-q"]);
    assert!(layers.lines().any(|l| l == layer["DiffID"]), "{layers}");
}

#[test]
fn snapshot_primitives_live_under_snapshot_and_keep_their_old_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    ok(&root, &["snapshot", "prepare", "base-work"]);
    ok(&root, &["snapshot", "commit", "base", "base-work"]);
    // The older top-level forms, hidden from the help.
    ok(&root, &["prepare", "ctr-1", "base"]);
    let key = "k".repeat(80);
    ok(&root, &["view", &key, "base"]);
    let ls = ok(&root, &["ls"]);
    assert_eq!(ls, ok(&root, &["snapshot", "ls"]));
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(
        lines[0],
        format!("KEY{}PARENT   KIND        OWNER", " ".repeat(80)),
        "{ls}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{key}   base     view        strata"))),
        "{ls}"
    );
    assert_eq!(ok(&root, &["snapshot", "ls", "-q"]).lines().count(), 3);
    let stat = ok(&root, &["snapshot", "stat", "base"]);
    let created = stat.lines().find_map(|l| l.strip_prefix("created: "));
    let created = created.expect("a created line");
    assert!(
        created.len() == 30 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{stat}"
    );
    let help = ok(&root, &["--help"]);
    let listed = |help: &str, command: &str| {
        help.lines()
            .any(|l| l.trim_start().starts_with(&format!("{command} ")))
    };
    assert!(
        !listed(&help, "prepare") && listed(&help, "snapshot"),
        "{help}"
    );
    assert!(listed(&ok(&root, &["snapshot", "--help"]), "prepare"));
    ok(&root, &["rm", "ctr-1"]);
    ok(&root, &["snapshot", "rm", &key]);
}

#[test]
fn a_mounted_snapshot_is_neither_mounted_again_nor_removed_without_force() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let (first, second) = (tmp.path().join("m1"), tmp.path().join("m2"));
    fs::create_dir(&first).unwrap();
    fs::create_dir(&second).unwrap();
    let _first = strata_testkit::Unmount(&first);
    let _second = strata_testkit::Unmount(&second);
    ok(&root, &["snapshot", "prepare", "base-work"]);
    ok(&root, &["snapshot", "commit", "base", "base-work"]);
    ok(&root, &["snapshot", "prepare", "c1", "base"]);
    ok(&root, &["snapshot", "mount", "c1", path(&first)]);
    fs::write(first.join("live"), "data").unwrap();

    let err = fails(&root, &["snapshot", "mount", "c1", path(&second)]);
    assert!(
        err.contains(&format!("c1 is mounted at {}", first.display())) && err.contains("-f"),
        "{err}"
    );
    let err = fails(&root, &["rm", "c1"]);
    assert!(
        err.contains(&format!("c1 is mounted at {}", first.display())) && err.contains("-f"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(first.join("live")).unwrap(), "data");

    // -f moves the mount: the first one goes, the second shows the same data.
    ok(&root, &["snapshot", "mount", "-f", "c1", path(&second)]);
    assert!(!first.join("live").exists());
    assert_eq!(fs::read_to_string(second.join("live")).unwrap(), "data");
    ok(&root, &["snapshot", "rm", "-f", "c1"]);
    assert!(!second.join("live").exists(), "rm -f unmounted it");
    let err = fails(&root, &["snapshot", "stat", "c1"]);
    assert!(err.contains("c1"), "{err}");
}

#[test]
fn commit_takes_the_container_then_the_image_as_docker_does() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let layout = tmp.path().join("layout");
    oci_image(&layout, "a", "2020-01-02T03:04:05Z", "/bin/a");
    ok(&root, &["import", path(&layout), "--name", "base"]);
    ok(&root, &["rootfs", "base", "c1"]);
    let target = tmp.path().join("mnt");
    fs::create_dir(&target).unwrap();
    {
        let _mounted = strata_testkit::Unmount(&target);
        ok(&root, &["snapshot", "mount", "c1", path(&target)]);
        fs::write(target.join("made-here"), "x").unwrap();
    }
    let printed = ok(&root, &["commit", "c1", "app:2"]);
    let id = printed.trim().strip_prefix("sha256:").expect("an image id");
    let app = ok_json(&root, &["inspect", "app:2"]).unwrap();
    assert_eq!(app[0]["Id"], format!("sha256:{id}"));
    assert_eq!(app[0]["RootFS"]["Layers"].as_array().map(Vec::len), Some(2));
    // The container stays as it was, active.
    let stat = ok_json(&root, &["snapshot", "stat", "c1"]).unwrap();
    assert_eq!(stat["kind"], "active");
    // Without a name, as docker does: an image known by its id alone.
    ok(&root, &["rootfs", "base", "c2"]);
    let printed = ok(&root, &["commit", "c2"]);
    let untagged = printed.trim().strip_prefix("sha256:").expect("an image id");
    let inspect = ok_json(&root, &["inspect", &untagged[..8]]).unwrap();
    assert_eq!(inspect[0]["RepoTags"], serde_json::json!([]));
    let images = ok(&root, &["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("<none>") && l.contains(&untagged[..12])),
        "{images}"
    );
    let err = fails(&root, &["commit", "nothing", "app:3"]);
    assert!(err.contains("nothing"), "{err}");
}

#[test]
fn save_and_load_round_trip_through_files_and_pipes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (first, second, third) = (
        tmp.path().join("first"),
        tmp.path().join("second"),
        tmp.path().join("third"),
    );
    let layout = tmp.path().join("layout");
    oci_image(&layout, "a", "2020-01-02T03:04:05Z", "/bin/a");
    let imported = ok_json(&first, &["import", path(&layout), "--name", "app:1"]).unwrap();
    let id = imported["image"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sha256:"), "{id}");

    let archive = tmp.path().join("app.tar");
    ok(&first, &["save", "app:1", "-o", path(&archive)]);
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .expect("tar runs");
    let listing = String::from_utf8(listing.stdout).unwrap();
    for member in ["oci-layout", "index.json", "manifest.json", "blobs/sha256"] {
        assert!(listing.lines().any(|l| l == member), "{member}: {listing}");
    }
    assert_eq!(
        ok(&second, &["load", "-i", path(&archive)]).trim(),
        "Loaded image: app:1"
    );
    assert_eq!(
        ok_json(&second, &["inspect", "app:1"]).unwrap()[0]["Id"],
        id.as_str()
    );

    // save to stdout, load from stdin.
    let piped = tmp.path().join("piped.tar");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&first)
        .args(["save", &id[..13]])
        .stdout(fs::File::create(&piped).unwrap())
        .status()
        .expect("strata runs");
    assert!(status.success());
    let loaded = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&third)
        .args(["--json", "load"])
        .stdin(fs::File::open(&piped).unwrap())
        .output()
        .expect("strata runs");
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&loaded.stdout).unwrap();
    assert_eq!(report["image"], id.as_str());
    assert_eq!(report["tags"], serde_json::json!(["app:1"]));

    // Both kinds of tool read the one archive.
    if strata_testkit::peer("skopeo", "skopeo") {
        for transport in [
            format!("docker-archive:{}", archive.display()),
            format!("oci-archive:{}:docker.io/library/app:1", archive.display()),
        ] {
            let out = std::process::Command::new("skopeo")
                .args(["inspect", &transport])
                .output()
                .expect("skopeo runs");
            assert!(
                out.status.success(),
                "{transport}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                json["Layers"].as_array().map(Vec::len),
                Some(1),
                "{transport}"
            );
        }
    }

    let missing = tmp.path().join("missing.tar");
    let err = fails(&first, &["save", "nothing", "-o", path(&missing)]);
    assert!(err.contains("nothing"), "{err}");
    assert!(!missing.exists());
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".strata-save"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let garbage = tmp.path().join("garbage.tar");
    fs::write(&garbage, "not an archive").unwrap();
    let err = fails(&second, &["load", "-i", path(&garbage)]);
    assert!(err.contains("garbage.tar"), "{err}");
}

#[test]
fn export_refuses_an_archive_name_and_an_existing_path_saying_what_to_do() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let layout = tmp.path().join("layout");
    oci_image(&layout, "a", "2020-01-02T03:04:05Z", "/bin/a");
    ok(&root, &["import", path(&layout), "--name", "app"]);
    let archive = tmp.path().join("app.tar");
    let err = fails(&root, &["export", "app", "-o", path(&archive)]);
    assert!(err.contains("strata save IMAGE -o"), "{err}");
    assert!(!archive.exists());
    let err = fails(&root, &["export", "app", "-o", path(&layout)]);
    assert!(
        err.contains(&format!("{} already exists", layout.display())),
        "{err}"
    );
}

/// A store the process may not read: the error says how to get one it may.
#[test]
fn permission_denied_suggests_root_or_another_root() {
    let unprivileged =
        rustix::process::geteuid().is_root() && std::path::Path::new("/usr/bin/setpriv").exists();
    if !unprivileged {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    ok(&root, &["snapshot", "prepare", "k"]);
    // tempdir is 0700 and root's: user nobody may not look inside.
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&root)
        .arg("images")
        .output()
        .expect("setpriv runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&root.display().to_string())
            && err.contains("Permission denied")
            && err.contains("run as root, or pass --root"),
        "{err}"
    );
}

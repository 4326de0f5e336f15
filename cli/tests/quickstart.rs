//! `strata quickstart` through the built binary: twice on one store, checked with umoci.

mod common;

use std::path::Path;
use std::process::Command;

use common::{can_mount, ok_json, run_ok};

fn quickstart(root: &Path) -> serde_json::Value {
    ok_json(root, &["quickstart"]).unwrap()
}

#[test]
fn quickstart_runs_twice_and_exports_an_unpackable_image() {
    if !strata_testkit::peer("umoci", "umoci") {
        return;
    }
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let first = quickstart(&root);
    let steps: Vec<&str> = first["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "build", "import", "rootfs", "mount", "write", "unmount", "commit", "export"
        ]
    );
    let second = quickstart(&root);
    // The second run stores no file content again: the sample and the writes are the same.
    assert_eq!(second["base_import"]["objects_new"], 0, "{second}");
    assert!(second["base_import"]["objects_existing"].as_u64().unwrap() > 0);
    assert_eq!(second["app_import"]["objects_new"], 0, "{second}");

    let export = second["export"].as_str().unwrap();
    let bundle = dir.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args([
                "unpack",
                "--image",
                &format!("{export}:docker.io/library/quickstart-app:latest"),
            ])
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "written inside a strata container\n"
    );
    assert!(rootfs.join("srv/app/run.sh").is_file());
    assert!(
        rootfs.join("etc/hostname").is_file(),
        "the base layer is there"
    );

    // Strata wrote both layers, so it keeps no blob for them and export rebuilds them byte
    // for byte: the image keeps its id.
    let du = ok_json(&root, &["du"]).unwrap();
    assert_eq!(du["kept_blob_bytes"], 0, "{du}");
    let again = dir.path().join("again");
    let exported = ok_json(
        &root,
        &["export", "quickstart-app", "-o", again.to_str().unwrap()],
    )
    .unwrap();
    let id = ok_json(&root, &["inspect", "quickstart-app"]).unwrap()[0]["Id"].clone();
    assert_eq!(exported["manifest"], id, "{exported}");

    // Each run removes its container snapshot; nothing stays mounted.
    assert_eq!(ok_json(&root, &["ls"]).unwrap(), serde_json::json!([]));
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(root.to_str().unwrap()));
}

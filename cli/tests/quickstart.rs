//! `strata quickstart` through the built binary: twice on one store, checked with umoci.

use std::path::Path;
use std::process::Command;

fn quickstart(root: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(["--json", "quickstart"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "quickstart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn quickstart_runs_twice_and_exports_an_unpackable_image() {
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_ROOT").is_none_or(|v| v != "1"),
            "STRATA_REQUIRE_ROOT=1 but not root"
        );
        eprintln!("skipped: quickstart mounts, which needs root");
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
    let unpacked = Command::new("umoci")
        .args(["unpack", "--image", &format!("{export}:quickstart-app")])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpacked.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&unpacked.stderr)
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

    // Each run removes its container snapshot; nothing stays mounted.
    let ls = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&root)
        .args(["--json", "ls"])
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ls.stdout).unwrap(),
        serde_json::json!([])
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(root.to_str().unwrap()));
}

//! `strata build` through the built binary (root, runc and busybox needed): the steps it
//! prints, CACHED on a rebuild, a changed source, `history`, `gc --keep-build-cache`, and the
//! result exported and run by a private containerd on `strata serve`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{can_mount, ok, ok_json, run_ok};
use strata_testkit::containerd::{self, Containerd};
use strata_testkit::daemon::Daemon;

use strata_testkit::busybox::MULTI_STAGE_DOCKERFILE as DOCKERFILE;

/// The result line of each step: `CACHED` or `DONE`, by step number.
fn results(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("] ")?;
            match rest {
                "CACHED" => Some("CACHED"),
                r if r.starts_with("DONE ") => Some("DONE"),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn build_rebuild_history_gc_and_containerd_runs_the_result() {
    if !(can_mount() && containerd::peers() && strata_testkit::peer("busybox", "busybox-static")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("store");
    let layout = dir.join("busybox");
    strata_testkit::busybox::busybox_layout(&layout);
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    ok(&store, &["import", &path(&layout), "--name", "busybox"]);
    let context = dir.join("context");
    fs::create_dir(&context).unwrap();
    fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(context.join("app.txt"), "world").unwrap();
    let build = || ok(&store, &["build", "-t", "app:1", &path(&context)]);

    let first = build();
    assert!(first.contains("[5/9] RUN echo \"$GREETING from $(cat app.txt)\" > out.txt"));
    assert_eq!(
        results(&first),
        [
            "CACHED", "DONE", "DONE", "DONE", "DONE", "CACHED", "DONE", "DONE", "DONE"
        ],
        "{first}"
    );
    assert!(
        first.contains("built sha256:") && first.contains(" as app:1"),
        "{first}"
    );

    let second = build();
    assert_eq!(results(&second), ["CACHED"; 9], "{second}");
    // --json: the report on stdout, the steps on stderr.
    let report = ok_json(&store, &["build", "-t", "app:1", &path(&context)]).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 9);
    assert!(steps.iter().all(|s| s["outcome"] == "cached"), "{report}");
    assert!(report["image"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        report["tags"],
        serde_json::json!(["docker.io/library/app:1"])
    );

    fs::write(context.join("app.txt"), "strata").unwrap();
    let third = build();
    assert_eq!(
        results(&third),
        [
            "CACHED", "CACHED", "CACHED", "DONE", "DONE", "CACHED", "DONE", "DONE", "DONE"
        ],
        "{third}"
    );

    let history = ok_json(&store, &["history", "app:1"]).unwrap();
    let created_by: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    for step in [
        "COPY --from=build /work/out.txt /srv/out.txt # buildkit",
        "WORKDIR /srv",
        r#"CMD ["cat" "out.txt"]"#,
    ] {
        assert!(created_by.contains(&step), "{step} in {created_by:?}");
    }

    // Recent cache stays; `0` expires all of it, and gc takes the first stage's layers.
    let kept = ok_json(&store, &["gc", "--keep-build-cache", "1h"]).unwrap();
    assert_eq!(kept["build_cache"]["removed"], 0, "{kept}");
    let dropped = ok_json(&store, &["gc", "--keep-build-cache", "0"]).unwrap();
    assert!(
        dropped["build_cache"]["removed"].as_u64().unwrap() > 0,
        "{dropped}"
    );
    assert!(
        !dropped["layers"].as_array().unwrap().is_empty(),
        "{dropped}"
    );

    // containerd runs what strata built, exported as an OCI archive.
    let oci = dir.join("oci");
    ok(&store, &["export", "app:1", "-o", &path(&oci)]);
    let archive = dir.join("app.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&oci)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
    );
    let served = dir.join("served");
    let strata_sock = dir.join("strata.sock");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_strata"));
    serve
        .arg("--root")
        .arg(&served)
        .args(["serve", "--address"])
        .arg(&strata_sock);
    let _serve = Daemon::start("strata serve", serve, "serving snapshots on");
    let containerd_dir = dir.join("containerd");
    fs::create_dir(&containerd_dir).unwrap();
    let containerd = Containerd::start(&containerd_dir, &strata_sock);
    containerd
        .ctr(&[
            "images",
            "import",
            "--snapshotter",
            "strata",
            &path(&archive),
        ])
        .unwrap();
    let out = containerd
        .ctr(&[
            "run",
            "--rm",
            "--snapshotter",
            "strata",
            "docker.io/library/app:1",
            "strata-build-test",
        ])
        .unwrap();
    assert_eq!(out.trim(), "hello from strata");
}

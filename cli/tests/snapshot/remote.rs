//! Remote snapshots through a private containerd: an image pulled into the served root with
//! `strata pull` reaches containerd's CRI pull without a layer fetched or unpacked, containers
//! run on it, and containerd's garbage collector leaves the store's image whole.

use std::path::Path;

use crate::common::{cri, ok};
use crate::containerd::{Env, containerd_env};
use crate::server::{Access, Registry};
use strata_testkit::containerd::{CRI_NAMESPACE, Containerd, Plugins};

/// A private containerd's environment, a private registry and Debian's busybox pushed to it
/// (see [`push_busybox`]); `None`, and the test skips, without containerd or the registry.
pub(crate) fn busybox_in_a_registry() -> Option<(tempfile::TempDir, Env, Registry, (String, String))>
{
    let (tmp, env) = containerd_env()?;
    if !strata_testkit::peer("docker-registry", "docker-registry") {
        return None;
    }
    let registry = Registry::start(Access::Open);
    let pushed = push_busybox(&env.dir, &registry);
    Some((tmp, env, registry, pushed))
}

/// Debian's busybox as image `strata/busybox:1` of `registry`, pushed there from a scratch
/// store; returns its reference and its layer's blob digest.
pub(crate) fn push_busybox(dir: &Path, registry: &Registry) -> (String, String) {
    let layout = dir.join("busybox-layout");
    let manifest = strata_testkit::busybox::busybox_layout(&layout);
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let scratch = dir.join("scratch-store");
    ok(
        &scratch,
        &["import", layout.to_str().unwrap(), "--name", "busybox"],
    );
    let reference = registry.reference("strata/busybox:1");
    ok(&scratch, &["push", "busybox", &reference]);
    (reference, layer)
}

/// The snapshots containerd made through `strata serve` whose names start with `prefix`.
pub(crate) fn containerd_snapshots(env: &Env, prefix: &str) -> Vec<String> {
    env.strata_json(&["ls"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["namespace"] == "containerd")
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

pub(crate) fn assert_fsck_clean(env: &Env) {
    let fsck = env.strata_json(&["fsck"]);
    assert_eq!(fsck["problems"].as_array().map(Vec::len), Some(0), "{fsck}");
}

#[test]
fn containerd_pulls_pre_pulled_layers_without_fetching_them() {
    let Some((_tmp, env, registry, (reference, layer))) = busybox_in_a_registry() else {
        return;
    };
    let layer_gets = || {
        registry
            .log()
            .lines()
            .filter(|l| l.contains(&format!("GET /v2/strata/busybox/blobs/{layer}")))
            .count()
    };

    // Pre-pulled beside the running server, its layer materialized at once: the registry's log
    // shows Strata's own fetch.
    let _serve = env.serve();
    ok(&env.store, &["pull", "--materialize", &reference]);
    let fetched = layer_gets();
    assert!(
        fetched > 0,
        "strata pull fetched no layer:\n{}",
        registry.log()
    );
    let layers = env.strata_json(&["layers"]);
    assert!(layers[0]["materialized"].is_string(), "{layers}");

    // containerd's CRI pull, as kubelet's: manifest and config only.
    let containerd = cri::start_containerd(&env.dir, &env.strata_sock, Plugins::Cri);
    cri::pull_image(containerd.socket(), &reference).unwrap();
    assert_eq!(
        layer_gets(),
        fetched,
        "containerd fetched the layer:\n{}",
        registry.log()
    );
    let remote = containerd_snapshots(&env, "strata.remote/");
    assert_eq!(remote.len(), 1, "{remote:?}");
    let ctr = |args: &[&str]| containerd.ctr_in(CRI_NAMESPACE, args);
    run_busybox(&containerd, &reference, "remote-hello");
    assert_fsck_clean(&env);

    // containerd's garbage collector removes its snapshots, and leaves the store's image whole.
    let names = ctr(&["images", "ls", "-q"]).unwrap();
    let mut rm = vec!["images", "rm", "--sync"];
    rm.extend(names.lines());
    ctr(&rm).unwrap();
    assert_eq!(containerd_snapshots(&env, ""), Vec::<String>::new());
    let gc = env.strata_json(&["gc"]);
    assert_eq!(gc["layers"].as_array().map(Vec::len), Some(0), "{gc}");
    ok(&env.store, &["rootfs", &reference, "after-gc"]);
    let target = env.dir.join("mnt");
    std::fs::create_dir(&target).unwrap();
    let target_arg = target.to_str().unwrap();
    ok(&env.store, &["snapshot", "mount", "after-gc", target_arg]);
    let guard = strata_testkit::Unmount(&target);
    let busybox = std::fs::read(target.join("bin/busybox")).unwrap();
    assert_eq!(busybox, std::fs::read("/bin/busybox").unwrap());
    drop(guard);
    assert_fsck_clean(&env);
}

/// `ctr run --rm` of `image` on `strata` in the CRI plugin's namespace: busybox writes a file
/// and prints it with `/etc/passwd`.
pub(crate) fn run_busybox(containerd: &Containerd, image: &str, name: &str) {
    let out = containerd
        .ctr_in(
            CRI_NAMESPACE,
            &[
                "run",
                "--rm",
                "--snapshotter",
                "strata",
                image,
                name,
                "/bin/busybox",
                "sh",
                "-c",
                "echo hello > /tmp/x && cat /tmp/x /etc/passwd",
            ],
        )
        .unwrap();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["hello", "root:x:0:0:root:/root:/bin/sh"]
    );
}

//! CRI-driven fetch through a private containerd: with snapshot annotations on, the CRI
//! plugin's pull of an image the store lacks brings its layers in through `strata serve`'s own
//! registry client and importer, not containerd's; when that fetch fails, containerd fetches
//! and unpacks the layers itself.

use crate::common::cri;
use crate::containerd::Env;
use crate::remote::{assert_fsck_clean, busybox_in_a_registry, containerd_snapshots, run_busybox};
use crate::server::Registry;
use strata_testkit::containerd::{Containerd, Plugins};

/// The log line `strata serve` writes for each image it fetched for containerd.
const FETCHED: &str = "fetched an image for containerd";

/// The access-log lines of `registry` for GETs of blob `digest` of `strata/busybox`.
fn blob_gets(registry: &Registry, digest: &str) -> Vec<String> {
    let request = format!("GET /v2/strata/busybox/blobs/{digest}");
    registry
        .log()
        .lines()
        .filter(|l| l.contains(&request))
        .map(str::to_owned)
        .collect()
}

/// A private containerd with snapshot annotations on, after its CRI plugin pulled `reference`
/// (as kubelet does) onto `strata`.
fn pull_with_cri(env: &Env, reference: &str) -> Containerd {
    let plugins = Plugins::CriAnnotated {
        sandbox_image: None,
    };
    let containerd = cri::start_containerd(&env.dir, &env.strata_sock, plugins);
    cri::pull_image(containerd.socket(), reference).unwrap();
    containerd
}

#[test]
fn cri_pull_fetches_layers_through_strata() {
    let Some((_tmp, env, registry, (reference, layer))) = busybox_in_a_registry() else {
        return;
    };
    let pushed = blob_gets(&registry, &layer).len();
    let serve = env.serve();
    assert_eq!(env.strata_json(&["images"]), serde_json::json!([]));

    let containerd = pull_with_cri(&env, &reference);

    // Strata's importer brought the layer, and only Strata's client fetched it.
    let line = serve.wait_for_line(FETCHED);
    assert!(
        line.contains(&reference) && line.contains("layers_fetched=1"),
        "{line}"
    );
    let gets = blob_gets(&registry, &layer);
    assert!(gets.len() > pushed, "no layer GET:\n{}", registry.log());
    assert!(
        gets.iter().all(|l| !l.contains("containerd/")),
        "containerd fetched the layer: {gets:#?}"
    );
    // The store holds the image, containerd has its layer as a remote snapshot, and a
    // container runs on it.
    let images = env.strata_json(&["images"]);
    assert!(images.to_string().contains(&reference), "{images}");
    let remote = containerd_snapshots(&env, "strata.remote/");
    assert_eq!(remote.len(), 1, "{remote:?}");
    run_busybox(&containerd, &reference, "fetched-hello");
    assert_fsck_clean(&env);
    assert_eq!(
        serve.log().matches(FETCHED).count(),
        1,
        "one fetch per image:\n{}",
        serve.log()
    );
}

/// A registry name Strata cannot reach while containerd reaches it through a mirror in its
/// `hosts.toml`: Strata's fetch fails, and containerd pulls and unpacks the image itself.
#[test]
fn a_failed_fetch_leaves_the_pull_to_containerd() {
    let Some((_tmp, env, registry, (_, layer))) = busybox_in_a_registry() else {
        return;
    };
    let pushed = blob_gets(&registry, &layer).len();
    // `.invalid` never resolves (RFC 2606).
    let mirrored = "strata-mirror.invalid";
    let hosts = env.dir.join("certs.d").join(mirrored);
    std::fs::create_dir_all(&hosts).unwrap();
    let mirror = format!("http://{}:{}", registry.ip, registry.port);
    std::fs::write(
        hosts.join("hosts.toml"),
        format!("[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
    )
    .unwrap();
    // With the default log filter: the failure must show without STRATA_LOG.
    let serve = env.serve_env(&[("STRATA_LOG", "")]);

    let reference = format!("{mirrored}/strata/busybox:1");
    let containerd = pull_with_cri(&env, &reference);

    let line = serve.wait_for_line("fetching an image for containerd failed");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&reference), "{line}");
    let gets = blob_gets(&registry, &layer);
    assert_eq!(gets.len(), pushed + 1, "{gets:#?}");
    assert!(gets.last().unwrap().contains("containerd/"), "{gets:#?}");
    assert_eq!(env.strata_json(&["images"]), serde_json::json!([]));
    assert_eq!(containerd_snapshots(&env, "strata.remote/").len(), 0);
    run_busybox(&containerd, &reference, "fallback-hello");
    assert_fsck_clean(&env);
}

/// `strata serve --no-fetch` leaves the layers the store lacks to containerd, even when its
/// Prepares name their image.
#[test]
fn no_fetch_leaves_the_pull_to_containerd() {
    let Some((_tmp, env, registry, (reference, layer))) = busybox_in_a_registry() else {
        return;
    };
    let pushed = blob_gets(&registry, &layer).len();
    let serve = env.serve_with(&["--no-fetch"]);

    let containerd = pull_with_cri(&env, &reference);

    let gets = blob_gets(&registry, &layer);
    assert_eq!(gets.len(), pushed + 1, "{gets:#?}");
    assert!(gets.last().unwrap().contains("containerd/"), "{gets:#?}");
    assert_eq!(env.strata_json(&["images"]), serde_json::json!([]));
    assert!(!serve.log().contains("for containerd"), "{}", serve.log());
    run_busybox(&containerd, &reference, "no-fetch-hello");
}

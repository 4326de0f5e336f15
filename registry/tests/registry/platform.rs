//! Image indexes: `skopeo copy --all` pushes an index of two platforms' images; a pull picks
//! this machine's by default and the other on request, and names a platform the index lacks.

use strata_registry::{Platform, PullError};

use crate::fixtures::{Image, sha256};
use crate::index::write_index;
use crate::{World, assert_exports, pull_options, single, skopeo};

/// `image` with its config naming `platform` (and its manifest naming that config).
fn for_platform(mut image: Image, platform: &Platform) -> Image {
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["os"] = platform.os.clone().into();
    config["architecture"] = platform.architecture.clone().into();
    image.config = serde_json::to_vec(&config).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["config"]["digest"] = sha256(&image.config).into();
    manifest["config"]["size"] = image.config.len().into();
    image.manifest = serde_json::to_vec(&manifest).unwrap();
    image
}

#[test]
fn an_index_yields_the_host_platform_by_default_and_another_on_request() {
    if !strata_testkit::peer("skopeo", "skopeo") {
        return;
    }
    let Some(world) = World::new() else {
        return;
    };
    let host = Platform::host();
    let other: Platform = if host.architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    }
    .parse()
    .unwrap();
    let native = for_platform(single("native", 21, 64 << 10), &host);
    let foreign = for_platform(single("foreign", 22, 64 << 10), &other);
    let layout = world.root("layout");
    native.write_oci(&layout, "native");
    foreign.write_oci(&layout, "foreign");
    let (host_name, other_name) = (host.to_string(), other.to_string());
    write_index(
        &layout,
        "multi",
        &[
            (&native.manifest, &host_name),
            (&foreign.manifest, &other_name),
        ],
    );
    let reference = world.reference("multi:1");
    let src = format!("oci:{}:multi", layout.display());
    let dst = format!("docker://{reference}");
    skopeo(&["copy", "--all", "--dest-tls-verify=false", &src, &dst]);

    let by_default = world.store("default");
    let report = by_default.pull(&reference, &pull_options()).unwrap();
    assert_eq!(format!("sha256:{}", report.image), native.manifest_digest());
    assert_exports(&by_default, &reference, &native);

    let chosen = world.store("chosen");
    let options = pull_options().with_platform(Some(other.clone()));
    let report = chosen.pull(&reference, &options).unwrap();
    assert_eq!(
        format!("sha256:{}", report.image),
        foreign.manifest_digest()
    );
    assert_exports(&chosen, &reference, &foreign);

    let missing = world.store("missing");
    let options = pull_options().with_platform(Some("linux/s390x".parse().unwrap()));
    let err = missing.pull(&reference, &options).unwrap_err();
    match &err {
        PullError::NoPlatform {
            reference: r,
            platform,
        } => {
            assert_eq!(*r, reference);
            assert_eq!(platform, "linux/s390x");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("linux/s390x"), "{err}");
    assert!(missing.images().unwrap().is_empty());
}

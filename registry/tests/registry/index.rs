//! An image index in an OCI layout, for platform tests (shared with the CLI's tests).

use std::fs;
use std::path::Path;

use strata_layer_store::digest::Sha256;

/// Makes tag `tag` of the OCI layout at `dir` name an index of `images`, each a manifest (whose
/// blobs are in the layout already) and its platform, `os/arch`.
pub fn write_index(dir: &Path, tag: &str, images: &[(&[u8], &str)]) {
    let descriptor = |media_type: &str, bytes: &[u8]| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": Sha256::of(bytes).to_string(),
            "size": bytes.len(),
        })
    };
    let entries: Vec<serde_json::Value> = images
        .iter()
        .map(|(manifest, platform)| {
            let (os, architecture) = platform.split_once('/').expect("os/arch");
            let mut d = descriptor("application/vnd.oci.image.manifest.v1+json", manifest);
            d["platform"] = serde_json::json!({"os": os, "architecture": architecture});
            d
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    fs::write(
        dir.join("blobs/sha256").join(Sha256::of(&index).hex()),
        &index,
    )
    .unwrap();
    let mut top = descriptor("application/vnd.oci.image.index.v1+json", &index);
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let layout = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&layout).unwrap()).unwrap();
}

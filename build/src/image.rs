//! The image a stage is building: its OCI config (as JSON, so that fields this builder does
//! not know survive) and its manifest's layer descriptors; written out as an OCI layout whose
//! layer blobs are left out, because the store already holds those layers.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_layer_store::ImageRecord;
use strata_layer_store::digest::Sha256;

use crate::error::{BuildError, Result};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// One layer of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Blob media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Blob digest (`sha256:…`).
    pub digest: String,
    /// Blob size.
    pub size: u64,
}

/// A config plus layers: what each step turns into the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageState {
    /// The OCI image config.
    pub config: Value,
    /// The manifest's layers, bottom first.
    pub layers: Vec<LayerRef>,
}

impl ImageState {
    /// The empty image of `FROM scratch`.
    pub fn scratch() -> ImageState {
        ImageState {
            config: json!({
                "architecture": std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
            layers: Vec::new(),
        }
    }

    /// The state of a stored image.
    pub fn of_record(record: &ImageRecord) -> Result<ImageState> {
        let bad = |reason: String| BuildError::ImageJson {
            image: record.id(),
            reason,
        };
        let mut config: Value =
            serde_json::from_slice(&record.config).map_err(|e| bad(e.to_string()))?;
        let manifest: Value =
            serde_json::from_slice(&record.manifest).map_err(|e| bad(e.to_string()))?;
        let layers: Vec<LayerRef> = serde_json::from_value(manifest["layers"].clone())
            .map_err(|e| bad(format!("manifest layers: {e}")))?;
        if !config.is_object() || !config["rootfs"]["diff_ids"].is_array() {
            return Err(bad("config without rootfs.diff_ids".into()));
        }
        // History pairs its non-empty entries with layers: give an image without one an
        // empty entry per layer, as `commit` does.
        if !config["history"].is_array() {
            config["history"] = json!(vec![json!({}); layers.len()]);
        }
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        Ok(ImageState { config, layers })
    }

    /// A digest of the state (config and layers), naming it in cache keys.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// The runtime config (`config` of the image config), mutable.
    pub fn runtime(&mut self) -> &mut serde_json::Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        self.config["config"]
            .as_object_mut()
            .unwrap_or_else(|| unreachable!("made an object above"))
    }

    /// A string field of the runtime config (`WorkingDir`, `User`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.config["config"][name]
            .as_str()
            .filter(|s| !s.is_empty())
    }

    /// The environment, `NAME=value` each.
    pub fn env(&self) -> Vec<String> {
        self.config["config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets `name=value` in the environment, in place when it is set already.
    pub fn set_env(&mut self, name: &str, value: &str) {
        let mut env = self.env();
        let entry = format!("{name}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == name)
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
        self.runtime().insert("Env".into(), json!(env));
    }

    /// Adds `key` to the set-valued field `field` (`ExposedPorts`, `Volumes`).
    pub fn add_to_set(&mut self, field: &str, key: &str) {
        let runtime = self.runtime();
        let set = runtime.entry(field).or_insert_with(|| json!({}));
        if !set.is_object() {
            *set = json!({});
        }
        set[key] = json!({});
    }

    /// Appends a history entry; `empty_layer` when the step made no layer.
    pub fn push_history(&mut self, created_by: &str, empty_layer: bool) {
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut entry = json!({ "created": created, "created_by": created_by });
        if empty_layer {
            entry["empty_layer"] = json!(true);
        } else {
            entry["comment"] = json!("strata build");
        }
        if !self.config["history"].is_array() {
            self.config["history"] = json!([]);
        }
        if let Some(history) = self.config["history"].as_array_mut() {
            history.push(entry);
        }
        self.config["created"] = json!(created);
    }

    /// Appends a layer with its diff_id.
    pub fn push_layer(&mut self, layer: LayerRef, diff_id: &str) {
        if let Some(ids) = self.config["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(json!(diff_id));
        }
        self.layers.push(layer);
    }

    /// The config and manifest blobs of the state, as written.
    fn blobs(&self) -> (Vec<u8>, Vec<u8>) {
        let config = serde_json::to_vec(&self.config).unwrap_or_default();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(&config, CONFIG_TYPE),
            "layers": self.layers,
        });
        (config, serde_json::to_vec(&manifest).unwrap_or_default())
    }

    /// The id (manifest digest hex) the state has as an image.
    pub fn id(&self) -> String {
        Sha256::of(&self.blobs().1).hex()
    }

    /// Writes the state as image `name` of a new OCI layout at `dir`, without layer blobs.
    pub fn write_layout(&self, dir: &Path, name: &str) -> Result<()> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(BuildError::io("create", &blobs))?;
        let (config, manifest) = self.blobs();
        put(&blobs, &config)?;
        put(&blobs, &manifest)?;
        let mut descriptor = descriptor(&manifest, MANIFEST_TYPE);
        descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
        let index = json!({ "schemaVersion": 2, "manifests": [descriptor] });
        for (file, value) in [
            ("index.json", index),
            ("oci-layout", json!({ "imageLayoutVersion": "1.0.0" })),
        ] {
            let path = dir.join(file);
            fs::write(&path, serde_json::to_vec(&value).unwrap_or_default())
                .map_err(BuildError::io("write", &path))?;
        }
        Ok(())
    }
}

/// The descriptor of blob `bytes`.
fn descriptor(bytes: &[u8], media_type: &str) -> Value {
    json!({ "mediaType": media_type, "digest": Sha256::of(bytes).to_string(), "size": bytes.len() })
}

/// Writes `bytes` as a blob.
fn put(blobs: &Path, bytes: &[u8]) -> Result<()> {
    let path = blobs.join(Sha256::of(bytes).hex());
    fs::write(&path, bytes).map_err(BuildError::io("write", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_replaces_in_place_and_history_marks_empty_layers() {
        let mut state = ImageState::scratch();
        state.set_env("A", "1");
        state.set_env("B", "2");
        state.set_env("A", "3");
        assert_eq!(state.env(), ["A=3", "B=2"]);
        state.push_history("ENV A=3", true);
        assert_eq!(state.config["history"][0]["empty_layer"], json!(true));
        assert_eq!(state.config["history"][0]["created_by"], json!("ENV A=3"));
        let before = state.digest();
        state.add_to_set("ExposedPorts", "80/tcp");
        assert_ne!(state.digest(), before);
    }
}

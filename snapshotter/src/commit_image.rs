//! A container's changes as a new image: the upper dir of a snapshot prepared on an image
//! becomes one more layer, imported through the layer store's ordinary import.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, ImageIndexBuilder, MediaType, OciLayoutBuilder, Sha256Digest,
};
use serde_json::{Value, json};
use strata_cow::MountGuard;
use strata_cow::overlay::{Overlay, OverlayOptions, RedirectDir};
use strata_diff::{ChangeSet, Compression, DiffError, DiffOptions, WriteOptions};
use strata_layer_store::digest::Sha256;
use strata_layer_store::{ImageRecord, ImportOptions, ImportReport};

use crate::error::{Error, Result};
use crate::info::Kind;
use crate::snapshotter::Snapshotter;

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What [`Snapshotter::commit_image`] made.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct ImageCommit {
    /// The new layer's diff_id (`sha256:…`).
    pub diff_id: String,
    /// Its gzip blob's size in bytes.
    pub blob_size: u64,
    /// How many changes (added, modified, deleted paths) it holds.
    pub changes: usize,
    /// Whether the fast path (the upper dir alone) found them, rather than a walk of the
    /// mounted trees.
    pub from_upper_dir: bool,
    /// The layer store's import of the new image.
    pub import: ImportReport,
}

impl Snapshotter {
    /// Makes the changes of snapshot `key` (active or committed, prepared with
    /// [`Snapshotter::prepare_on_image`]) a new layer on top of its image, and the result image
    /// `name` in this root's store: the image's config gets the new diff_id and a history entry. The
    /// snapshot must not be written to meanwhile (unmount it first).
    pub fn commit_image(&self, key: &str, name: &str) -> Result<ImageCommit> {
        let store = self.store();
        let record = self.read(key)?;
        let image_id = match (&record.image, &record.parent, record.kind) {
            (Some(image), None, Kind::Active | Kind::Committed) => image.clone(),
            _ => {
                return Err(Error::NotOnImage {
                    key: key.to_owned(),
                });
            }
        };
        let store_error = |source| Error::Image {
            image: image_id.clone(),
            source: Box::new(source),
        };
        let parent = store.image(&image_id).map_err(store_error)?;
        let trees: Vec<PathBuf> = record
            .layers
            .iter()
            .map(|id| self.layout().layer_tree(id))
            .collect();
        let upper = self.layout().upper(record.id);
        let staging = self.layout().stage(false)?;
        let result = (|| {
            let oci = staging.join("oci");
            fs::create_dir_all(oci.join("blobs/sha256")).map_err(Error::io("create", &oci))?;
            let tree_refs: Vec<&Path> = trees.iter().map(PathBuf::as_path).collect();
            let (digests, changes, from_upper_dir) =
                match strata_diff::upper_changes(&tree_refs, &upper, &DiffOptions::default()) {
                    Ok(set) => {
                        let digests = write_layer(key, &set, &oci)?;
                        (digests, set.changes.len(), true)
                    }
                    // Renamed dirs or metadata-only copy-ups: diff the mounted trees.
                    Err(DiffError::NeedsTreeWalk { .. }) => {
                        let (digests, changes) = self.walk_mounted(
                            key,
                            &trees,
                            &upper,
                            record.data_lower,
                            &staging,
                            &oci,
                        )?;
                        (digests, changes, false)
                    }
                    Err(source) => return Err(diff_error(key, source)),
                };
            let layer = NewLayer {
                diff_id: &digests.diff_id,
                digest: &digests.digest,
                size: digests.size,
            };
            write_image(&oci, &parent, &layer, name)?;
            // Strata's writer made the blob; export rebuilds it byte for byte.
            let options = ImportOptions::default()
                .with_name(Some(name.to_owned()))
                .with_blob_policy(Some(strata_layer_store::BlobPolicy::Reproducible));
            let import = store
                .import(&oci, &options)
                .map_err(|e| store_error(e.into()))?;
            Ok(ImageCommit {
                diff_id: digests.diff_id,
                blob_size: digests.size,
                changes,
                from_upper_dir,
                import,
            })
        })();
        self.layout().discard(&staging);
        result
    }

    /// The slow path: mounts the image and the snapshot read-only under `staging` and diffs them.
    fn walk_mounted(
        &self,
        key: &str,
        trees: &[PathBuf],
        upper: &Path,
        data_lower: bool,
        staging: &Path,
        oci: &Path,
    ) -> Result<(strata_diff::LayerDigests, usize)> {
        let mount = |name: &str, dirs: Vec<PathBuf>| -> Result<(PathBuf, Option<MountGuard>)> {
            if let ([dir], false) = (dirs.as_slice(), data_lower) {
                return Ok((dir.clone(), None));
            }
            let target = staging.join(name);
            fs::create_dir(&target).map_err(Error::io("create", &target))?;
            let guard = read_only(
                dirs,
                data_lower.then(|| self.layout().objects()),
                self.overlay_options(),
            )
            .mount_at(&target)
            .map_err(|source| Error::Mount {
                key: key.to_owned(),
                target: target.clone(),
                source,
            })?;
            Ok((target, Some(guard)))
        };
        let (old, _old_guard) = mount("image", trees.to_vec())?;
        let mut dirs = vec![upper.to_path_buf()];
        dirs.extend(trees.iter().cloned());
        let (new, _new_guard) = mount("container", dirs)?;
        let set = strata_diff::changes(&old, &new, &DiffOptions::default())
            .map_err(|source| diff_error(key, source))?;
        Ok((write_layer(key, &set, oci)?, set.changes.len()))
    }
}

/// A read-only overlay of `dirs` (topmost first), over the stubs' `objects` when given.
fn read_only(dirs: Vec<PathBuf>, objects: Option<PathBuf>, options: &OverlayOptions) -> Overlay {
    let overlay = Overlay::new().lowers(dirs);
    match objects {
        Some(objects) => overlay.data_lower(objects).options(
            options
                .clone()
                .with_metacopy(Some(true))
                .with_redirect_dir(Some(RedirectDir::On)),
        ),
        None => overlay.options(options.clone()),
    }
}

fn diff_error(key: &str, source: DiffError) -> Error {
    Error::Diff {
        key: key.to_owned(),
        source: Box::new(source),
    }
}

/// Writes `set` as a gzip layer blob into the OCI layout `oci`.
fn write_layer(key: &str, set: &ChangeSet, oci: &Path) -> Result<strata_diff::LayerDigests> {
    let tmp = oci.join("layer.tmp");
    let file = fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
    let mut out = std::io::BufWriter::new(file);
    let digests = strata_diff::write_layer(set, &WriteOptions::new(Compression::Gzip), &mut out)
        .map_err(|source| Error::WriteLayer {
            key: key.to_owned(),
            source: Box::new(source),
        })?;
    drop(out);
    let blob = blob_path(oci, &digests.digest);
    fs::rename(&tmp, &blob).map_err(Error::io("rename", &blob))?;
    Ok(digests)
}

fn blob_path(oci: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    oci.join("blobs/sha256").join(hex)
}

/// Writes `json` as a blob and returns its descriptor.
fn put_json(oci: &Path, media_type: &str, json: &Value) -> Result<Descriptor> {
    let bytes = serde_json::to_vec(json).unwrap_or_default();
    let digest = Sha256::of(&bytes);
    let path = blob_path(oci, &digest.to_string());
    fs::write(&path, &bytes).map_err(Error::io("write", &path))?;
    let digest = Sha256Digest::from_str(&digest.hex()).expect("64 hex digits");
    Ok(Descriptor::new(
        MediaType::from(media_type),
        bytes.len() as u64,
        digest,
    ))
}

/// The new layer of a commit, as its descriptor and the config name it.
struct NewLayer<'a> {
    diff_id: &'a str,
    digest: &'a str,
    size: u64,
}

/// The parent's manifest and config plus the new layer, as image `name` of layout `oci`. The
/// parent's layer blobs are not written: the store has them, so import never reads them.
fn write_image(oci: &Path, parent: &ImageRecord, layer: &NewLayer<'_>, name: &str) -> Result<()> {
    let bad = |reason: &str| Error::ImageJson {
        image: parent.id(),
        reason: reason.to_owned(),
    };
    let mut config: Value =
        serde_json::from_slice(&parent.config).map_err(|e| bad(&e.to_string()))?;
    let mut manifest: Value =
        serde_json::from_slice(&parent.manifest).map_err(|e| bad(&e.to_string()))?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array_mut()
        .ok_or_else(|| bad("config without rootfs.diff_ids"))?;
    let earlier_layers = diff_ids.len();
    diff_ids.push(json!(layer.diff_id));
    // History has one entry per non-empty layer (tools pair them in order). A config without
    // one (or with `null`) gets an empty entry for each earlier layer: nothing was recorded.
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let object = config
        .as_object_mut()
        .ok_or_else(|| bad("config is not a JSON object"))?;
    if !object.get("history").is_some_and(Value::is_array) {
        object.insert("history".to_owned(), json!(vec![json!({}); earlier_layers]));
    }
    if let Some(history) = object.get_mut("history").and_then(Value::as_array_mut) {
        history.push(json!({
            "created": created,
            "created_by": "strata commit",
            "comment": "container changes",
        }));
    }
    object.insert("created".to_owned(), json!(created));
    // A docker manifest's layers are docker's media type; an OCI manifest's, OCI's.
    let docker = manifest["mediaType"].as_str() == Some(DOCKER_MANIFEST_MEDIA_TYPE);
    let layer_type = if docker {
        DOCKER_LAYER_MEDIA_TYPE
    } else {
        LAYER_MEDIA_TYPE
    };
    manifest["layers"]
        .as_array_mut()
        .ok_or_else(|| bad("manifest without layers"))?
        .push(json!({ "mediaType": layer_type, "digest": layer.digest, "size": layer.size }));
    let config_type = manifest["config"]["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.config.v1+json")
        .to_owned();
    let config = put_json(oci, &config_type, &config)?;
    manifest["config"] = serde_json::to_value(&config).map_err(|e| bad(&e.to_string()))?;
    let manifest_type = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_owned();
    let mut descriptor = put_json(oci, &manifest_type, &manifest)?;
    descriptor.set_annotations(Some(
        [(ANNOTATION_REF_NAME.to_owned(), name.to_owned())].into(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![descriptor])
        .build()
        .map_err(|e| bad(&e.to_string()))?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(|e| bad(&e.to_string()))?;
    for (file, value) in [
        ("index.json", serde_json::to_vec(&index)),
        ("oci-layout", serde_json::to_vec(&layout)),
    ] {
        let path = oci.join(file);
        fs::write(&path, value.unwrap_or_default()).map_err(Error::io("write", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest `write_image` wrote into layout `oci`.
    fn written_manifest(oci: &Path) -> Value {
        let index: Value =
            serde_json::from_slice(&fs::read(oci.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        serde_json::from_slice(&fs::read(blob_path(oci, digest)).unwrap()).unwrap()
    }

    #[test]
    fn the_new_layer_takes_the_media_types_of_its_manifest() {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let (diff_id, digest) = (
            format!("sha256:{}", "1".repeat(64)),
            format!("sha256:{}", "2".repeat(64)),
        );
        let layer = NewLayer {
            diff_id: &diff_id,
            digest: &digest,
            size: 3,
        };
        for (manifest_type, layer_type) in [
            (DOCKER_MANIFEST_MEDIA_TYPE, DOCKER_LAYER_MEDIA_TYPE),
            (
                "application/vnd.oci.image.manifest.v1+json",
                LAYER_MEDIA_TYPE,
            ),
        ] {
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {"mediaType": "x", "digest": "sha256:0", "size": 0},
                "layers": [],
            });
            let parent = ImageRecord {
                manifest: serde_json::to_vec(&manifest).unwrap(),
                manifest_digest: Sha256::of(b"m"),
                config: config.to_vec(),
                tags: Vec::new(),
                layers: Vec::new(),
                chain_ids: Vec::new(),
            };
            let dir = tempfile::tempdir().unwrap();
            let oci = dir.path().join("oci");
            fs::create_dir_all(oci.join("blobs/sha256")).unwrap();
            write_image(&oci, &parent, &layer, "img").unwrap();
            let written = written_manifest(&oci);
            assert_eq!(written["mediaType"], manifest_type);
            assert_eq!(written["layers"][0]["mediaType"], layer_type);
            assert_eq!(written["layers"][0]["digest"], digest.as_str());
        }
    }
}

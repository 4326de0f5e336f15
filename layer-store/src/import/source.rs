//! Import sources: where blobs come from (a directory or an indexed tar archive), and how each
//! source format names its manifest, config and layers.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::digest::{Digest, Sha256};
use crate::error::{IoContext, StoreError};
use crate::import::layer::Expected;
use crate::import::{BlobCheck, Document, ImportError};
use crate::tarstream::normalize;
use strata_codec::{Limit, Limits};

/// JSON documents (index, manifest, config) larger than this are refused.
const MAX_JSON: u64 = 16 << 20;

/// Named blobs of a source, opened by name.
pub(crate) enum Blobs {
    /// Files under a directory.
    Dir(PathBuf),
    /// Members of a tar archive: name → (offset of data, size).
    Tar {
        path: PathBuf,
        index: HashMap<String, (u64, u64)>,
    },
}

impl Blobs {
    /// Indexes the tar archive at `path` (one pass over its headers).
    pub(crate) fn index_tar(path: &Path) -> Result<Blobs, StoreError> {
        let file = File::open(path).at(path)?;
        let mut archive = tar::Archive::new(file);
        let mut index = HashMap::new();
        let mut links = Vec::new();
        for entry in archive.entries_with_seek().at(path)? {
            let entry = entry.at(path)?;
            let Some(name) = normalize(&entry.path_bytes()) else {
                continue;
            };
            let name = String::from_utf8_lossy(&name).into_owned();
            match entry.header().entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(target) = entry.link_name_bytes() {
                        links.push((name, target.into_owned(), entry.header().entry_type()));
                    }
                }
                _ => {
                    index.insert(name, (entry.raw_file_position(), entry.size()));
                }
            }
        }
        // docker save links repeated layers to the first copy (`../<id>/layer.tar`), resolved
        // inside the archive; a link leaving it names nothing.
        for (name, target, kind) in links {
            let base = match kind {
                tar::EntryType::Symlink => Path::new(&name)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            if let Some(target) = resolve_in_archive(&base, &String::from_utf8_lossy(&target)) {
                if let Some(&found) = index.get(&target) {
                    index.insert(name, found);
                }
            }
        }
        Ok(Blobs::Tar {
            path: path.to_path_buf(),
            index,
        })
    }

    /// Whether the source has blob `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        match self {
            Blobs::Dir(_) => self.open(name).is_ok(),
            Blobs::Tar { index, .. } => index.contains_key(name),
        }
    }

    /// Opens blob `name`.
    pub(crate) fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let missing = || ImportError::MissingBlob {
            blob: name.to_owned(),
        };
        let safe = normalize(name.as_bytes()).ok_or_else(missing)?;
        let safe = String::from_utf8_lossy(&safe).into_owned();
        match self {
            Blobs::Dir(root) => {
                // Symlinks inside the source resolve within it, never outside. Non-blocking,
                // so that a FIFO is refused instead of waiting for a writer forever.
                let dir = File::open(root).at(root)?;
                let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
                let fd = match rustix::fs::openat2(
                    &dir,
                    &safe,
                    flags,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT,
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Err(missing().into()),
                    Err(e) => return Err(e).at(&root.join(&safe)),
                };
                let stat = rustix::fs::fstat(&fd).at(&root.join(&safe))?;
                if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                    return Err(ImportError::NotRegularFile {
                        path: PathBuf::from(name),
                    }
                    .into());
                }
                Ok(Box::new(File::from(fd)))
            }
            Blobs::Tar { path, index } => {
                let &(offset, size) = index.get(&safe).ok_or_else(missing)?;
                let mut file = File::open(path).at(path)?;
                file.seek(SeekFrom::Start(offset)).at(path)?;
                Ok(Box::new(file.take(size)))
            }
        }
    }

    /// Reads blob `name` whole (bounded: it is JSON).
    pub(crate) fn read_json(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.open(name)?
            .take(MAX_JSON + 1)
            .read_to_end(&mut out)
            .map_err(|source| ImportError::Read {
                blob: name.to_owned(),
                source,
            })?;
        if out.len() as u64 > MAX_JSON {
            return Err(ImportError::TooLarge {
                blob: name.to_owned(),
            }
            .into());
        }
        Ok(out)
    }
}

/// `target` (a link's target) seen from directory `base` of an archive, with `.` and `..`
/// resolved; `None` when it would leave the archive. An absolute target starts at its root.
fn resolve_in_archive(base: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let start = if target.starts_with('/') { "" } else { base };
    for part in start.split('/').chain(target.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// What an import source says about its image before any layer is read.
pub(crate) struct Plan {
    /// The manifest's bytes; `None` when the source has none and one is synthesized.
    pub manifest: Option<Vec<u8>>,
    /// The config's bytes.
    pub config: Vec<u8>,
    /// The layers, bottom first.
    pub layers: Vec<Expected>,
    /// Names the source gives the image.
    pub names: Vec<String>,
    /// Where the blobs are.
    pub blobs: Blobs,
}

fn parse_digest(digest: &str) -> Result<Digest, ImportError> {
    digest.parse().map_err(|_| ImportError::BadDigest {
        digest: digest.to_owned(),
    })
}

/// Parses the JSON document `blob` as `expected`; the error names the blob, what it should
/// have been, and (as its source) where the parser stopped.
pub(crate) fn parse_json<T: DeserializeOwned>(
    blob: &str,
    expected: Document,
    bytes: &[u8],
) -> Result<T, ImportError> {
    serde_json::from_slice(bytes).map_err(|source| ImportError::BadJson {
        blob: blob.to_owned(),
        expected,
        source,
    })
}

/// Reads the blob a descriptor names and checks its size and digest.
fn read_verified(blobs: &Blobs, desc: &Descriptor) -> Result<(String, Vec<u8>), StoreError> {
    let digest = parse_digest(desc.digest().as_ref())?;
    let name = digest.blob_path();
    let bytes = blobs.read_json(&name)?;
    if bytes.len() as u64 != desc.size() {
        return Err(ImportError::Mismatch {
            blob: name,
            check: BlobCheck::Size,
            expected: desc.size().to_string(),
            actual: bytes.len().to_string(),
        }
        .into());
    }
    let actual = digest.same_algorithm_of(&bytes);
    if actual != digest {
        return Err(ImportError::Mismatch {
            blob: name,
            check: BlobCheck::Digest,
            expected: digest.to_string(),
            actual: actual.to_string(),
        }
        .into());
    }
    Ok((name, bytes))
}

/// The diff_ids a config lists.
pub(crate) fn diff_ids(name: &str, config: &[u8]) -> Result<Vec<Sha256>, StoreError> {
    let parsed: ImageConfiguration = parse_json(name, Document::Config, config)?;
    parsed
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            d.parse().map_err(|_| {
                StoreError::from(ImportError::BadDigest {
                    digest: d.to_owned(),
                })
            })
        })
        .collect()
}

/// Plans the import of an OCI image layout (a directory or an archive of one).
pub(crate) fn plan_oci(
    blobs: Blobs,
    want: Option<&str>,
    limits: &Limits,
) -> Result<Plan, StoreError> {
    let index_bytes = blobs.read_json("index.json")?;
    let index: ImageIndex = parse_json("index.json", Document::Index, &index_bytes)?;
    let mut candidates: Vec<Descriptor> = Vec::new();
    // Each descriptor with the depth of the index that lists it (index.json is 0).
    let mut queue: Vec<(Descriptor, usize)> =
        index.manifests().iter().map(|d| (d.clone(), 0)).collect();
    let mut seen = queue.len();
    let over = |limit, value: usize, max: usize| ImportError::OverLimit {
        limit,
        value: value as u64,
        max: max as u64,
    };
    if seen > limits.index_descriptors {
        return Err(over(Limit::IndexDescriptors, seen, limits.index_descriptors).into());
    }
    while let Some((desc, depth)) = queue.pop() {
        match desc.media_type() {
            MediaType::ImageIndex => {
                if depth + 1 > limits.index_depth {
                    return Err(over(Limit::IndexDepth, depth + 1, limits.index_depth).into());
                }
                let (name, bytes) = read_verified(&blobs, &desc)?;
                let nested: ImageIndex = parse_json(&name, Document::Index, &bytes)?;
                seen += nested.manifests().len();
                if seen > limits.index_descriptors {
                    return Err(
                        over(Limit::IndexDescriptors, seen, limits.index_descriptors).into(),
                    );
                }
                queue.extend(nested.manifests().iter().map(|d| (d.clone(), depth + 1)));
            }
            _ => candidates.push(desc),
        }
    }
    let ref_name = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned())
    };
    let platform_ok = |d: &Descriptor| {
        d.platform().as_ref().is_none_or(|p| {
            p.architecture().to_string()
                == std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64")
        })
    };
    if candidates.len() > 1 {
        if let Some(want) = want {
            let tag = want.rsplit(':').next().unwrap_or(want);
            let named: Vec<_> = candidates
                .iter()
                .filter(|d| ref_name(d).is_some_and(|r| r == want || r == tag))
                .cloned()
                .collect();
            if !named.is_empty() {
                candidates = named;
            }
        }
        candidates.retain(platform_ok);
    }
    let desc = match candidates.as_slice() {
        [one] => one.clone(),
        [] => return Err(ImportError::NoImage.into()),
        many => {
            return Err(ImportError::AmbiguousImage { count: many.len() }.into());
        }
    };
    let (manifest_name, manifest_bytes) = read_verified(&blobs, &desc)?;
    let manifest: ImageManifest = parse_json(&manifest_name, Document::Manifest, &manifest_bytes)?;
    let (config_name, config) = read_verified(&blobs, manifest.config())?;
    let diff_ids = diff_ids(&config_name, &config)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImportError::LayerCount {
            manifest: manifest.layers().len(),
            config: diff_ids.len(),
        }
        .into());
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
        check_layer_media_type(desc)?;
        let digest = parse_digest(desc.digest().as_ref())?;
        layers.push(Expected {
            blob: digest.blob_path(),
            digest: Some(digest),
            size: Some(desc.size()),
            diff_id: Some(diff_id),
        });
    }
    Ok(Plan {
        manifest: Some(manifest_bytes),
        config,
        layers,
        names: ref_name(&desc).into_iter().collect(),
        blobs,
    })
}

fn check_layer_media_type(desc: &Descriptor) -> Result<(), ImportError> {
    let media_type = desc.media_type().to_string();
    let known = media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.");
    if known {
        Ok(())
    } else {
        Err(ImportError::UnsupportedMediaType {
            blob: desc.digest().to_string(),
            media_type,
        })
    }
}

/// One image of a `docker save` `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Plans the import of a `docker save` archive.
pub(crate) fn plan_docker(blobs: Blobs, want: Option<&str>) -> Result<Plan, StoreError> {
    let bytes = blobs.read_json("manifest.json")?;
    let mut images: Vec<DockerManifest> =
        parse_json("manifest.json", Document::DockerManifest, &bytes)?;
    if images.len() > 1 {
        if let Some(want) = want {
            images.retain(|m| m.repo_tags.iter().flatten().any(|t| t == want));
        }
    }
    let image = match images.len() {
        1 => images.remove(0),
        0 => return Err(ImportError::NoImage.into()),
        count => return Err(ImportError::AmbiguousImage { count }.into()),
    };
    let config = blobs.read_json(&image.config)?;
    let diff_ids = diff_ids(&image.config, &config)?;
    if diff_ids.len() != image.layers.len() {
        return Err(ImportError::LayerCount {
            manifest: image.layers.len(),
            config: diff_ids.len(),
        }
        .into());
    }
    let layers = image
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(blob, diff_id)| Expected {
            blob: blob.clone(),
            digest: None,
            size: None,
            diff_id: Some(diff_id),
        })
        .collect();
    Ok(Plan {
        manifest: None,
        config,
        layers,
        names: image.repo_tags.unwrap_or_default(),
        blobs,
    })
}

/// Plans the import of a single layer tar (plain or compressed) at `path`.
pub(crate) fn plan_layer(path: &Path) -> Result<Plan, StoreError> {
    // The user named this file: a symlink to it is followed, wherever it points.
    let resolved;
    let path = if fs::symlink_metadata(path).at(path)?.is_symlink() {
        resolved = fs::canonicalize(path).at(path)?;
        resolved.as_path()
    } else {
        path
    };
    // A bare file name's parent is "", which names nothing: that is the current directory.
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Plan {
        manifest: None,
        config: Vec::new(),
        layers: vec![Expected {
            blob: file_name,
            ..Expected::default()
        }],
        names: Vec::new(),
        blobs: Blobs::Dir(parent),
    })
}

#[cfg(test)]
mod tests {
    use super::resolve_in_archive;

    #[test]
    fn archive_links_resolve_inside_the_archive() {
        assert_eq!(
            resolve_in_archive("m", "../l/layer.tar").as_deref(),
            Some("l/layer.tar")
        );
        assert_eq!(resolve_in_archive("a/b", "./c").as_deref(), Some("a/b/c"));
        assert_eq!(
            resolve_in_archive("m", "/l/layer.tar").as_deref(),
            Some("l/layer.tar")
        );
        assert_eq!(resolve_in_archive("x", "../../etc/passwd"), None);
        assert_eq!(resolve_in_archive("", ".."), None);
    }
}

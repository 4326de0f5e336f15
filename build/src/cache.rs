//! The build cache: one JSON file per step under `<root>/build-cache/v1/`, named by the step's
//! key, holding the image state the step produced; a layer it made is kept alive by the layer
//! store GC root `build-cache:<key>`. See `docs/format.md`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{BuildError, Result};
use crate::image::ImageState;

/// The cache's directory under the store root.
pub const CACHE_DIR: &str = "build-cache";
/// The format version: entries live in `build-cache/v<VERSION>/`.
pub const VERSION: u32 = 1;
/// GC-root owners of cache entries start with this.
pub const OWNER_PREFIX: &str = "build-cache:";

/// One cached step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// [`VERSION`].
    pub version: u32,
    /// The step's key (hex).
    pub key: String,
    /// The instruction, as history shows it.
    pub created_by: String,
    /// The image state after the step.
    pub state: ImageState,
    /// The layer the step made (layer store id), if any.
    pub layer: Option<String>,
    /// When the step ran (seconds since the epoch).
    pub created: u64,
    /// When a build last used the entry (seconds since the epoch).
    pub last_used: u64,
}

/// The cache of one store root.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// The key of a step: the state it starts from, the instruction as evaluated, and what else
/// decides its result (environment, network, content checksum of sources).
pub fn key(parent: &ImageState, instruction: &str, extra: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(format!("strata-build-cache v{VERSION}\0").as_bytes());
    hasher.update(parent.digest().as_bytes());
    for part in std::iter::once(instruction).chain(extra.iter().copied()) {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// The GC-root owner of entry `key`.
pub fn owner(key: &str) -> String {
    format!("{OWNER_PREFIX}{key}")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Cache {
    /// The cache of the store at `root`, its directory created if missing.
    pub fn open(root: &Path) -> Result<Cache> {
        let dir = Cache::dir(root);
        fs::create_dir_all(&dir).map_err(BuildError::io("create", &dir))?;
        Ok(Cache { dir })
    }

    /// The cache of the store at `root` without creating anything: a store no build used has
    /// no entries.
    pub fn existing(root: &Path) -> Cache {
        Cache {
            dir: Cache::dir(root),
        }
    }

    /// The cache's directory for the store at `root`.
    pub fn dir(root: &Path) -> PathBuf {
        root.join(CACHE_DIR).join(format!("v{VERSION}"))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Entry `key`, if present and readable; an entry that does not decode is a miss (and is
    /// overwritten by the step's new result).
    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        let path = self.path(key);
        match read(&path) {
            Ok(entry) => Ok(Some(entry)),
            Err(BuildError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(BuildError::CacheEntry { reason, .. }) => {
                tracing::warn!(path = %path.display(), %reason, "unreadable build cache entry");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `entry`, replacing any entry of its key: written to a temporary file, renamed
    /// into place.
    pub fn put(&self, entry: &Entry) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes = serde_json::to_vec(entry).unwrap_or_default();
        fs::write(&tmp, bytes).map_err(BuildError::io("write", &tmp))?;
        let path = self.path(&entry.key);
        fs::rename(&tmp, &path).map_err(BuildError::io("rename", &path))
    }

    /// Every readable entry, with its file.
    pub fn entries(&self) -> Result<Vec<(PathBuf, Entry)>> {
        let mut out = Vec::new();
        let listing = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            other => other.map_err(BuildError::io("read", &self.dir))?,
        };
        for item in listing {
            let path = item.map_err(BuildError::io("read", &self.dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match read(&path) {
                Ok(entry) => out.push((path, entry)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = &e as &dyn std::error::Error, "skipping")
                }
            }
        }
        Ok(out)
    }

    /// Removes the file of entry `key`.
    pub fn remove(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(BuildError::io("remove", &path)(e))
            }
            _ => Ok(()),
        }
    }
}

fn read(path: &Path) -> Result<Entry> {
    let bytes = fs::read(path).map_err(BuildError::io("read", path))?;
    let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| BuildError::CacheEntry {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if entry.version != VERSION {
        return Err(BuildError::CacheEntry {
            path: path.to_owned(),
            reason: format!("version {} (this build reads {VERSION})", entry.version),
        });
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 entry as `strata build` wrote it (`RUN true` on busybox, no layer).
    const V1_SAMPLE: &str = r#"{"version":1,"key":"0f3c","created_by":"RUN /bin/sh -c true # buildkit","state":{"config":{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{},{"created":"2026-12-05T06:00:00Z","created_by":"RUN /bin/sh -c true # buildkit","empty_layer":true}]},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bb","size":10}]},"layer":null,"created":1796450400,"last_used":1796450401}"#;

    #[test]
    fn decodes_a_version_1_sample_and_skips_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        fs::write(cache.path("0f3c"), V1_SAMPLE).unwrap();
        let entry = cache.get("0f3c").unwrap().unwrap();
        assert_eq!(entry.created_by, "RUN /bin/sh -c true # buildkit");
        assert_eq!((entry.layer, entry.last_used), (None, 1_796_450_401));
        assert_eq!(entry.state.layers[0].digest, "sha256:bb");
        assert_eq!(entry.state.config["history"][1]["empty_layer"], true);
        let v2 = V1_SAMPLE.replace(r#""version":1"#, r#""version":2"#);
        fs::write(cache.path("0f3c"), v2).unwrap();
        assert!(cache.get("0f3c").unwrap().is_none());
    }

    #[test]
    fn entries_round_trip_and_keys_depend_on_every_part() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let state = ImageState::scratch();
        let k = key(&state, "RUN true", &["PATH=/bin"]);
        assert_ne!(k, key(&state, "RUN true", &["PATH=/usr/bin"]));
        assert_ne!(k, key(&state, "RUN true", &[]));
        assert_eq!(cache.get(&k).unwrap().map(|e| e.key), None);
        let entry = Entry {
            version: VERSION,
            key: k.clone(),
            created_by: "RUN true".into(),
            state: state.clone(),
            layer: Some("ab".into()),
            created: 1,
            last_used: 2,
        };
        cache.put(&entry).unwrap();
        let back = cache.get(&k).unwrap().unwrap();
        assert_eq!(
            (back.state, back.layer, back.last_used),
            (state, Some("ab".into()), 2)
        );
        assert_eq!(cache.entries().unwrap().len(), 1);
        fs::write(cache.path(&k), b"{").unwrap();
        assert!(cache.get(&k).unwrap().is_none());
        cache.remove(&k).unwrap();
        assert!(!cache.path(&k).exists());
    }
}

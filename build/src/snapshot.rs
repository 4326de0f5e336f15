//! A step's writable rootfs: the image state so far, stored as a transient image, a snapshot
//! prepared on it and mounted; afterwards the snapshot's upper dir becomes the step's layer
//! through the snapshotter's image commit. Everything transient goes when the step ends,
//! whatever happened.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use strata_snapshotter::MountGuard;

use crate::backend::Backend;
use crate::error::{BuildError, Result};
use crate::image::{ImageState, LayerRef};

/// Transient snapshots' keys start with this.
const SNAPSHOT_PREFIX: &str = "strata-build-";
/// Transient images' names (normalized) start with this.
const IMAGE_PREFIX: &str = "localhost/strata-build:";

/// A layer a step made.
#[derive(Debug, Clone)]
pub struct NewLayer {
    /// Its manifest descriptor.
    pub layer: LayerRef,
    /// Its diff_id (`sha256:…`).
    pub diff_id: String,
    /// Its layer store id.
    pub id: String,
}

/// Names and scratch space of one build.
#[derive(Debug)]
pub struct Workspace {
    token: String,
    dir: PathBuf,
    counter: AtomicU64,
}

impl Workspace {
    /// A workspace under the store's `tmp/`, named after this process and the time.
    pub fn new(backend: &Backend) -> Result<Workspace> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let token = format!("{}-{nanos}", std::process::id());
        let dir = backend.scratch_dir(&format!("build-{token}"))?;
        Ok(Workspace {
            token,
            dir,
            counter: AtomicU64::new(0),
        })
    }

    /// A fresh numbered scratch dir and the names of its transient image and snapshot.
    fn next(&self) -> Result<(PathBuf, String, String)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(n.to_string());
        fs::create_dir_all(&dir).map_err(BuildError::io("create", &dir))?;
        let image = format!("{IMAGE_PREFIX}{}-{n}", self.token);
        let key = format!("{SNAPSHOT_PREFIX}{}-{n}", self.token);
        Ok((dir, image, key))
    }

    /// A fresh scratch dir for the result's layout, and a transient name for it.
    pub fn result_dir(&self) -> Result<(PathBuf, String)> {
        let (dir, image, _) = self.next()?;
        Ok((dir.join("result"), image))
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // A mount an unmount failed to remove would have its snapshot's files deleted through it.
        if let Some(mount) = mounts_under(&self.dir).first() {
            tracing::warn!(mount = %mount.display(), "build scratch dir left behind: still mounted");
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "build scratch dir left behind");
        }
    }
}

/// The mount points at or below `dir`, deepest first, from `/proc/self/mountinfo` (its octal
/// escapes undone).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by(|a, b| b.cmp(a));
    points
}

/// Removes what builds that died left behind: their mounts and scratch dirs under `tmp/`, their
/// transient snapshots and images. Only those of processes that no longer run: the names carry
/// the pid of the build that made them, and other builds may run on the root meanwhile.
pub fn recover(backend: &Backend) -> Result<()> {
    let tmp = backend.root().join("tmp");
    let entries = match fs::read_dir(&tmp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BuildError::io("read", &tmp)(e)),
    };
    for entry in entries {
        let dir = entry.map_err(BuildError::io("read", &tmp))?.path();
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        if !name.is_some_and(|n| n.strip_prefix("build-").is_some_and(dead)) {
            continue;
        }
        for point in mounts_under(&dir) {
            if let Err(e) = strata_cow::unmount(&point) {
                tracing::warn!(mount = %point.display(), error = &e as &dyn std::error::Error, "left by a build");
            }
        }
        if mounts_under(&dir).is_empty() {
            fs::remove_dir_all(&dir).map_err(BuildError::io("remove", &dir))?;
        }
    }
    for key in backend.snapshots()? {
        if key.strip_prefix(SNAPSHOT_PREFIX).is_some_and(dead) {
            tracing::info!(key, "removing a snapshot left by a build");
            backend.remove_snapshot(&key)?;
        }
    }
    for tag in backend.tags()? {
        if tag.strip_prefix(IMAGE_PREFIX).is_some_and(dead) {
            tracing::info!(tag, "removing an image left by a build");
            backend.remove_image(&tag)?;
        }
    }
    Ok(())
}

/// Whether the process whose pid starts `token` (`<pid>-…`) no longer runs.
fn dead(token: &str) -> bool {
    match token.split('-').next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => !Path::new("/proc").join(pid.to_string()).exists(),
        None => false,
    }
}

/// `\NNN` octal escapes (space, tab, newline, backslash) as the kernel writes them.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What to undo when a step ends.
struct Transient<'a> {
    backend: &'a Backend,
    images: Vec<String>,
    snapshot: Option<String>,
}

impl Drop for Transient<'_> {
    fn drop(&mut self) {
        if let Some(key) = &self.snapshot {
            if let Err(e) = self.backend.remove_snapshot(key) {
                tracing::warn!(
                    key,
                    error = &e as &dyn std::error::Error,
                    "build snapshot left behind"
                );
            }
        }
        for image in &self.images {
            if let Err(e) = self.backend.remove_image(image) {
                tracing::warn!(
                    image,
                    error = &e as &dyn std::error::Error,
                    "transient build image left behind"
                );
            }
        }
    }
}

/// A state mounted read-only in spirit (a step reads it, writes nothing): for `COPY --from`.
pub struct Mounted<'a> {
    // Unmounted before the snapshot goes: fields drop in order.
    _mount: MountGuard,
    _transient: Transient<'a>,
    /// Where it is mounted.
    pub rootfs: PathBuf,
}

/// Prepares a snapshot on `state`, returning its transient things and the rootfs dir.
fn prepare<'a>(
    backend: &'a Backend,
    ws: &Workspace,
    state: &ImageState,
) -> Result<(Transient<'a>, PathBuf, String)> {
    let (dir, image, key) = ws.next()?;
    let oci = dir.join("oci");
    state.write_layout(&oci, &image)?;
    let mut transient = Transient {
        backend,
        images: Vec::new(),
        snapshot: None,
    };
    backend.import(&oci, &image)?;
    transient.images.push(image.clone());
    backend.prepare(&key, &image)?;
    transient.snapshot = Some(key.clone());
    let rootfs = dir.join("rootfs");
    fs::create_dir(&rootfs).map_err(BuildError::io("create", &rootfs))?;
    Ok((transient, rootfs, key))
}

/// Mounts `state` for reading.
pub fn mount<'a>(backend: &'a Backend, ws: &Workspace, state: &ImageState) -> Result<Mounted<'a>> {
    let (transient, rootfs, key) = prepare(backend, ws, state)?;
    let mount = backend.mount(&key, &rootfs)?;
    Ok(Mounted {
        _mount: mount,
        _transient: transient,
        rootfs,
    })
}

/// Runs `work` on a writable rootfs of `state` (given the rootfs and a scratch dir), then
/// stores its changes as a layer kept by GC root `gc_owner`; `None` when it changed nothing.
pub fn with_rootfs(
    backend: &Backend,
    ws: &Workspace,
    state: &ImageState,
    gc_owner: &str,
    work: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<Option<NewLayer>> {
    let (mut transient, rootfs, key) = prepare(backend, ws, state)?;
    {
        let _mount = backend.mount(&key, &rootfs)?;
        let scratch = rootfs.with_file_name("work");
        work(&rootfs, &scratch)?;
    }
    let out = format!("{}-out", transient.images[0]);
    let made = backend.commit(&key, &out)?;
    transient.images.push(out.clone());
    if made.changes == 0 {
        return Ok(None);
    }
    let record = backend.image(&out)?.ok_or_else(|| BuildError::ImageJson {
        image: out.clone(),
        reason: "the committed image is gone".into(),
    })?;
    let manifest: Value =
        serde_json::from_slice(&record.manifest).map_err(|e| BuildError::ImageJson {
            image: out.clone(),
            reason: e.to_string(),
        })?;
    let layer: LayerRef = manifest["layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .ok_or_else(|| BuildError::ImageJson {
            image: out.clone(),
            reason: "manifest without the new layer".into(),
        })?;
    let id = made.diff_id.trim_start_matches("sha256:").to_owned();
    // While the transient image still holds the layer.
    backend.add_gc_root(gc_owner, &id)?;
    Ok(Some(NewLayer {
        layer,
        diff_id: made.diff_id,
        id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b\134c"), "/tmp/a b\\c");
        assert_eq!(unescape("/plain"), "/plain");
        assert!(!mounts_under(Path::new("/proc")).is_empty());
        assert!(mounts_under(Path::new("/no/such/dir")).is_empty());
    }
}

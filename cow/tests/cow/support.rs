//! Fixtures: trees built by code in a temp dir, root checks, mount-table checks.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

pub use strata_testkit::can_mount;

/// Returns early from a test (with `Ok(())`) when it cannot mount.
macro_rules! require_root {
    () => {
        if !$crate::support::can_mount() {
            return Ok(());
        }
    };
}
pub(crate) use require_root;

/// A scratch dir whose drop first checks that no mount is left under it.
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    pub fn new() -> io::Result<Scratch> {
        Ok(Scratch {
            dir: tempfile::Builder::new().prefix("strata-cow-").tempdir()?,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new empty directory `name` under the scratch dir.
    pub fn dir(&self, name: &str) -> io::Result<PathBuf> {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// A directory `name` holding `files` (`path` → content; parents created).
    pub fn layer(&self, name: &str, files: &[(&str, &str)]) -> io::Result<PathBuf> {
        let root = self.dir(name)?;
        for (path, content) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().expect("a file has a parent"))?;
            fs::write(path, content)?;
        }
        Ok(root)
    }

    /// Upper, work and target dirs named `{name}-upper` etc.
    pub fn rw(&self, name: &str) -> io::Result<(PathBuf, PathBuf, PathBuf)> {
        Ok((
            self.dir(&format!("{name}-upper"))?,
            self.dir(&format!("{name}-work"))?,
            self.dir(&format!("{name}-target"))?,
        ))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let left = mounts_under(self.dir.path());
        if !left.is_empty() {
            // Detach them so that removing the temp dir cannot reach into a lower.
            for m in &left {
                let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
            }
            if !std::thread::panicking() {
                panic!("mounts left behind: {left:?}");
            }
        }
    }
}

/// Mount points at or under `dir`, from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

/// True when `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    mounts_under(path).iter().any(|m| m == path)
}

/// Undoes mountinfo's `\ooo` escapes.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let code = std::str::from_utf8(&bytes[i + 1..i + 4]).expect("digits");
            out.push(u8::from_str_radix(code, 8).expect("octal"));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The raw errno of an io error, for asserting e.g. `EROFS`.
pub fn errno(err: &io::Error) -> Option<rustix::io::Errno> {
    err.raw_os_error().map(rustix::io::Errno::from_raw_os_error)
}

/// What a tree looks like to a reader, entry by entry (relative path → summary), for comparing
/// a materialized tree with the kernel's overlay view.
pub fn snapshot(root: &Path) -> io::Result<std::collections::BTreeMap<PathBuf, String>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Overlay lists a whiteout that sits in a lower dir merging with nothing, yet no
            // lookup finds it: it is not there for a reader.
            Err(e) if e.kind() == io::ErrorKind::NotFound && path != root => continue,
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        let body = if ft.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
            "dir".to_owned()
        } else if ft.is_file() {
            let bytes = fs::read(&path)?;
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&bytes, &mut hasher);
            format!(
                "file len={} hash={:x}",
                bytes.len(),
                std::hash::Hasher::finish(&hasher)
            )
        } else if ft.is_symlink() {
            format!("symlink {:?}", fs::read_link(&path)?)
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {:x}", meta.rdev())
        } else {
            "fifo/socket".to_owned()
        };
        let xattrs: Vec<String> = strata_cow::xattr::all(&path)?
            .into_iter()
            .filter(|(name, _)| !strata_cow::conventions::is_overlay_xattr(name))
            .map(|(n, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&n),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect();
        let summary = format!(
            "{body} mode={:o} owner={}:{} mtime={}.{} xattrs={xattrs:?}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        let rel = path.strip_prefix(root).expect("under root").to_path_buf();
        out.insert(rel, summary);
    }
    Ok(out)
}

/// A reflink-capable XFS filesystem in a sparse image file, loop-mounted for one test.
pub struct LoopXfs(strata_testkit::loopfs::LoopFs);

impl LoopXfs {
    pub fn new(s: &Scratch) -> anyhow::Result<LoopXfs> {
        let mkfs = ["mkfs.xfs", "-q", "-m", "reflink=1"];
        Ok(LoopXfs(strata_testkit::loopfs::LoopFs::new(
            s.path(),
            "xfs",
            320 << 20,
            &mkfs,
        )?))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

//! Fixtures: trees built by code in a temp dir, root checks, mount-table checks.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use strata_testkit::tree;
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

/// What a tree looks like to a reader, entry by entry, the root included, for comparing a
/// materialized tree with the kernel's overlay view: all but overlay's own xattrs, and mtimes to
/// the nanosecond.
pub fn snapshot(root: &Path) -> tree::Snapshot {
    let options = tree::Options::default()
        .with_root()
        .with_xattrs(tree::Xattrs::Matching(|name| {
            !strata_cow::conventions::is_overlay_xattr(name)
        }))
        .with_mtime(tree::Mtime::Nanos);
    tree::snapshot(root, &options)
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

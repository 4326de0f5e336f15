//! Fixtures: trees built by code in a temp dir, root checks, mount-table checks.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// True when mounting is possible; otherwise prints why the test is skipped, or panics when
/// `STRATA_REQUIRE_ROOT=1` demands that it run.
pub fn can_mount() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("STRATA_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!("STRATA_REQUIRE_ROOT=1 but this test runs without root");
    }
    eprintln!("skipped: mounting needs root (run as root or set STRATA_REQUIRE_ROOT=1 to fail)");
    false
}

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

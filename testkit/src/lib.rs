//! Test support shared by the Strata crates' tests (a dev-dependency, not published).
//!
//! ```
//! if !strata_testkit::can_mount() {
//!     return; // skipped, and said so on stderr
//! }
//! if !strata_testkit::peer("umoci", "umoci") {
//!     return; // skipped: "needs umoci (Debian package umoci)"
//! }
//! // … mount for real, and drive umoci …
//! ```

#![forbid(unsafe_code)]

pub mod busybox;
mod chain;
pub mod containerd;
pub mod daemon;
pub mod hostile;
pub mod layer;
pub mod loopfs;
pub mod registry;
pub mod shadow;
pub mod tree;

pub use chain::{assert_chain_once, error_chain};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Whether the calling test may mount and chown, which needs root.
///
/// Not root, it prints that the test is skipped and returns false, unless
/// `STRATA_REQUIRE_ROOT=1` (set by CI, which runs as root) demands that such tests run: then it
/// panics, so that a skipped mount test can never pass CI unnoticed.
pub fn can_mount() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let test = current_test();
    assert!(
        !required("STRATA_REQUIRE_ROOT"),
        "{test} needs root, and STRATA_REQUIRE_ROOT=1 says it must run"
    );
    eprintln!("skipped {test}: it mounts, which needs root");
    false
}

/// Whether peer tool `tool` (a program the test runs, from Debian package `package`) is on
/// `PATH`.
///
/// Missing, it prints one line saying the test is skipped and which package provides the tool,
/// and returns false, unless `STRATA_REQUIRE_PEERS=1` (set by CI after it installs the packages)
/// demands that such tests run: then it panics.
pub fn peer(tool: &str, package: &str) -> bool {
    if on_path(tool) {
        return true;
    }
    let test = current_test();
    assert!(
        !required("STRATA_REQUIRE_PEERS"),
        "{test} needs {tool} (Debian package {package}), and STRATA_REQUIRE_PEERS=1 says it must run"
    );
    eprintln!("skipped {test}: needs {tool} (Debian package {package})");
    false
}

/// Whether an executable file named `tool` is in one of `PATH`'s directories.
fn on_path(tool: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(tool)))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether environment variable `name` is `1`.
fn required(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// The calling test's name: the test harness names each test's thread after the test.
fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned()
}

/// Flips 16 bytes of `file` at offsets drawn from `seed` (xorshift: deterministic, no crate),
/// as damage to a file on disk would.
pub fn flip_bytes(file: &std::path::Path, seed: u64) {
    let mut data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..16 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x % data.len() as u64) as usize;
        data[at] ^= 0xff;
    }
    std::fs::write(file, data).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
}

/// Unmounts the path it holds when dropped, every mount stacked there, so a failing test leaves
/// no mount behind.
pub struct Unmount<'a>(pub &'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        use rustix::mount::{UnmountFlags, unmount};
        while unmount(self.0, UnmountFlags::empty()).is_ok() {}
        // Busy (something else on the machine looking into it): detach it.
        let _ = unmount(self.0, UnmountFlags::DETACH);
    }
}

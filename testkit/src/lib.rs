//! Test support shared by the Strata crates' tests (a dev-dependency, not published).
//!
//! ```
//! if !strata_testkit::can_mount() {
//!     return; // skipped, and said so on stderr
//! }
//! // … mount for real …
//! ```

#![forbid(unsafe_code)]

pub mod hostile;

/// Whether the calling test may mount and chown, which needs root.
///
/// Not root, it prints that the test is skipped and returns false, unless
/// `STRATA_REQUIRE_ROOT=1` (set by CI, which runs as root) demands that such tests run: then it
/// panics, so that a skipped mount test can never pass CI unnoticed.
pub fn can_mount() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    // The test harness names each test's thread after the test.
    let current = std::thread::current();
    let test = current.name().unwrap_or("this test");
    assert!(
        std::env::var_os("STRATA_REQUIRE_ROOT").is_none_or(|v| v != "1"),
        "{test} needs root, and STRATA_REQUIRE_ROOT=1 says it must run"
    );
    eprintln!("skipped {test}: it mounts, which needs root");
    false
}

/// `err` and every cause below it, joined with `": "`, as the CLI prints an error.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

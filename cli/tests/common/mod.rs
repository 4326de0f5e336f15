//! Helpers the CLI test crates share: run the built `strata` against a store root.

// Each test crate uses its own subset.
#![allow(dead_code, unused_imports)]

pub mod cri;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

/// How long one `strata` run may take before the test fails instead of hanging (a lock
/// waited on forever is a bug these tests must report, not sit out).
const DEADLINE: Duration = Duration::from_secs(300);

/// Runs `strata --root ROOT ARGS…` and returns what it did, whatever the exit status; kills it
/// and fails the test when it outlives [`DEADLINE`].
pub fn strata(root: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command.arg("--root").arg(root).args(args);
    within_deadline(&mut command)
}

/// Runs `command` with stdin empty and returns what it did, whatever the exit status; kills it
/// (by PID) and fails the test when it outlives [`DEADLINE`].
pub fn within_deadline(command: &mut Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    let pid = child.id();
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match output.recv_timeout(DEADLINE) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {command:?}: {e}")),
        Err(_) => {
            let pid = rustix::process::Pid::from_raw(pid as i32).expect("a child pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            panic!("{command:?} still running after {DEADLINE:?}");
        }
    }
}

/// Runs `command` (a peer tool such as umoci), which must succeed.
pub fn run_ok(command: &mut Command) {
    let out = command.output().expect("running a tool");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `strata --root ROOT ARGS…`, which must succeed, and returns its stdout.
pub fn ok(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(
        out.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs `strata --root ROOT --json ARGS…`, which must succeed, and parses its stdout.
pub fn ok_json(root: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = strata(root, &full);
    anyhow::ensure!(
        out.status.success(),
        "strata {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("stdout is one JSON document")
}

pub use strata_testkit::can_mount;

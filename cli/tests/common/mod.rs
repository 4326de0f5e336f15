//! Helpers the CLI test crates share: run the built `strata` against a store root.

// Each test crate uses its own subset.
#![allow(dead_code, unused_imports)]

pub mod daemon;

use std::path::Path;
use std::process::{Command, Output};

use anyhow::Context;

/// Runs `strata --root ROOT ARGS…` and returns what it did, whatever the exit status.
pub fn strata(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("running strata")
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

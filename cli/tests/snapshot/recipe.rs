//! The offline recipe of `docs/containerd.md`, run as written: the `sh` blocks of its section, in
//! order, by one bash, with `STRATA_DEMO` in a temp dir and the built `strata` first on `PATH`.
//! Its clean-up block (stop containerd and `strata serve` by PID, unmount, remove) runs
//! afterwards whatever happened, and must leave no mount behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{can_mount, within_deadline};
use crate::containerd::containerd_peers;

const GUIDE: &str = include_str!("../../../docs/containerd.md");
/// The heading of the recipe's section; the section ends at the next `## ` heading.
const SECTION: &str = "## Offline, with a private containerd";
/// The first line of the clean-up block.
const CLEANUP: &str = "# Clean up";

/// The `sh` blocks of the recipe's section, in order.
fn blocks() -> Vec<String> {
    let start = GUIDE.find(SECTION).expect("the recipe's section") + SECTION.len();
    let section = &GUIDE[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed sh block in {SECTION}");
    blocks
}

/// Runs `script` with bash as the reader of the guide would, in `STRATA_DEMO=demo`, stopping at
/// the first failing command.
fn bash(script: &str, demo: &Path) -> Output {
    let strata = Path::new(env!("CARGO_BIN_EXE_strata"));
    let mut path = vec![strata.parent().unwrap().to_owned()];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    within_deadline(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .env("STRATA_DEMO", demo)
            .env("PATH", std::env::join_paths(path).unwrap()),
    )
}

/// Runs the clean-up block when dropped, also while a failed test unwinds.
struct Cleanup<'a> {
    script: &'a str,
    demo: &'a Path,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let out = bash(self.script, self.demo);
        if !out.status.success() && !std::thread::panicking() {
            panic!(
                "the clean-up block failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Mount points at or under `dir`.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Whether process `pid` runs (a zombie waiting for its parent to reap it does not).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

#[test]
fn the_offline_containerd_recipe_runs_as_written() {
    if !(can_mount() && containerd_peers() && strata_testkit::peer("busybox", "busybox-static")) {
        return;
    }
    let (cleanup, steps): (Vec<String>, Vec<String>) =
        blocks().into_iter().partition(|b| b.starts_with(CLEANUP));
    assert_eq!(cleanup.len(), 1, "one clean-up block");
    assert!(steps.len() >= 5, "the recipe's steps: {steps:?}");
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");

    let guard = Cleanup {
        script: &cleanup[0],
        demo: &demo,
    };
    let out = bash(&steps.concat(), &demo);
    let log = |name: &str| std::fs::read_to_string(demo.join(name)).unwrap_or_default();
    assert!(
        out.status.success(),
        "the recipe failed: {}\n--- strata serve ---\n{}\n--- containerd ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        log("serve.log"),
        log("containerd.log"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l == "hello from strata"),
        "the container's output: {stdout}"
    );
    assert!(
        stdout.contains("sha256:"),
        "the image's layer is listed as a strata snapshot: {stdout}"
    );
    let pids: Vec<String> = ["serve.pid", "containerd.pid"].map(log).into();

    drop(guard);
    assert!(
        !demo.exists(),
        "the clean-up block removes {}",
        demo.display()
    );
    assert_eq!(mounts_under(tmp.path()), Vec::<PathBuf>::new());
    for pid in pids {
        assert!(!running(pid.trim()), "process {pid} still runs");
    }
}

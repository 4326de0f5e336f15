//! A hostile container racing `commit_image`: while its layer is written, a process in the
//! container swaps one of its directories with a symlink to a host directory
//! (`renameat2(RENAME_EXCHANGE)` in a loop, moby's CVE-2018-15664). No committed layer may hold
//! the host file, every commit either succeeds or fails with the typed error, and the host
//! directory stays byte-identical.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{CWD, RenameFlags};
use rustix::io::Errno;
use strata_diff::{DiffError, WriteError};
use strata_snapshotter::{Error, Labels};

use crate::conformance::suite;
use crate::image::{image, mounted};

/// The same size as the victim, so that a size check cannot give a swap away.
const HARMLESS: &[u8] = b"harmless bytes of the container\n";
const VICTIM: &[u8] = b"HOST SECRET that no layer holds\n";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Raises its flag when dropped, panicking or not.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the writer or the walk says when the container swapped something under it.
fn refused(err: &Error) -> bool {
    match err {
        Error::WriteLayer { source, .. } => matches!(**source, WriteError::Swapped { .. }),
        // The walk itself met an entry that changed type between two calls: a symlink where it
        // had just seen a directory (ELOOP, ENOTDIR), or the reverse (EINVAL from readlink).
        Error::Diff { source, .. } => match &**source {
            DiffError::Read { source, .. } => matches!(
                source.raw_os_error().map(Errno::from_raw_os_error),
                Some(Errno::LOOP | Errno::NOTDIR | Errno::INVAL)
            ),
            _ => false,
        },
        _ => false,
    }
}

fn state(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_container_swapping_a_dir_for_a_host_symlink_never_commits_a_host_file() {
    const COMMITS: usize = 12;
    const MAX_SWAPS: usize = 2_000_000;
    let Some(suite) = suite() else { return };
    let (store, _) = image(&suite);
    let sn = &suite.sn;
    let outside = suite.scratch("outside");
    fs::write(outside.join("secret"), VICTIM).unwrap();
    let before = state(&outside);
    sn.prepare_on_image("c", "img", Labels::new()).unwrap();
    let (root, guard) = mounted(&suite, "c");
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/secret"), HARMLESS).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("d2")).unwrap();

    let (d, d2) = (root.join("d"), root.join("d2"));
    let stop = AtomicBool::new(false);
    let (mut committed, mut refusals) = (0usize, 0usize);
    std::thread::scope(|scope| {
        // The container's process, through its mounted root.
        let swapper = scope.spawn(|| {
            let mut swaps = 0;
            while swaps < MAX_SWAPS && !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(CWD, &d, CWD, &d2, RenameFlags::EXCHANGE).unwrap();
                swaps += 1;
            }
            swaps
        });
        let stopper = StopOnDrop(&stop);
        for i in 0..COMMITS {
            match sn.commit_image("c", &format!("img-{i}")) {
                Ok(made) => {
                    let id = made.diff_id.trim_start_matches("sha256:");
                    let mut tar = Vec::new();
                    store
                        .write_layer_tar(&store.layer_record(id).unwrap(), &mut tar)
                        .unwrap();
                    // The walk races the swapper too: it may have seen both names as symlinks and
                    // committed no `secret` at all, but never the host's.
                    assert!(!contains(&tar, VICTIM), "commit {i} holds the host file");
                    committed += 1;
                }
                Err(err) if refused(&err) => refusals += 1,
                Err(err) => panic!("commit {i}: {err}"),
            }
        }
        drop(stopper);
        let swaps = swapper.join().unwrap();
        eprintln!("{committed} commits, {refusals} refused, {swaps} swaps");
    });
    guard.unmount().unwrap();
    assert_eq!(committed + refusals, COMMITS);
    assert_eq!(state(&outside), before);
}

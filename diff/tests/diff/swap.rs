//! A source that a running container changes under the writer: swapping a directory of its
//! upper dir with a symlink to a host directory (moby's CVE-2018-15664) must never get a host
//! file into the layer. Each case runs in a sandbox holding `upper/` (`d/secret` with harmless
//! bytes, `d2` a symlink to `outside/`) and `outside/` (a victim file `secret` of the same
//! size), and `outside/` must stay byte-identical.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{CWD, RenameFlags};
use strata_diff::{ChangeSet, Compression, ContentCheck, Threads, WriteError, WriteOptions};

use crate::support::{both, state};

const HARMLESS: &[u8] = b"harmless bytes of the container\n";
const VICTIM: &[u8] = b"HOST SECRET that no layer holds\n";

struct Sandbox {
    _tmp: tempfile::TempDir,
    upper: PathBuf,
    outside: PathBuf,
    set: ChangeSet,
}

fn sandbox() -> Sandbox {
    assert_eq!(
        HARMLESS.len(),
        VICTIM.len(),
        "sizes must not give a swap away"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (old, upper, outside) = (
        tmp.path().join("old"),
        tmp.path().join("upper"),
        tmp.path().join("outside"),
    );
    fs::create_dir_all(upper.join("d")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir(&old).unwrap();
    fs::write(upper.join("d/secret"), HARMLESS).unwrap();
    fs::write(outside.join("secret"), VICTIM).unwrap();
    std::os::unix::fs::symlink(&outside, upper.join("d2")).unwrap();
    let set = both(&old, &upper, ContentCheck::Ambiguous);
    Sandbox {
        _tmp: tmp,
        upper,
        outside,
        set,
    }
}

/// Raises its flag when dropped, panicking or not.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn exchange(a: &Path, b: &Path) {
    rustix::fs::renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).unwrap();
}

fn write(set: &ChangeSet, threads: Threads) -> Result<Vec<u8>, WriteError> {
    let options = WriteOptions::new(Compression::None).with_threads(threads);
    let mut out = Vec::new();
    strata_diff::write_layer(set, &options, &mut out)?;
    Ok(out)
}

/// The content of `d/secret` in a plain layer; asserts the victim's bytes are nowhere in it.
fn secret_in(layer: &[u8]) -> Vec<u8> {
    assert!(
        !layer.windows(VICTIM.len()).any(|w| w == VICTIM),
        "a host file was read into the layer"
    );
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path_bytes().as_ref() == b"d/secret" {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            return data;
        }
    }
    panic!("d/secret is missing from the layer")
}

#[test]
fn a_directory_swapped_for_a_symlink_to_the_host_is_refused() {
    let sandbox = sandbox();
    let before = state(&sandbox.outside);
    exchange(&sandbox.upper.join("d"), &sandbox.upper.join("d2"));
    for threads in [Threads::Sequential, Threads::Rayon] {
        match write(&sandbox.set, threads) {
            Err(WriteError::Swapped { path }) => assert_eq!(path, sandbox.upper.join("d")),
            other => panic!("{threads:?}: {:?}", other.map(|l| secret_in(&l))),
        }
    }
    assert_eq!(state(&sandbox.outside), before);
}

#[test]
fn a_file_or_directory_replaced_by_another_inode_is_refused() {
    let sandbox = sandbox();
    let (upper, set) = (&sandbox.upper, &sandbox.set);
    // Held open, the inode the walk saw is not freed: the files made below cannot reuse its
    // number and pass for it.
    let _seen = fs::File::open(upper.join("d/secret")).unwrap();
    // Another file, same size, renamed over the one the walk saw.
    fs::write(upper.join("other"), HARMLESS).unwrap();
    fs::rename(upper.join("other"), upper.join("d/secret")).unwrap();
    match write(set, Threads::Sequential) {
        Err(WriteError::Swapped { path }) => assert_eq!(path, upper.join("d/secret")),
        other => panic!("{other:?}"),
    }
    // Another directory holding a `secret`, exchanged with `d`.
    fs::create_dir(upper.join("d3")).unwrap();
    fs::write(upper.join("d3/secret"), HARMLESS).unwrap();
    exchange(&upper.join("d"), &upper.join("d3"));
    match write(set, Threads::Rayon) {
        Err(WriteError::Swapped { path }) => assert_eq!(path, upper.join("d/secret")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_racing_swapper_never_gets_a_host_file_into_the_layer() {
    const WRITES: usize = 400;
    const MAX_SWAPS: usize = 2_000_000;
    let sandbox = sandbox();
    let before = state(&sandbox.outside);
    let (d, d2) = (sandbox.upper.join("d"), sandbox.upper.join("d2"));
    let stop = AtomicBool::new(false);
    let (mut written, mut refused) = (0usize, 0usize);
    std::thread::scope(|scope| {
        // The container: swaps `d` and the symlink to the host until the writes are done.
        let swapper = scope.spawn(|| {
            let mut swaps = 0;
            while swaps < MAX_SWAPS && !stop.load(Ordering::Relaxed) {
                exchange(&d, &d2);
                swaps += 1;
            }
            swaps
        });
        // Stops the swapper even when an assertion below fails.
        let stopper = StopOnDrop(&stop);
        for round in 0..WRITES {
            let threads = [Threads::Sequential, Threads::Rayon][round % 2];
            match write(&sandbox.set, threads) {
                Ok(layer) => {
                    assert_eq!(secret_in(&layer), HARMLESS);
                    written += 1;
                }
                Err(WriteError::Swapped { path }) => {
                    assert!(
                        path == d || path == sandbox.upper.join("d/secret"),
                        "{path:?}"
                    );
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        drop(stopper);
        let swaps = swapper.join().unwrap();
        eprintln!("{written} layers written, {refused} refused, {swaps} swaps");
    });
    assert_eq!(written + refused, WRITES);
    assert_eq!(state(&sandbox.outside), before);
}

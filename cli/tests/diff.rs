//! `strata diff` and `strata apply`, run as the built binary.

use std::fs;
use std::process::{Command, Output};

fn strata(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("run strata")
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// old: keep, gone/, edit; new: keep, edit (changed), added/file.
fn trees() -> (tempfile::TempDir, tempfile::TempDir) {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for root in [old.path(), new.path()] {
        fs::write(root.join("keep"), "same").unwrap();
        let t = fs::FileTimes::new()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(1000, 5));
        fs::File::options()
            .write(true)
            .open(root.join("keep"))
            .unwrap()
            .set_times(t)
            .unwrap();
    }
    fs::create_dir(old.path().join("gone")).unwrap();
    fs::write(old.path().join("gone/x"), "x").unwrap();
    fs::write(old.path().join("edit"), "v1").unwrap();
    fs::write(new.path().join("edit"), "version 2").unwrap();
    fs::create_dir(new.path().join("added")).unwrap();
    fs::write(new.path().join("added/file"), "new").unwrap();
    (old, new)
}

#[test]
fn diff_prints_tab_separated_changes_in_path_order() {
    let (old, new) = trees();
    // Walk order puts added/file before added.txt; bytewise path order ('.' < '/') does not.
    fs::write(new.path().join("added.txt"), "t").unwrap();
    let out = strata(&[os("diff"), old.path().as_os_str(), new.path().as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "A\tadded\nA\tadded.txt\nA\tadded/file\nM\tedit\nD\tgone\n"
    );
    let json = strata(&[
        os("--json"),
        os("diff"),
        old.path().as_os_str(),
        new.path().as_os_str(),
    ]);
    assert!(json.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["changes"][1]["path"], "added.txt");
    assert_eq!(doc["changes"][4]["kind"], "D");
    assert_eq!(doc["changes"][4]["path"], "gone");
    assert_eq!(doc["changes"].as_array().unwrap().len(), 5);
}

#[test]
fn diff_writes_layers_that_apply_back() {
    let (old, new) = trees();
    let work = tempfile::tempdir().unwrap();
    for (format, name) in [
        ("tar", "l.tar"),
        ("tar+gzip", "l.tgz"),
        ("tar+zstd", "l.tzst"),
    ] {
        let layer = work.path().join(name);
        let out = strata(&[
            os("--json"),
            os("diff"),
            old.path().as_os_str(),
            new.path().as_os_str(),
            os("--format"),
            os(format),
            os("-o"),
            layer.as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let bytes = fs::read(&layer).unwrap();
        let sum = Command::new("sha256sum").arg(&layer).output().unwrap();
        let hex = String::from_utf8(sum.stdout).unwrap();
        assert_eq!(doc["digest"], format!("sha256:{}", &hex[..64]));
        assert_eq!(doc["size"], bytes.len() as u64);
        // No temporary file is left next to the output.
        let leftovers: Vec<_> = fs::read_dir(work.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp-")
            })
            .collect();
        assert!(leftovers.is_empty());

        let copy = tempfile::tempdir().unwrap();
        strata_testkit::tree::copy(old.path(), copy.path());
        let applied = strata(&[os("apply"), layer.as_os_str(), copy.path().as_os_str()]);
        assert!(
            applied.status.success(),
            "{}",
            String::from_utf8_lossy(&applied.stderr)
        );
        let again = strata(&[os("diff"), copy.path().as_os_str(), new.path().as_os_str()]);
        assert!(again.status.success());
        assert_eq!(String::from_utf8(again.stdout).unwrap(), "", "{format}");
    }
}

#[test]
fn errors_name_the_path_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let out = strata(&[os("diff"), missing.as_os_str(), dir.path().as_os_str()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&*missing.to_string_lossy()));

    // A hostile layer: the error names the entry, and nothing escapes.
    let layer = dir.path().join("evil.tar");
    let mut header = [0u8; 512];
    header[..16].copy_from_slice(b"../outside/pwned");
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(b"00000000000\0");
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    fs::write(&layer, bytes).unwrap();
    let target = dir.path().join("target");
    fs::create_dir(&target).unwrap();
    let out = strata(&[os("apply"), layer.as_os_str(), target.as_os_str()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("../outside/pwned") && stderr.contains("escapes the layer root"),
        "{stderr}"
    );
    assert!(!dir.path().join("outside").exists());
}

//! `strata import|export|images|layers|rmi|gc|fsck|du` through the built binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

mod common;
use common::{ok_json, strata};
use strata_testkit::tree;

/// A gzip layer tar of `files`.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    strata_testkit::hostile::gzip(&strata_testkit::layer::files_tar(files))
}

/// `files` in the form [`layer`] takes.
fn borrowed(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect()
}

/// Every entry under `dir` but the directories.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    tree::snapshot(dir, &tree::Options::default())
        .into_iter()
        .filter(|(_, node)| node.kind != tree::Kind::Dir)
        .map(|(path, _)| dir.join(path))
        .collect()
}

#[test]
fn import_list_export_gc_fsck_du() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    let shared = vec![b'z'; 50_000];
    let a = tmp.path().join("a.tar.gz");
    fs::write(&a, layer(&[("shared", &shared), ("a", b"only a")]))?;
    let b = tmp.path().join("b.tar.gz");
    fs::write(&b, layer(&[("copy-of-shared", &shared), ("b", b"only b")]))?;

    let imported = ok_json(&root, &["import", a.to_str().unwrap(), "--name", "a"])?;
    assert_eq!(imported["tags"][0], "a:latest");
    assert_eq!(imported["objects_new"], 2);
    let imported_b = ok_json(&root, &["import", b.to_str().unwrap(), "--name", "b"])?;
    assert_eq!(imported_b["objects_existing"], 1);

    let images = ok_json(&root, &["images"])?;
    assert_eq!(images.as_array().map(Vec::len), Some(2));
    let layers = ok_json(&root, &["layers"])?;
    assert_eq!(layers.as_array().map(Vec::len), Some(2));
    let du = ok_json(&root, &["du"])?;
    assert_eq!(du["logical_bytes"], 2 * 50_000 + 12);
    assert!(du["dedup_ratio"].as_f64().unwrap_or(0.0) > 1.5, "{du}");

    let out = tmp.path().join("out");
    let exported = ok_json(&root, &["export", "a", "-o", out.to_str().unwrap()])?;
    assert!(out.join("index.json").is_file());
    assert_eq!(exported["layers"].as_array().map(Vec::len), Some(1));

    ok_json(&root, &["rmi", "b"])?;
    let dry = ok_json(&root, &["gc", "--dry-run"])?;
    assert_eq!(dry["layers"].as_array().map(Vec::len), Some(1));
    let gc = ok_json(&root, &["gc"])?;
    assert_eq!(gc["objects"], 1, "{gc}");
    let fsck = ok_json(&root, &["fsck"])?;
    assert_eq!(fsck["problems"].as_array().map(Vec::len), Some(0));

    let text = strata(&root, &["images"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.lines().any(|l| l.starts_with("a ")), "{text}");
    Ok(())
}

/// `--no-sync` drops the flushes of the imported files (the database still commits durably):
/// the same import asks the kernel for fewer `fsync`/`fdatasync`/`syncfs` calls.
#[test]
fn no_sync_skips_the_file_flushes() -> anyhow::Result<()> {
    if !strata_testkit::peer("strace", "strace") {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i}"), format!("content {i}").into_bytes()))
        .collect();
    let refs = borrowed(&files);
    let tar = tmp.path().join("l.tar.gz");
    fs::write(&tar, layer(&refs))?;
    let flushes = |name: &str, global: &[&str]| -> anyhow::Result<usize> {
        let root = tmp.path().join(name);
        let log = tmp.path().join(format!("{name}.strace"));
        let status = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=fsync,fdatasync,syncfs", "-o"])
            .arg(&log)
            .arg(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&root)
            .args(global)
            .args([
                "import",
                tar.to_str().unwrap(),
                "--name",
                "l",
                "--materialize",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running strace (Debian package strace)")?;
        anyhow::ensure!(status.success(), "import into {name} failed");
        assert_eq!(
            ok_json(&root, &["images"])?.as_array().map(Vec::len),
            Some(1)
        );
        Ok(fs::read_to_string(log)?
            .lines()
            .filter(|l| !l.contains("+++") && !l.contains("---"))
            .count())
    };
    let durable = flushes("durable", &[])?;
    let no_sync = flushes("no-sync", &["--no-sync"])?;
    assert!(
        no_sync + 20 <= durable,
        "{no_sync} flushes with --no-sync, {durable} without"
    );
    Ok(())
}

/// A layer tar named by a bare file name, relative to the current directory.
#[test]
fn imports_a_bare_file_name() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    fs::write(tmp.path().join("l.tar.gz"), layer(&[("f", b"x")]))?;
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(tmp.path())
        .args(["--root", "store", "import", "l.tar.gz", "--name", "l"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images = ok_json(&tmp.path().join("store"), &["images"])?;
    assert_eq!(images.as_array().map(Vec::len), Some(1));
    Ok(())
}

#[test]
fn errors_name_what_was_wrong() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    let missing = tmp.path().join("no-such-image.tar");
    let out = strata(&root, &["import", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    // One line: what was done, the path at fault, and the kernel's reason, once.
    let err = String::from_utf8_lossy(&out.stderr);
    let os = std::io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
    assert_eq!(
        err,
        format!("strata: importing {p}: {p}: {os}\n", p = missing.display())
    );
    assert_eq!(err.matches(&os.to_string()).count(), 1, "{err}");

    let dest = tmp.path().join("x");
    let never = tmp.path().join("never-made");
    let out = strata(&never, &["export", "nope", "-o", dest.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no store at {}", never.display())),
        "{err}"
    );
    let layer_tar = tmp.path().join("l.tar.gz");
    fs::write(&layer_tar, layer(&[("f", b"x")]))?;
    ok_json(&root, &["import", layer_tar.to_str().unwrap()])?;
    let out = strata(&root, &["export", "nope", "-o", dest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    assert!(!dest.exists());
    Ok(())
}

#[test]
fn fsck_fails_on_a_flipped_byte() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    let a = tmp.path().join("a.tar.gz");
    fs::write(&a, layer(&[("file", b"precious bytes")]))?;
    ok_json(&root, &["import", a.to_str().unwrap(), "--name", "a"])?;
    let object = walk_files(&root.join("objects"))
        .pop()
        .context("one object")?;
    fs::set_permissions(&object, fs::Permissions::from_mode(0o644))?;
    fs::write(&object, b"precious bytez")?;
    let out = strata(&root, &["--json", "fsck"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["problems"][0]["kind"], "corrupt_object");
    let repaired = strata(&root, &["fsck", "--repair"]);
    assert!(String::from_utf8_lossy(&repaired.stdout).contains("quarantined object"));
    Ok(())
}

/// 16 flipped bytes in `strata.db`: every command exits with an error naming the damage
/// or succeeds, none panics, and GC deletes nothing.
#[test]
fn a_damaged_database_is_reported_never_a_panic() -> anyhow::Result<()> {
    let mut refused = 0;
    for seed in 1..=12u64 {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("store");
        let a = tmp.path().join("a.tar.gz");
        let files: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("file{i}"), vec![i as u8; 1000 + i]))
            .collect();
        fs::write(&a, layer(&borrowed(&files)))?;
        ok_json(&root, &["import", a.to_str().unwrap(), "--name", "a"])?;
        let before =
            walk_files(&root.join("objects")).len() + walk_files(&root.join("layers")).len();
        strata_testkit::flip_bytes(&root.join("strata.db"), seed);
        for args in [
            &["images"][..],
            &["fsck"],
            &["gc"],
            &["fsck", "--repair"],
            &["rmi", "a"],
            &["import", a.to_str().unwrap(), "--name", "a"],
        ] {
            let out = strata(&root, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("panicked") && out.status.code() != Some(101),
                "seed {seed}: strata {args:?}: {stderr}"
            );
            if args == ["gc"] && !out.status.success() {
                assert!(stderr.contains("damaged"), "seed {seed}: {stderr}");
                refused += 1;
            }
        }
        let after =
            walk_files(&root.join("objects")).len() + walk_files(&root.join("layers")).len();
        assert!(after >= before, "seed {seed}: files were deleted");
    }
    assert!(refused >= 3, "gc refused only {refused} damaged databases");
    Ok(())
}

/// A store whose database was deleted is no empty store: fsck and gc fail naming the missing
/// database, and nothing is deleted.
#[test]
fn a_deleted_database_is_an_error_not_an_empty_store() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    let a = tmp.path().join("a.tar.gz");
    fs::write(&a, layer(&[("file", b"precious bytes")]))?;
    ok_json(&root, &["import", a.to_str().unwrap(), "--name", "a"])?;
    let before = walk_files(&root.join("objects")).len() + walk_files(&root.join("layers")).len();
    fs::remove_file(root.join("strata.db"))?;
    for args in [
        &["fsck"][..],
        &["gc"],
        &["images"],
        &["import", a.to_str().unwrap()],
    ] {
        let out = strata(&root, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "strata {args:?} succeeded");
        assert!(
            stderr.contains("strata.db is missing"),
            "strata {args:?}: {stderr}"
        );
    }
    let after = walk_files(&root.join("objects")).len() + walk_files(&root.join("layers")).len();
    assert_eq!(after, before);
    assert!(!root.join("strata.db").exists());
    Ok(())
}

/// GC in one process never removes what an import running in another process needs: whatever
/// the interleaving, the imported image ends up complete.
#[test]
fn gc_racing_an_import_in_another_process_keeps_it_whole() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    // Many files so the import takes a while; some content shared with an image that GC frees.
    let files: Vec<(String, Vec<u8>)> = (0..400u32)
        .map(|i| {
            (
                format!("dir{}/file{i}", i % 20),
                i.to_le_bytes().repeat(500 + i as usize),
            )
        })
        .collect();
    let refs = borrowed(&files);
    let big = tmp.path().join("big.tar.gz");
    fs::write(&big, layer(&refs))?;
    let old = tmp.path().join("old.tar.gz");
    fs::write(&old, layer(&refs[..200]))?;
    ok_json(&root, &["import", old.to_str().unwrap(), "--name", "old"])?;
    ok_json(&root, &["rmi", "old"])?;

    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&root)
        .args(["import", big.to_str().unwrap(), "--name", "big"])
        .spawn()?;
    let mut rounds = 0;
    while child.try_wait()?.is_none() || rounds == 0 {
        ok_json(&root, &["gc"])?;
        rounds += 1;
    }
    assert!(child.wait()?.success());
    ok_json(&root, &["gc"])?;
    let fsck = ok_json(&root, &["fsck"])?;
    assert_eq!(fsck["problems"].as_array().map(Vec::len), Some(0), "{fsck}");
    let out = tmp.path().join("out");
    ok_json(&root, &["export", "big", "-o", out.to_str().unwrap()])?;
    let index: serde_json::Value = serde_json::from_slice(&fs::read(out.join("index.json"))?)?;
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "docker.io/library/big:latest"
    );
    Ok(())
}

/// A layer compressed by a tool whose deflate stream no zlib setting rebuilds (GNU gzip here;
/// Go's `compress/gzip` in most registry images) is kept as received: export writes it byte for
/// byte under the same digests, `du` counts it, and GC drops it with its last image. With
/// `--blobs reproducible` nothing is kept and export recompresses under a new digest.
#[test]
fn a_blob_export_cannot_rebuild_is_kept_and_exported_byte_for_byte() -> anyhow::Result<()> {
    if !strata_testkit::peer("gzip", "gzip") {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let words: String = (0..200_000u32)
        .map(|i| format!("word{} ", i.wrapping_mul(2_654_435_761) % 997))
        .collect();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&layer(&[("etc/words", words.as_bytes())])[..]),
        &mut plain,
    )?;
    let tar = tmp.path().join("layer.tar");
    fs::write(&tar, plain)?;
    let out = Command::new("gzip")
        .arg("-9")
        .arg("-c")
        .arg(&tar)
        .output()?;
    anyhow::ensure!(out.status.success(), "gzip failed");
    let gz = tmp.path().join("layer.tar.gz");
    fs::write(&gz, &out.stdout)?;
    let digest = format!(
        "sha256:{}",
        strata_layer_store::digest::Sha256::of(&out.stdout).hex()
    );

    for (policy, kept) in [("keep", true), ("reproducible", false)] {
        let root = tmp.path().join(policy);
        let run = |args: &[&str]| {
            let mut all = vec!["--blobs", policy];
            all.extend_from_slice(args);
            ok_json(&root, &all)
        };
        let imported = run(&["import", gz.to_str().unwrap(), "--name", "img"])?;
        let dest = tmp.path().join(format!("{policy}.oci"));
        let exported = run(&["export", "img", "-o", dest.to_str().unwrap()])?;
        let layer = &exported["layers"][0];
        assert_eq!(layer["reproduced"], kept, "{policy}: {exported}");
        assert_eq!(
            layer["digest"] == digest.as_str(),
            kept,
            "{policy}: {exported}"
        );
        assert_eq!(exported["manifest"] == imported["image"], kept, "{policy}");
        if kept {
            let blob = dest.join("blobs/sha256").join(&digest["sha256:".len()..]);
            assert_eq!(fs::read(blob)?, out.stdout, "the blob as received");
        }
        let du = run(&["du"])?;
        assert_eq!(du["kept_blob_bytes"].as_u64().unwrap() > 0, kept, "{du}");
        // The id is the manifest digest, in full with --digests: the registry's when kept.
        let listed = strata(&root, &["images", "--digests"]);
        let table = String::from_utf8(listed.stdout)?;
        let id = imported["image"].as_str().unwrap();
        assert!(table.lines().next().unwrap().contains("DIGEST"), "{table}");
        assert!(table.contains(id), "{table}");

        run(&["rmi", "img"])?;
        let gc = run(&["gc"])?;
        assert_eq!(gc["blobs"], u64::from(kept), "{gc}");
        assert_eq!(run(&["du"])?["kept_blob_bytes"], 0);
    }
    Ok(())
}

//! The applier's semantics on friendly layers.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use strata_codec::tar::TarError;
use strata_diff::{ApplyError, ApplyOptions, Whiteouts};

use crate::support::{Raw, RawTar, can_mount};

fn apply(layer: &[u8], root: &std::path::Path) -> Result<strata_diff::ApplyStats, ApplyError> {
    strata_diff::apply_layer(layer, root, &ApplyOptions::default())
}

#[test]
fn file_and_directory_swap_places() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::write(r.join("becomes-dir"), "f").unwrap();
    fs::create_dir_all(r.join("becomes-file/deep")).unwrap();
    fs::write(r.join("becomes-file/deep/x"), "x").unwrap();
    let layer = RawTar::new()
        .add(b"becomes-dir/", Raw::Dir)
        .add(b"becomes-dir/child", Raw::File(b"c"))
        .add(b"becomes-file", Raw::File(b"now a file"))
        .finish();
    apply(&layer, r).unwrap();
    assert_eq!(fs::read(r.join("becomes-dir/child")).unwrap(), b"c");
    assert_eq!(fs::read(r.join("becomes-file")).unwrap(), b"now a file");
}

#[test]
fn existing_dirs_keep_children_and_take_new_metadata() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir(r.join("etc")).unwrap();
    fs::write(r.join("etc/old"), "kept").unwrap();
    let mut tar = RawTar::new();
    tar.add_with(b"etc/", Raw::Dir, |h| {
        h.set_mode(0o750);
        h.set_mtime(12345);
    });
    tar.add_with(b"etc/new", Raw::File(b"n"), |_| {});
    apply(&tar.finish(), r).unwrap();
    assert_eq!(fs::read(r.join("etc/old")).unwrap(), b"kept");
    let meta = fs::metadata(r.join("etc")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o750);
    // The directory's mtime is set after its children were written.
    assert_eq!(meta.mtime(), 12345);
}

#[test]
fn opaque_marker_after_new_children_keeps_them() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("d/old-sub")).unwrap();
    fs::write(r.join("d/old-sub/x"), "x").unwrap();
    fs::write(r.join("d/old"), "o").unwrap();
    fs::write(r.join("d/renewed"), "o").unwrap();
    let layer = RawTar::new()
        .add(b"d/", Raw::Dir)
        .add(b"d/new", Raw::File(b"n"))
        .add(b"d/renewed", Raw::File(b"r"))
        .add(b"d/.wh..wh..opq", Raw::File(b""))
        .add(b"d/later", Raw::File(b"l"))
        .finish();
    let stats = apply(&layer, r).unwrap();
    let mut names: Vec<_> = fs::read_dir(r.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["later", "new", "renewed"]);
    assert_eq!(fs::read(r.join("d/renewed")).unwrap(), b"r");
    assert_eq!(stats.whiteouts, 1);
}

#[test]
fn whiteouts_only_hide_lower_entries() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::write(r.join("lower"), "l").unwrap();
    fs::create_dir_all(r.join("tree/x")).unwrap();
    fs::create_dir_all(r.join("both/lower-child")).unwrap();
    let layer = RawTar::new()
        .add(b"mine", Raw::File(b"m"))
        .add(b".wh.mine", Raw::File(b""))
        // A directory of this layer stays with its own children; the lower ones go.
        .add(b"both/", Raw::Dir)
        .add(b"both/x", Raw::File(b"x"))
        .add(b".wh.both", Raw::File(b""))
        .add(b".wh.lower", Raw::File(b""))
        .add(b".wh.tree", Raw::File(b""))
        .add(b".wh.never-existed", Raw::File(b""))
        .finish();
    apply(&layer, r).unwrap();
    assert!(r.join("mine").exists());
    assert!(!r.join("lower").exists());
    assert!(!r.join("tree").exists());
    let both: Vec<_> = fs::read_dir(r.join("both"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(both, ["x"]);
}

#[test]
fn invalid_whiteouts_and_dotdot_names_are_typed_errors() {
    for (name, want) in [
        (&b".wh."[..], "whiteout"),
        (b"a/.wh..", "whiteout"),
        (b".wh..wh.plnk", "whiteout"),
        (b"../x", "unsafe"),
        (b"a/../../x", "unsafe"),
    ] {
        let root = tempfile::tempdir().unwrap();
        let err = apply(
            &RawTar::new().add(name, Raw::File(b"")).finish(),
            root.path(),
        )
        .unwrap_err();
        let ok = match want {
            "whiteout" => {
                matches!(&err, ApplyError::Layer(TarError::InvalidWhiteout { path, .. }) if path.len() == name.len())
            }
            _ => matches!(&err, ApplyError::Layer(TarError::UnsafePath { .. })),
        };
        assert!(ok, "{} gave {err}", String::from_utf8_lossy(name));
    }
}

#[test]
fn implied_parents_hardlinks_and_sparse_data() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let zeros = vec![0u8; 4 << 20];
    let mut data = zeros.clone();
    data.extend_from_slice(b"tail");
    let layer = RawTar::new()
        .add(b"a/b/c/file", Raw::File(b"f"))
        .add(b"a/b/link", Raw::Hardlink(b"a/b/c/file"))
        .add(b"sparse", Raw::File(&data))
        .finish();
    let stats = apply(&layer, r).unwrap();
    assert_eq!(fs::metadata(r.join("a/b")).unwrap().mode() & 0o7777, 0o755);
    let (f, l) = (
        fs::metadata(r.join("a/b/c/file")).unwrap(),
        fs::metadata(r.join("a/b/link")).unwrap(),
    );
    assert_eq!((f.ino(), f.nlink()), (l.ino(), 2));
    let sparse = fs::metadata(r.join("sparse")).unwrap();
    assert_eq!(sparse.len(), data.len() as u64);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "4 MiB of zeros became holes: {} blocks",
        sparse.blocks()
    );
    assert_eq!(fs::read(r.join("sparse")).unwrap(), data);
    assert_eq!(stats.entries, 3);
    let missing = RawTar::new().add(b"l", Raw::Hardlink(b"nowhere")).finish();
    let err = apply(&missing, r).unwrap_err();
    assert!(matches!(err, ApplyError::MissingLinkTarget { .. }), "{err}");
}

#[test]
fn owner_then_xattrs_then_mode_so_setuid_survives() {
    if !can_mount() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let mut tar = RawTar::new().pax(&[
        (
            "SCHILY.xattr.security.capability",
            &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        ("SCHILY.xattr.user.note", b"n"),
    ]);
    tar.add_with(b"suid", Raw::File(b"#!"), |h| {
        h.set_mode(0o4755);
        h.set_uid(1234);
        h.set_gid(55);
    });
    apply(&tar.finish(), r).unwrap();
    let meta = fs::symlink_metadata(r.join("suid")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o4755, 1234, 55)
    );
    assert!(
        strata_cow::xattr::get(&r.join("suid"), b"security.capability")
            .unwrap()
            .is_some()
    );
    assert_eq!(
        strata_cow::xattr::get(&r.join("suid"), b"user.note")
            .unwrap()
            .unwrap(),
        b"n"
    );
    assert_eq!(meta.permissions().mode() & 0o4000, 0o4000);
}

#[test]
fn devices_and_overlay_whiteouts() {
    if !can_mount() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let layer = RawTar::new()
        .add(b"dev/null", Raw::Char(1, 3))
        .add(b"dir/", Raw::Dir)
        .add(b"dir/.wh..wh..opq", Raw::File(b""))
        .add(b".wh.gone", Raw::File(b""))
        .finish();
    let options = ApplyOptions::default().with_whiteouts(Whiteouts::Overlay(
        strata_cow::conventions::Namespace::Trusted,
    ));
    strata_diff::apply_layer(&layer[..], r, &options).unwrap();
    assert_eq!(
        fs::symlink_metadata(r.join("dev/null")).unwrap().rdev(),
        rustix::fs::makedev(1, 3)
    );
    let gone = fs::symlink_metadata(r.join("gone")).unwrap();
    assert_eq!(
        strata_cow::conventions::whiteout_style(
            &r.join("gone"),
            &gone,
            strata_cow::conventions::Namespace::Trusted
        )
        .unwrap(),
        Some(strata_cow::conventions::WhiteoutStyle::CharDevice)
    );
    assert_eq!(
        strata_cow::conventions::opacity(
            &r.join("dir"),
            strata_cow::conventions::Namespace::Trusted
        )
        .unwrap(),
        strata_cow::conventions::Opacity::Opaque
    );
}

#[test]
fn compression_is_detected_and_garbage_is_a_stream_error() {
    let layer = RawTar::new().add(b"f", Raw::File(b"data")).finish();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&layer).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&layer[..], 1).unwrap();
    for blob in [&layer, &gz, &zst] {
        let root = tempfile::tempdir().unwrap();
        apply(blob, root.path()).unwrap();
        assert_eq!(fs::read(root.path().join("f")).unwrap(), b"data");
    }
    let root = tempfile::tempdir().unwrap();
    let mut truncated = gz.clone();
    truncated.truncate(gz.len() / 2);
    assert!(matches!(
        apply(&truncated, root.path()),
        Err(ApplyError::Stream(_)
            | ApplyError::Layer(TarError::Truncated { .. } | TarError::Io { .. }))
    ));
}

#[test]
fn a_failed_applys_chain_says_each_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = RawTar::new().add(b"f", Raw::File(b"data")).finish();

    // No target: the target, then what the kernel said, once.
    let missing = tmp.path().join("missing");
    let err = apply(&layer, &missing).unwrap_err();
    assert!(matches!(err, ApplyError::Root { .. }), "{err}");
    let os = std::io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
    assert_eq!(
        strata_testkit::assert_chain_once(&err),
        format!("opening target {}: {os}", missing.display())
    );

    // A stream cut short: the reader says where the tar ends, and the decompressor's
    // complaint, when it has one, follows once.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &layer).unwrap();
    let mut truncated = gz.finish().unwrap();
    truncated.truncate(truncated.len() / 2);
    let err = apply(&truncated, tmp.path()).unwrap_err();
    if std::error::Error::source(&err).is_some() {
        strata_testkit::assert_chain_once(&err);
    } else {
        assert!(err.to_string().contains("ends inside an entry"), "{err}");
    }
}

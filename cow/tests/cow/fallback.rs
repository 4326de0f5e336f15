//! The non-overlay fallback: the flattened tree must equal what the kernel's overlay shows,
//! through every copy method, on ext4 (copy paths) and on a loop-mounted XFS (reflinks).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::Result;
use proptest::prelude::*;
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid};
use strata_cow::conventions::{self, Namespace, Opacity, Stub, Time, WhiteoutStyle};
use strata_cow::fallback::{CopyMethod, FallbackError, Flatten};
use strata_cow::overlay::Overlay;
use strata_cow::probe::Features;
use strata_cow::xattr;

use crate::support::{LoopXfs, Scratch, require_root, snapshot};

/// Three lowers exercising every rule, built under `root`; returns them topmost first.
fn stack(root: &Path) -> Result<Vec<PathBuf>> {
    let layer = |name: &str| -> Result<PathBuf> {
        let dir = root.join(name);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    };
    let (top, mid, base) = (layer("top")?, layer("mid")?, layer("base")?);
    for (dir, files) in [
        (
            &base,
            &[
                "etc/os",
                "etc/gone",
                "etc/xgone",
                "opq/hidden",
                "became-file/x",
                "lib/a",
            ][..],
        ),
        (&mid, &["etc/os", "opq/shown-mid", "lib/b"][..]),
        (&top, &["etc/extra", "opq/top"][..]),
    ] {
        for f in files {
            let path = dir.join(f);
            fs::create_dir_all(path.parent().expect("parent"))?;
            fs::write(
                &path,
                format!("{f} from {}", dir.file_name().unwrap().to_string_lossy()),
            )?;
        }
    }
    // Whiteouts of both kinds in mid delete base's files.
    conventions::create_whiteout(&mid.join("etc/gone"), WhiteoutStyle::CharDevice)?;
    conventions::create_xwhiteout(&mid.join("etc/xgone"), Namespace::Trusted)?;
    // mid's opq is opaque: base's opq/hidden disappears; top's opq merges over mid's.
    conventions::set_opacity(&mid.join("opq"), Namespace::Trusted, Opacity::Opaque)?;
    // A file in mid hides base's directory of the same name.
    fs::write(mid.join("became-file"), "now a file")?;
    // Owner, setuid, xattr, nanosecond times, symlink, devices, fifo, hard links.
    let tool = top.join("tool");
    fs::write(&tool, "#!/bin/sh\n")?;
    rustix::fs::chown(&tool, Some(Uid::from_raw(1234)), Some(Gid::from_raw(5678)))?;
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755))?;
    xattr::set(&tool, b"user.origin", b"top")?;
    xattr::set(&tool, b"security.capability.fake", b"").ok();
    let time = Timespec {
        tv_sec: 1_500_000_000,
        tv_nsec: 987_654_321,
    };
    rustix::fs::utimensat(
        CWD,
        &tool,
        &Timestamps {
            last_access: time,
            last_modification: time,
        },
        AtFlags::empty(),
    )?;
    symlink("../tool", top.join("etc/link"))?;
    fs::create_dir(top.join("dev"))?;
    rustix::fs::mknodat(
        CWD,
        top.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )?;
    rustix::fs::mknodat(
        CWD,
        top.join("dev/loop9"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        rustix::fs::makedev(7, 9),
    )?;
    rustix::fs::mknodat(
        CWD,
        top.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )?;
    fs::write(base.join("lib/linked"), "shared inode")?;
    fs::hard_link(base.join("lib/linked"), base.join("lib/linked-too"))?;
    fs::write(top.join("big"), vec![7u8; 3 << 20])?;
    Ok(vec![top, mid, base])
}

#[test]
fn flattened_tree_equals_the_overlay_view_for_every_method() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lowers = stack(s.path())?;
    let view = s.dir("view")?;
    let guard = Overlay::new().lowers(&lowers).mount_at(&view)?;
    let expected = snapshot(&view);
    drop(guard);
    assert!(!expected.contains_key(Path::new("etc/gone")));
    assert!(!expected.contains_key(Path::new("etc/xgone")));
    assert!(!expected.contains_key(Path::new("opq/hidden")));
    assert!(expected.contains_key(Path::new("opq/shown-mid")));

    let ext4 = rustix::fs::statfs(s.path())?.f_type == 0xEF53;
    for method in [
        CopyMethod::Auto,
        CopyMethod::CopyFileRange,
        CopyMethod::ReadWrite,
    ] {
        let target = s.path().join(format!("{method:?}"));
        let stats = Flatten::new()
            .lowers(&lowers)
            .method(method)
            .build(&target)?;
        assert_eq!(snapshot(&target), expected, "{method:?}");
        assert_eq!(stats.whiteouts, 2);
        assert_eq!(stats.hardlinks, 1);
        assert_eq!(stats.symlinks, 1);
        assert_eq!(stats.specials, 3);
        let linked = fs::metadata(target.join("lib/linked"))?;
        assert_eq!(
            linked.ino(),
            fs::metadata(target.join("lib/linked-too"))?.ino()
        );
        // Written files never reach a lower.
        fs::write(target.join("etc/os"), "changed")?;
        assert_eq!(
            fs::read_to_string(lowers[1].join("etc/os"))?,
            "etc/os from mid"
        );
        match method {
            CopyMethod::ReadWrite => assert_eq!(stats.read_write, stats.files),
            CopyMethod::CopyFileRange => assert_eq!(stats.copy_file_range, stats.files),
            CopyMethod::Auto if ext4 => {
                assert_eq!(stats.copy_file_range, stats.files, "ext4 has no reflink")
            }
            CopyMethod::Auto => {}
        }
    }
    Ok(())
}

#[test]
fn reflinks_on_xfs() -> Result<()> {
    require_root!();
    if !strata_testkit::peer("mkfs.xfs", "xfsprogs") {
        return Ok(());
    }
    let s = Scratch::new()?;
    let xfs = LoopXfs::new(&s)?;
    assert!(
        Features::probe().reflink(xfs.path())?,
        "mkfs.xfs -m reflink=1"
    );
    let lowers = stack(xfs.path())?;
    let view = s.dir("view")?;
    let guard = Overlay::new().lowers(&lowers).mount_at(&view)?;
    let expected = snapshot(&view);
    drop(guard);
    let target = xfs.path().join("rootfs");
    let stats = Flatten::new().lowers(&lowers).build(&target)?;
    assert_eq!(stats.reflinked, stats.files, "{stats:?}");
    assert_eq!((stats.copy_file_range, stats.read_write), (0, 0));
    assert_eq!(snapshot(&target), expected);
    // Writing the clone leaves the original alone.
    fs::write(target.join("big"), "small")?;
    assert_eq!(fs::metadata(lowers[0].join("big"))?.len(), 3 << 20);
    Ok(())
}

#[test]
fn metadata_only_files_take_bytes_from_data_lowers() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let objects = s.layer("objects", &[("ab/cdef", "object bytes")])?;
    let stubs = s.dir("stubs")?;
    let stub = Stub {
        size: 12,
        mode: 0o640,
        uid: 42,
        gid: 43,
        mtime: Time {
            sec: 1_000_000_000,
            nsec: 5,
        },
        xattrs: &[],
        redirect: b"/ab/cdef",
    };
    conventions::create_metacopy_stub(&stubs.join("file"), &stub)?;
    let target = s.path().join("rootfs");
    Flatten::new()
        .lower(&stubs)
        .data_lower(&objects)
        .build(&target)?;
    assert_eq!(fs::read_to_string(target.join("file"))?, "object bytes");
    let meta = fs::metadata(target.join("file"))?;
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid(), meta.mtime()),
        (0o640, 42, 43, 1_000_000_000)
    );
    assert!(!conventions::is_metacopy(
        &target.join("file"),
        Namespace::Trusted
    )?);

    // Without the object: a typed error, and neither the target nor a temp dir is left.
    let missing = s.path().join("missing");
    let err = Flatten::new()
        .lower(&stubs)
        .build(&missing)
        .expect_err("no data lower");
    assert!(
        matches!(&err, FallbackError::MissingData { redirect, .. } if redirect == "/ab/cdef"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(s.path())?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().contains("missing")),
        "{left:?}"
    );
    Ok(())
}

#[test]
fn an_existing_target_is_never_touched() -> Result<()> {
    let s = Scratch::new()?;
    let lower = s.layer("lower", &[("f", "x")])?;
    let target = s.layer("target", &[("keep", "me")])?;
    let err = Flatten::new()
        .lower(&lower)
        .build(&target)
        .expect_err("exists");
    assert!(matches!(err, FallbackError::TargetExists { .. }), "{err}");
    assert_eq!(fs::read_to_string(target.join("keep"))?, "me");
    assert!(matches!(
        Flatten::new().build(&s.path().join("t")),
        Err(FallbackError::NoLowerDir)
    ));
    Ok(())
}

/// One thing a layer can hold at a path.
#[derive(Debug, Clone)]
enum Op {
    File(u8),
    Dir,
    Whiteout,
    XWhiteout,
    OpaqueDir,
    Symlink(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u8>().prop_map(Op::File),
        2 => Just(Op::Dir),
        2 => Just(Op::Whiteout),
        1 => Just(Op::XWhiteout),
        2 => Just(Op::OpaqueDir),
        1 => any::<u8>().prop_map(Op::Symlink),
    ]
}

/// Builds `ops` into the layer dir `root` (layer number `n`), skipping what cannot apply.
fn build_layer(root: &Path, n: usize, ops: &[(&str, Op)]) -> Result<()> {
    fs::create_dir(root)?;
    'ops: for (path, op) in ops {
        let full = root.join(path);
        let parent = full.parent().expect("below the root");
        for ancestor in parent
            .ancestors()
            .take_while(|a| a.starts_with(root) && *a != root)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            match fs::symlink_metadata(ancestor) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => continue 'ops,
                Err(_) => fs::create_dir(ancestor)?,
            }
        }
        let exists = fs::symlink_metadata(&full).ok();
        let parent_opacity = conventions::opacity(parent, Namespace::Trusted)?;
        match (op, exists) {
            (Op::OpaqueDir, Some(m)) if m.is_dir() => {
                if conventions::opacity(&full, Namespace::Trusted)? == Opacity::Transparent {
                    conventions::set_opacity(&full, Namespace::Trusted, Opacity::Opaque)?;
                }
            }
            (_, Some(_)) => {}
            (Op::File(c), None) => fs::write(&full, format!("{path} in layer {n}: {c}"))?,
            (Op::Dir, None) => fs::create_dir(&full)?,
            (Op::OpaqueDir, None) => {
                fs::create_dir(&full)?;
                conventions::set_opacity(&full, Namespace::Trusted, Opacity::Opaque)?;
            }
            (Op::Whiteout, None) => conventions::create_whiteout(&full, WhiteoutStyle::CharDevice)?,
            // Xwhiteouts belong in dirs that merge; an opaque dir has nothing below to hide.
            (Op::XWhiteout, None) if parent_opacity != Opacity::Opaque => {
                conventions::create_xwhiteout(&full, Namespace::Trusted)?
            }
            (Op::XWhiteout, None) => {}
            (Op::Symlink(c), None) => symlink(format!("target-{c}"), &full)?,
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For any stack of layers, the flattened tree is what the kernel's overlay shows.
    #[test]
    fn flatten_agrees_with_the_kernel_on_any_stack(
        layers in prop::collection::vec(
            prop::collection::vec(
                (prop::sample::select(vec!["a", "b", "c", "a/a", "a/b", "b/a", "a/b/c", "a/a/a"]), op()),
                0..8,
            ),
            2..5,
        )
    ) {
        if !crate::support::can_mount() {
            return Ok(());
        }
        let s = Scratch::new().unwrap();
        let dirs: Vec<PathBuf> = (0..layers.len()).map(|n| s.path().join(format!("layer{n}"))).collect();
        for (n, (dir, ops)) in dirs.iter().zip(&layers).enumerate() {
            build_layer(dir, n, ops).unwrap();
        }
        let view = s.dir("view").unwrap();
        let guard = Overlay::new().lowers(&dirs).mount_at(&view).unwrap();
        let expected = snapshot(&view);
        guard.unmount().unwrap();
        let target = s.path().join("flattened");
        Flatten::new().lowers(&dirs).build(&target).unwrap();
        prop_assert_eq!(snapshot(&target), expected);
    }
}

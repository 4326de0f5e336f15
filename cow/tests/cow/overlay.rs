//! Overlay mounts through both kernel interfaces: reads, writes, whiteouts, opaque dirs,
//! read-only mounts, errors.

use std::fs;
use std::io::ErrorKind;

use anyhow::Result;
use rustix::io::Errno;
use strata_cow::conventions::{self, Namespace, Opacity, WhiteoutStyle};
use strata_cow::overlay::{MountApi, Overlay, OverlayOptions};
use strata_cow::{LayerRole, MountError};

use crate::support::{Scratch, errno, is_mounted, require_root};

const APIS: [MountApi; 2] = [MountApi::New, MountApi::Legacy];

#[test]
fn merged_view_reads_top_layer_first() -> Result<()> {
    require_root!();
    for api in APIS {
        let s = Scratch::new()?;
        let top = s.layer("top", &[("etc/os", "top"), ("bin/a", "a")])?;
        let base = s.layer(
            "base",
            &[("etc/os", "base"), ("etc/base-only", "b"), ("bin/b", "b")],
        )?;
        let target = s.dir("target")?;
        let guard = Overlay::new()
            .lower(&top)
            .lower(&base)
            .api(api)
            .mount_at(&target)?;
        assert!(is_mounted(&target), "{api:?}");
        assert_eq!(fs::read_to_string(target.join("etc/os"))?, "top");
        assert_eq!(fs::read_to_string(target.join("etc/base-only"))?, "b");
        let mut bin: Vec<_> = fs::read_dir(target.join("bin"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        bin.sort();
        assert_eq!(bin, ["a", "b"]);
        guard.unmount()?;
        assert!(!is_mounted(&target));
    }
    Ok(())
}

#[test]
fn writes_land_in_upper_and_lowers_stay() -> Result<()> {
    require_root!();
    for api in APIS {
        let s = Scratch::new()?;
        let lower = s.layer("lower", &[("f", "lower")])?;
        let (upper, work, target) = s.rw("rw")?;
        let _guard = Overlay::new()
            .lower(&lower)
            .upper(&upper, &work)
            .api(api)
            .mount_at(&target)?;
        fs::write(target.join("f"), "changed")?;
        fs::write(target.join("new"), "new")?;
        assert_eq!(fs::read_to_string(upper.join("f"))?, "changed");
        assert_eq!(fs::read_to_string(upper.join("new"))?, "new");
        assert_eq!(fs::read_to_string(lower.join("f"))?, "lower", "{api:?}");
        assert!(!lower.join("new").exists());
    }
    Ok(())
}

#[test]
fn deleting_a_lower_file_leaves_a_whiteout() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lower = s.layer("lower", &[("gone", "x"), ("dir/inner", "y")])?;
    let (upper, work, target) = s.rw("rw")?;
    let _guard = Overlay::new()
        .lower(&lower)
        .upper(&upper, &work)
        .mount_at(&target)?;
    fs::remove_file(target.join("gone"))?;
    assert!(!target.join("gone").exists());
    let meta = fs::symlink_metadata(upper.join("gone"))?;
    assert_eq!(
        conventions::whiteout_style(&upper.join("gone"), &meta, Namespace::Trusted)?,
        Some(WhiteoutStyle::CharDevice)
    );
    // Replacing a lower dir makes the new one opaque.
    fs::remove_dir_all(target.join("dir"))?;
    fs::create_dir(target.join("dir"))?;
    assert_eq!(fs::read_dir(target.join("dir"))?.count(), 0);
    assert_eq!(
        conventions::opacity(&upper.join("dir"), Namespace::Trusted)?,
        Opacity::Opaque
    );
    assert!(lower.join("dir/inner").exists());
    Ok(())
}

#[test]
fn opaque_dirs_hide_lower_dirs() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let top = s.layer("top", &[("d/top", "t")])?;
    conventions::set_opacity(&top.join("d"), Namespace::Trusted, Opacity::Opaque)?;
    let base = s.layer("base", &[("d/hidden", "h"), ("visible", "v")])?;
    let target = s.dir("target")?;
    let _guard = Overlay::new().lower(&top).lower(&base).mount_at(&target)?;
    assert!(target.join("d/top").exists());
    assert!(!target.join("d/hidden").exists());
    assert!(target.join("visible").exists());
    Ok(())
}

#[test]
fn read_only_mounts_refuse_writes_with_erofs() -> Result<()> {
    require_root!();
    for api in APIS {
        let s = Scratch::new()?;
        let lower = s.layer("lower", &[("f", "x")])?;
        let target = s.dir("target")?;
        let err = Overlay::new()
            .lower(&lower)
            .api(api)
            .mount_at(&target)
            .expect_err("one lower");
        assert!(
            matches!(
                err,
                MountError::TooFewLayers {
                    count: 1,
                    needed: 2
                }
            ),
            "{err}"
        );
        let guard = Overlay::new()
            .lower(&lower)
            .lower(s.dir("empty")?)
            .api(api)
            .mount_at(&target)?;
        let err = fs::write(target.join("new"), "x").expect_err("no upper: read-only");
        assert_eq!(errno(&err), Some(Errno::ROFS), "{api:?}");
        drop(guard);

        let (upper, work, target) = s.rw("ro")?;
        let options = OverlayOptions::default().with_read_only(true);
        let _guard = Overlay::new()
            .lower(&lower)
            .upper(&upper, &work)
            .options(options)
            .api(api)
            .mount_at(&target)?;
        let err = fs::write(target.join("f"), "y").expect_err("ro option");
        assert_eq!(errno(&err), Some(Errno::ROFS), "{api:?}");
        assert_eq!(fs::read_to_string(target.join("f"))?, "x");
    }
    Ok(())
}

#[test]
fn a_missing_lower_is_named_and_its_cause_said_once() -> Result<()> {
    require_root!();
    for api in APIS {
        let s = Scratch::new()?;
        let lower = s.layer("lower", &[])?;
        let missing = s.path().join("no-such-layer");
        let target = s.dir("target")?;
        let err = Overlay::new()
            .lower(&lower)
            .lower(&missing)
            .api(api)
            .mount_at(&target)
            .expect_err("missing lower");
        match &err {
            MountError::Layer {
                role, path, source, ..
            } => {
                assert_eq!(*role, LayerRole::Lower);
                assert_eq!(path, &missing);
                assert_eq!(source.kind(), ErrorKind::NotFound);
            }
            other => panic!("{api:?}: expected a Layer error, got {other:?}"),
        }
        assert!(err.to_string().contains("no-such-layer"), "{err}");
        // The kernel's reason comes once, as the cause, not again in the message.
        let chain = strata_testkit::assert_chain_once(&err);
        let os = std::io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
        assert_eq!(
            chain.matches(&os.to_string()).count(),
            1,
            "{api:?}: {chain}"
        );
        assert!(!is_mounted(&target));
    }
    Ok(())
}

#[test]
fn a_detached_mount_attaches_later() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lower = s.layer("lower", &[("f", "detached")])?;
    let target = s.dir("target")?;
    let fd = Overlay::new()
        .lower(&lower)
        .lower(s.dir("empty")?)
        .mount_detached()?;
    assert!(!is_mounted(&target));
    let guard = strata_cow::MountGuard::attach(fd, &target)?;
    assert_eq!(fs::read_to_string(target.join("f"))?, "detached");
    assert_eq!(guard.target(), target);
    Ok(())
}

#[test]
fn special_characters_in_paths_survive_both_apis() -> Result<()> {
    require_root!();
    for api in APIS {
        let s = Scratch::new()?;
        let a = s.layer(r"a:colon", &[("f", "colon")])?;
        let b = s.layer(r"b,comma", &[("g", "comma")])?;
        let c = s.layer(r"c\back slash", &[("h", "backslash")])?;
        let (upper, work, target) = s.rw(r"u:,\")?;
        let _guard = Overlay::new()
            .lowers([&a, &b, &c])
            .upper(&upper, &work)
            .api(api)
            .mount_at(&target)?;
        assert_eq!(fs::read_to_string(target.join("f"))?, "colon", "{api:?}");
        assert_eq!(fs::read_to_string(target.join("g"))?, "comma");
        assert_eq!(fs::read_to_string(target.join("h"))?, "backslash");
        fs::write(target.join("w"), "w")?;
        assert!(upper.join("w").exists());
    }
    Ok(())
}

#[test]
fn options_reach_the_kernel() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lower = s.layer("lower", &[("f", "x")])?;
    let (upper, work, target) = s.rw("rw")?;
    let options = OverlayOptions::default()
        .with_volatile(true)
        .with_index(Some(true));
    let _guard = Overlay::new()
        .lower(&lower)
        .upper(&upper, &work)
        .options(options)
        .mount_at(&target)?;
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let line = info
        .lines()
        .find(|l| l.contains(target.to_str().expect("utf-8 temp path")))
        .expect("mount listed");
    // Newer kernels show `volatile` as `fsync=volatile`.
    assert!(line.contains("volatile"), "{line}");
    assert!(line.contains("index=on"), "{line}");
    Ok(())
}

//! MountSpec: overlay specs round-trip through to_spec, bind mounts honour ro.

use std::fs;

use anyhow::Result;
use rustix::io::Errno;
use strata_cow::MountSpec;
use strata_cow::overlay::Overlay;

use crate::support::{Scratch, errno, is_mounted, require_root};

#[test]
fn overlay_spec_round_trips_and_mounts() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let top = s.layer("top:1", &[("f", "top")])?;
    let base = s.layer("base,2", &[("f", "base"), ("g", "g")])?;
    let (upper, work, target) = s.rw("rw")?;
    let spec = Overlay::new()
        .lower(&top)
        .lower(&base)
        .upper(&upper, &work)
        .to_spec();
    assert_eq!(spec.fs_type, "overlay");
    assert!(spec.options.iter().any(|o| o == "index=off"), "{spec:?}");
    let lowerdir = format!(
        "lowerdir={}:{}",
        top.display().to_string().replace(':', r"\:"),
        base.display().to_string().replace(',', r"\,")
    );
    assert!(spec.options.contains(&lowerdir), "{spec:?}");
    let _guard = spec.mount_at(&target)?;
    assert_eq!(fs::read_to_string(target.join("f"))?, "top");
    fs::write(target.join("g"), "changed")?;
    assert_eq!(fs::read_to_string(upper.join("g"))?, "changed");
    Ok(())
}

#[test]
fn overlay_spec_errors_name_the_option() {
    let spec = MountSpec {
        fs_type: "overlay".into(),
        source: "overlay".into(),
        options: vec!["lowerdir=/a".into(), "frobnicate=1".into()],
    };
    let err = spec
        .mount_at("/nonexistent".as_ref())
        .expect_err("unknown option");
    assert!(err.to_string().contains("frobnicate"), "{err}");
    let spec = MountSpec {
        options: vec!["lowerdir=/a:".into()],
        ..spec
    };
    let err = spec
        .mount_at("/nonexistent".as_ref())
        .expect_err("trailing colon");
    assert!(err.to_string().contains("lowerdir=/a:"), "{err}");
}

#[test]
fn read_only_bind_refuses_writes() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let source = s.layer("source", &[("f", "x")])?;
    let target = s.dir("target")?;
    let spec = MountSpec {
        fs_type: "bind".into(),
        source: source.to_str().expect("utf-8").into(),
        options: vec!["rbind".into(), "ro".into()],
    };
    let guard = spec.mount_at(&target)?;
    assert_eq!(fs::read_to_string(target.join("f"))?, "x");
    let err = fs::write(target.join("f"), "y").expect_err("read-only bind");
    assert_eq!(errno(&err), Some(Errno::ROFS));
    guard.unmount()?;

    let rw = MountSpec {
        options: vec!["bind".into()],
        ..spec
    };
    let _guard = rw.mount_at(&target)?;
    fs::write(target.join("f"), "y")?;
    assert_eq!(fs::read_to_string(source.join("f"))?, "y");
    assert!(is_mounted(&target));
    Ok(())
}

#[test]
fn rbind_carries_submounts_and_makes_them_read_only_too() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let source = s.layer("source", &[("top", "t")])?;
    let inner = s.layer("inner", &[("deep", "d")])?;
    fs::create_dir(source.join("sub"))?;
    let bind = |src: &std::path::Path, options: &[&str]| MountSpec {
        fs_type: "bind".into(),
        source: src.to_str().expect("utf-8").into(),
        options: options.iter().map(|o| o.to_string()).collect(),
    };
    let _sub = bind(&inner, &["bind"]).mount_at(&source.join("sub"))?;

    let target = s.dir("target")?;
    let guard = bind(&source, &["rbind", "ro"]).mount_at(&target)?;
    assert_eq!(fs::read_to_string(target.join("sub/deep"))?, "d");
    let err = fs::write(target.join("sub/deep"), "x").expect_err("recursively read-only");
    assert_eq!(errno(&err), Some(Errno::ROFS));
    fs::write(source.join("sub/deep"), "still writable at the source")?;
    guard.unmount()?;

    let _flat = bind(&source, &["bind", "ro"]).mount_at(&target)?;
    assert!(
        !target.join("sub/deep").exists(),
        "a plain bind leaves submounts out"
    );
    Ok(())
}

//! MountGuard: unmount on drop (also while unwinding), explicit unmount reporting EBUSY.

use std::fs::File;
use std::panic;

use anyhow::Result;
use rustix::io::Errno;
use strata_cow::MountError;
use strata_cow::overlay::Overlay;

use crate::support::{Scratch, is_mounted, require_root};

#[test]
fn drop_unmounts_even_while_unwinding() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lower = s.layer("lower", &[("f", "x")])?;
    let empty = s.dir("empty")?;
    let target = s.dir("target")?;
    let result = panic::catch_unwind(|| {
        let _guard = Overlay::new()
            .lower(&lower)
            .lower(&empty)
            .mount_at(&target)
            .expect("mount");
        assert!(is_mounted(&target));
        panic!("boom");
    });
    assert!(result.is_err());
    assert!(!is_mounted(&target));
    Ok(())
}

#[test]
fn explicit_unmount_reports_ebusy() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lower = s.layer("lower", &[("f", "x")])?;
    let empty = s.dir("empty")?;
    let target = s.dir("target")?;
    let guard = Overlay::new()
        .lower(&lower)
        .lower(&empty)
        .mount_at(&target)?;
    let open = File::open(target.join("f"))?;
    let err = guard.unmount().expect_err("busy");
    assert_eq!(err.errno(), Some(Errno::BUSY), "{err}");
    assert!(
        err.to_string().contains(target.to_str().expect("utf-8")),
        "{err}"
    );
    assert!(is_mounted(&target), "a failed unmount leaves the mount");
    drop(open);
    strata_cow::unmount(&target)?;
    assert!(!is_mounted(&target));
    Ok(())
}

#[test]
fn persistent_mounts_outlive_the_guard() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lower = s.layer("lower", &[("f", "x")])?;
    let empty = s.dir("empty")?;
    let target = s.dir("target")?;
    let kept = Overlay::new()
        .lower(&lower)
        .lower(&empty)
        .mount_at(&target)?
        .into_persistent();
    assert_eq!(kept, target);
    assert!(is_mounted(&target));
    strata_cow::unmount(&target)?;
    assert!(!is_mounted(&target));
    let err = strata_cow::unmount(&target).expect_err("nothing mounted");
    assert!(
        matches!(&err, MountError::NotMounted { target: t } if *t == target),
        "{err}"
    );
    assert_eq!(err.errno(), Some(Errno::INVAL));
    Ok(())
}

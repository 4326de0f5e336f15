//! Feature probe against this machine's kernel and filesystems.

use anyhow::Result;
use strata_cow::probe::Features;

use crate::support::{Scratch, require_root};

#[test]
fn kernel_features_are_found() -> Result<()> {
    require_root!();
    let f = Features::probe();
    assert!(f.overlay());
    assert!(f.new_mount_api());
    // Linux 6.8 added lowerdir+/datadir+; CI runs a newer kernel.
    assert!(f.lowerdir_add(), "{f:?}");
    assert!(f.datadir_add(), "{f:?}");
    // Layers as O_PATH fds: 6.15+.
    assert!(f.layer_fds(), "{f:?}");
    assert!(std::ptr::eq(f, Features::probe()), "cached");
    Ok(())
}

#[test]
fn temp_dirs_have_d_type_and_ext4_has_no_reflink() -> Result<()> {
    let s = Scratch::new()?;
    let f = Features::probe();
    assert!(f.d_type(s.path())?);
    assert_eq!(
        std::fs::read_dir(s.path())?.count(),
        0,
        "scratch files removed"
    );
    let fs_type = rustix::fs::statfs(s.path())?.f_type;
    if fs_type == 0xEF53 {
        assert!(!f.reflink(s.path())?, "ext4 has no FICLONE");
    }
    assert!(f.d_type(std::path::Path::new("/no/such/dir")).is_err());
    Ok(())
}

#[test]
fn user_namespace_overlay_and_idmapped_mounts() -> Result<()> {
    require_root!();
    let f = Features::probe();
    assert!(f.userns_overlay(), "{f:?}");
    let s = Scratch::new()?;
    if rustix::fs::statfs(s.path())?.f_type == 0xEF53 {
        assert!(
            f.idmapped_mounts(s.path())?,
            "ext4 supports idmapped mounts"
        );
    }
    assert!(
        !f.idmapped_mounts(std::path::Path::new("/proc"))?,
        "procfs does not"
    );
    assert!(
        f.idmapped_mounts(std::path::Path::new("/no/such/dir"))
            .is_err()
    );
    Ok(())
}

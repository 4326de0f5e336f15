//! Rootless: an unprivileged process (uid 65534) in a new user + mount namespace mounts an
//! overlay with `userxattr` and uses it. The parent test re-executes this test binary through
//! `setpriv` and `unshare -Urm` to run [`child`] there.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use strata_cow::MountError;
use strata_cow::conventions::{self, Namespace, Opacity};
use strata_cow::overlay::{Overlay, OverlayOptions};

use crate::support::{Scratch, require_root};

const DIR_ENV: &str = "STRATA_COW_ROOTLESS_DIR";
const NOBODY: u32 = 65534;

#[test]
fn userxattr_overlay_works_in_a_user_namespace() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    s.layer("lower", &[("f", "lower"), ("gone", "x"), ("d/inner", "y")])?;
    s.rw("rw")?;
    // A copy of this test binary that the unprivileged user can surely execute (the build
    // dir may sit under a private home).
    let exe = s.path().join("cow-tests");
    fs::copy(std::env::current_exe()?, &exe)?;
    chown_tree(s.path(), NOBODY)?;
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .args(["unshare", "--user", "--map-root-user", "--mount", "--"])
        .arg(&exe)
        .args([
            "--exact",
            "rootless::child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, s.path())
        .output()
        .context("run setpriv/unshare (util-linux)")?;
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{log}");
    assert!(log.contains("1 passed"), "child did not run:\n{log}");

    // The child's mount died with its namespace; its writes stayed in the upper, owned by the
    // unprivileged user, with overlay's markers in the user. namespace.
    let upper = s.path().join("rw-upper");
    assert_eq!(fs::read_to_string(upper.join("new"))?, "from the namespace");
    assert_eq!(fs::metadata(upper.join("new"))?.uid(), NOBODY);
    let gone = fs::symlink_metadata(upper.join("gone"))?;
    assert!(
        gone.file_type().is_char_device() && gone.rdev() == 0,
        "whiteout"
    );
    assert_eq!(
        conventions::opacity(&upper.join("d"), Namespace::User)?,
        Opacity::Opaque
    );
    assert_eq!(
        conventions::opacity(&upper.join("d"), Namespace::Trusted)?,
        Opacity::Transparent
    );
    assert_eq!(fs::read_to_string(s.path().join("lower/f"))?, "lower");
    Ok(())
}

/// Runs inside the namespace (see the parent test above); fails when run any other way.
#[test]
#[ignore = "helper: run by userxattr_overlay_works_in_a_user_namespace inside a user namespace"]
fn child() -> Result<()> {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        bail!("run only by rootless::userxattr_overlay_works_in_a_user_namespace");
    };
    let dir = Path::new(&dir);
    let uid_map = fs::read_to_string("/proc/self/uid_map")?;
    assert!(
        uid_map
            .split_whitespace()
            .eq(["0", &NOBODY.to_string(), "1"]),
        "{uid_map}"
    );

    // The probe works unprivileged, from inside a user namespace too.
    assert!(strata_cow::probe::Features::probe().userns_overlay());

    let userxattr = OverlayOptions::default().with_userxattr(true);
    let (lower, upper, work) = (dir.join("lower"), dir.join("rw-upper"), dir.join("rw-work"));
    let target = dir.join("rw-target");
    let err = Overlay::new()
        .lower(&lower)
        .upper(&upper, &work)
        .options(userxattr.clone().with_metacopy(Some(true)))
        .mount_at(&target)
        .expect_err("metacopy needs trusted xattrs");
    assert!(matches!(err, MountError::Conflict { .. }), "{err}");

    let guard = Overlay::new()
        .lower(&lower)
        .upper(&upper, &work)
        .options(userxattr)
        .mount_at(&target)?;
    assert_eq!(fs::read_to_string(target.join("f"))?, "lower");
    fs::write(target.join("new"), "from the namespace")?;
    fs::remove_file(target.join("gone"))?;
    fs::remove_dir_all(target.join("d"))?;
    fs::create_dir(target.join("d"))?;
    assert!(!target.join("gone").exists());
    assert_eq!(fs::read_dir(target.join("d"))?.count(), 0);
    guard.unmount()?;
    Ok(())
}

fn chown_tree(path: &Path, id: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(id), Some(id))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), id)?;
        }
    }
    Ok(())
}

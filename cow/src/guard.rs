//! Attaching a detached mount at a path, and taking it away again.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{MoveMountFlags, UnmountFlags};

use crate::{MountError, mountinfo};

/// A mount attached at a path, unmounted when the guard is dropped (also while unwinding).
///
/// Dropping never panics: a failed unmount is logged through `tracing` and the mount is then
/// detached lazily (`MNT_DETACH`), so that nothing stays visible. Call
/// [`unmount`](MountGuard::unmount) to learn about failures such as `EBUSY` instead, or
/// [`into_persistent`](MountGuard::into_persistent) to keep the mount.
#[derive(Debug)]
#[must_use = "dropping the guard unmounts at once"]
pub struct MountGuard {
    target: PathBuf,
    armed: bool,
}

impl MountGuard {
    /// Attaches the detached mount `mount` (from `fsmount` or `open_tree`) at `target`.
    ///
    /// # References
    /// - [`move_mount(2)`](https://man7.org/linux/man-pages/man2/move_mount.2.html)
    pub fn attach(mount: OwnedFd, target: &Path) -> Result<MountGuard, MountError> {
        rustix::mount::move_mount(
            mount.as_fd(),
            "",
            CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| MountError::Target {
            op: "move_mount",
            target: target.to_path_buf(),
            source: e.into(),
        })?;
        Ok(MountGuard::adopt(target.to_path_buf()))
    }

    /// Takes charge of a mount that is already attached at `target`; a relative target is made
    /// absolute now, so that a later change of the cwd cannot aim the unmount elsewhere.
    pub(crate) fn adopt(target: PathBuf) -> MountGuard {
        MountGuard {
            target: std::path::absolute(&target).unwrap_or(target),
            armed: true,
        }
    }

    /// Where the mount is attached (absolute).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure (e.g. `EBUSY` while a file is open inside).
    ///
    /// On failure the mount stays where it is; [`unmount`](crate::unmount) the target later.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.armed = false;
        unmount(&self.target)
    }

    /// Keeps the mount after the guard is gone and returns its target; undo with
    /// [`unmount`](crate::unmount).
    pub fn into_persistent(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.target)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Err(err) = unmount(&self.target) else {
            return;
        };
        tracing::warn!(target = %self.target.display(), error = &err as &dyn std::error::Error, "unmount failed; detaching lazily");
        let lazy = UnmountFlags::NOFOLLOW | UnmountFlags::DETACH;
        if let Err(err) = rustix::mount::unmount(&self.target, lazy) {
            tracing::error!(target = %self.target.display(), error = &err as &dyn std::error::Error, "lazy unmount failed; mount left behind");
        }
    }
}

/// Unmounts the mount at `target` and every mount below it, deepest first (as `umount -R`
/// does; an `rbind` brings its submounts along), never following a final symlink. Stops at the
/// first failure, e.g. `EBUSY` while a file is open inside, naming the mount point that failed.
///
/// # References
/// - [`umount2(2)`](https://man7.org/linux/man-pages/man2/umount2.2.html)
pub fn unmount(target: &Path) -> Result<(), MountError> {
    let umount = |point: &Path| {
        rustix::mount::unmount(point, UnmountFlags::NOFOLLOW).map_err(|e| match e {
            rustix::io::Errno::INVAL => MountError::NotMounted {
                target: point.to_path_buf(),
            },
            e => MountError::Target {
                op: "umount",
                target: point.to_path_buf(),
                source: e.into(),
            },
        })
    };
    // The table names mounts by canonical path; without it, the top mount alone is tried.
    let submounts = mountinfo::submounts(&canonical(target)).unwrap_or_else(|err| {
        tracing::debug!(%err, "no mount table; unmounting the top mount only");
        Vec::new()
    });
    for point in &submounts {
        umount(point)?;
    }
    umount(target)
}

/// `target` with its parent's symlinks and `..` resolved (the final component is kept as is,
/// since unmounting never follows it).
fn canonical(target: &Path) -> PathBuf {
    let absolute = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

//! Mounting through `mount(2)` with the classic option string.
//!
//! `mount(2)` copies at most one page of option data. When the absolute paths do not fit, the
//! string is compacted to paths relative to the lowers' common parent, and the mount is made from
//! a short-lived thread that first unshares its filesystem context (`unshare(CLONE_FS)`) and then
//! `chdir`s there: the kernel resolves relative layer paths against the caller's cwd, and this
//! way the process-wide cwd other threads see never changes. containerd does the same
//! (`mountAt` in `mount/mount_linux.go`, a locked OS thread with `CLONE_FS` unshared); moby
//! re-executes itself as a child (`mountfrom`), which costs a process per mount.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::mount::MountFlags;

use super::Overlay;
use crate::probe::Features;
use crate::{LayerRole, MountError, sys};

/// Mounts `overlay` at `target` with `mount(2)`.
pub(super) fn mount_at(overlay: &Overlay, target: &Path) -> Result<(), MountError> {
    check_dirs(overlay)?;
    let max = rustix::param::page_size() - 1;
    let data = option_data(overlay, None);
    if data.len() <= max {
        return mount_data(overlay, target, data);
    }
    let overlay = &absolute(overlay)?;
    let parent = common_parent(overlay);
    let data = option_data(overlay, Some(&parent));
    if data.len() > max {
        return Err(MountError::OptionsTooLong {
            len: data.len(),
            max,
            parent,
        });
    }
    let target = std::path::absolute(target).map_err(|e| MountError::Target {
        op: "mount",
        target: target.to_path_buf(),
        source: e,
    })?;
    let chdir_and_mount = || {
        sys::unshare_fs().map_err(|source| MountError::Kernel {
            op: "unshare(CLONE_FS)",
            detail: String::new(),
            source,
        })?;
        rustix::process::chdir(&parent).map_err(|e| MountError::Layer {
            role: LayerRole::Lower,
            path: parent.clone(),
            detail: "chdir to the common parent".to_owned(),
            source: e.into(),
        })?;
        mount_data(overlay, &target, data)
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("strata-cow-mount".to_owned())
            .spawn_scoped(scope, chdir_and_mount)
            .map_err(|source| MountError::Kernel {
                op: "spawn the mounting thread",
                detail: String::new(),
                source,
            })?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The whole option string, paths relative to `base` where they are under it.
pub(super) fn option_data(overlay: &Overlay, base: Option<&Path>) -> Vec<u8> {
    let index_knob = Features::probe().index_knob();
    overlay.option_data_words(base, index_knob).join(&b","[..])
}

/// `overlay` with every path made absolute (against the cwd), so that it survives the `chdir`.
fn absolute(overlay: &Overlay) -> Result<Overlay, MountError> {
    let abs = |role, dir: &PathBuf| {
        std::path::absolute(dir).map_err(|source| MountError::Layer {
            role,
            path: dir.clone(),
            detail: String::new(),
            source,
        })
    };
    let mut out = overlay.clone();
    for dir in &mut out.lowers {
        *dir = abs(LayerRole::Lower, dir)?;
    }
    for dir in &mut out.data_lowers {
        *dir = abs(LayerRole::DataLower, dir)?;
    }
    if let Some((upper, work)) = &mut out.upper {
        *upper = abs(LayerRole::Upper, upper)?;
        *work = abs(LayerRole::Work, work)?;
    }
    Ok(out)
}

/// Opens every directory once so that a missing one is named in the error (`mount(2)` says only
/// `ENOENT`).
fn check_dirs(overlay: &Overlay) -> Result<(), MountError> {
    let dirs = overlay
        .lowers
        .iter()
        .map(|d| (LayerRole::Lower, d))
        .chain(
            overlay
                .data_lowers
                .iter()
                .map(|d| (LayerRole::DataLower, d)),
        )
        .chain(
            overlay
                .upper
                .iter()
                .flat_map(|(u, w)| [(LayerRole::Upper, u), (LayerRole::Work, w)]),
        );
    for (role, dir) in dirs {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(CWD, dir, flags, Mode::empty()).map_err(|e| MountError::Layer {
            role,
            path: dir.clone(),
            detail: String::new(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// `mount("overlay", target, "overlay", flags, data)`.
///
/// # References
/// - [`mount(2)`](https://man7.org/linux/man-pages/man2/mount.2.html)
fn mount_data(overlay: &Overlay, target: &Path, data: Vec<u8>) -> Result<(), MountError> {
    let data = CString::new(data).map_err(|_| MountError::UnsupportedPath {
        path: PathBuf::from("(option data)"),
        reason: "contains a NUL byte",
    })?;
    let mut flags = MountFlags::empty();
    if overlay.options.read_only {
        flags |= MountFlags::RDONLY;
    }
    rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str()).map_err(|e| {
        MountError::Kernel {
            op: "mount(overlay)",
            detail: format!(
                "target {}; the kernel log (dmesg) has the reason",
                target.display()
            ),
            source: e.into(),
        }
    })
}

/// The deepest directory holding every lower dir (regular and data-only); the paths are absolute.
fn common_parent(overlay: &Overlay) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for dir in overlay.lowers.iter().chain(&overlay.data_lowers) {
        common = Some(match common {
            None => dir.clone(),
            Some(common) => common
                .components()
                .zip(dir.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    common
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/"))
}

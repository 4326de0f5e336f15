//! Mounting through the new mount API: `fsopen("overlay")`, one `fsconfig` per option and per
//! layer (`lowerdir+`, `datadir+`, `upperdir`, `workdir`), then `fsmount`.
//!
//! Layers go in as file descriptors where the kernel takes them (6.13+): no escaping, no length
//! limit, no race between checking a path and mounting it. Older kernels get the path as a string,
//! which `fsconfig` caps at 255 bytes; longer paths go as `/proc/self/fd/N` of an open fd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use super::{Overlay, escape_path};
use crate::probe::Features;
use crate::{LayerRole, MountError};

/// Longest string value `fsconfig(FSCONFIG_SET_STRING)` copies (it takes 256 bytes with the NUL).
const FSCONFIG_STRING_MAX: usize = 255;

/// Creates the overlay described by `overlay` as a detached mount.
pub(super) fn mount(overlay: &Overlay, features: &Features) -> Result<OwnedFd, MountError> {
    if !features.lowerdir_add() || (!overlay.data_lowers.is_empty() && !features.datadir_add()) {
        return Err(MountError::Unsupported {
            what: "lowerdir+/datadir+ of the new mount API",
        });
    }
    let ctx = FsContext::open()?;
    for (key, value) in overlay.option_words(features.index_knob()) {
        ctx.option(key, value)?;
    }
    let layers = overlay
        .lowers
        .iter()
        .map(|dir| ("lowerdir+", LayerRole::Lower, dir))
        .chain(
            overlay
                .data_lowers
                .iter()
                .map(|dir| ("datadir+", LayerRole::DataLower, dir)),
        );
    let upper = overlay.upper.iter().flat_map(|(upper, work)| {
        [
            ("upperdir", LayerRole::Upper, upper),
            ("workdir", LayerRole::Work, work),
        ]
    });
    for (key, role, dir) in layers.chain(upper) {
        ctx.layer(key, role, dir, features.layer_fds())?;
    }
    rustix::mount::fsconfig_create(&ctx.fd).map_err(|e| ctx.error("fsconfig(create)", e))?;
    let mut attrs = MountAttrFlags::empty();
    if overlay.options.read_only {
        attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
    }
    rustix::mount::fsmount(&ctx.fd, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| ctx.error("fsmount", e))
}

/// An overlay filesystem context being configured.
pub(crate) struct FsContext {
    fd: OwnedFd,
}

impl FsContext {
    /// `fsopen("overlay")`.
    ///
    /// # References
    /// - [`fsopen(2)`](https://man7.org/linux/man-pages/man2/fsopen.2.html)
    pub(crate) fn open() -> Result<FsContext, MountError> {
        let fd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
            MountError::Kernel {
                op: "fsopen(overlay)",
                detail: String::new(),
                source: e.into(),
            }
        })?;
        Ok(FsContext { fd })
    }

    /// Sets the option `key` (a flag when `value` is `None`).
    ///
    /// # References
    /// - [`fsconfig(2)`](https://man7.org/linux/man-pages/man2/fsconfig.2.html)
    pub(crate) fn option(&self, key: &'static str, value: Option<&str>) -> Result<(), MountError> {
        match value {
            Some(value) => rustix::mount::fsconfig_set_string(&self.fd, key, value),
            None => rustix::mount::fsconfig_set_flag(&self.fd, key),
        }
        .map_err(|e| self.error(key, e))
    }

    /// Adds the directory `dir` under `key`, as an fd when `by_fd`, else as a path string.
    pub(crate) fn layer(
        &self,
        key: &'static str,
        role: LayerRole,
        dir: &Path,
        by_fd: bool,
    ) -> Result<(), MountError> {
        let layer_error = |detail: String, source: io::Error| MountError::Layer {
            role,
            path: dir.to_path_buf(),
            detail,
            source,
        };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(CWD, dir, flags, Mode::empty())
            .map_err(|e| layer_error(String::new(), e.into()))?;
        let result = if by_fd {
            self.option_fd(key, fd.as_fd())
        } else {
            // The kernel unescapes `upperdir`/`workdir` strings but takes `lowerdir+` and
            // `datadir+` literally (`ovl_mount_dir` against `ovl_mount_dir_noesc`).
            let mut value = Vec::new();
            if matches!(key, "upperdir" | "workdir") {
                escape_path(&mut value, dir);
            } else {
                value.extend_from_slice(dir.as_os_str().as_bytes());
            }
            if value.len() > FSCONFIG_STRING_MAX {
                value = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
            }
            rustix::mount::fsconfig_set_string(&self.fd, key, value)
        };
        result.map_err(|e| layer_error(self.log(), e.into()))
    }

    /// `fsconfig(FSCONFIG_SET_STRING)` of a path.
    pub(crate) fn option_path(&self, key: &str, path: impl AsRef<Path>) -> Result<(), Errno> {
        rustix::mount::fsconfig_set_string(&self.fd, key, path.as_ref())
    }

    /// `fsconfig(FSCONFIG_SET_FD)`.
    pub(crate) fn option_fd(&self, key: &str, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        rustix::mount::fsconfig_set_fd(&self.fd, key, fd)
    }

    /// A [`MountError::Kernel`] for `op`, with the kernel's log.
    pub(crate) fn error(&self, op: &'static str, errno: Errno) -> MountError {
        MountError::Kernel {
            op,
            detail: self.log(),
            source: errno.into(),
        }
    }

    /// Drains the context's message log (what the kernel says went wrong), `; `-separated.
    /// Overlay reports most of its reasons to the kernel log instead; then this says so.
    fn log(&self) -> String {
        let mut messages = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(len) = rustix::io::read(&self.fd, &mut buf) {
            if len == 0 {
                break;
            }
            messages.push(String::from_utf8_lossy(&buf[..len]).trim_end().to_owned());
        }
        if messages.is_empty() {
            return "overlayfs logs its reason to the kernel log (dmesg)".to_owned();
        }
        messages.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Read;

    use super::*;

    /// Layers passed as path strings (pre-6.13 kernels) must work like fds: special characters
    /// need no escaping with `lowerdir+`, and a path over 255 bytes goes as `/proc/self/fd/N`.
    #[test]
    fn layers_by_string_and_by_fd_mount_alike() {
        if !strata_testkit::can_mount() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let special = tmp.path().join(r"a:b,c\d e");
        let long = tmp.path().join("l".repeat(200)).join("m".repeat(100));
        assert!(long.as_os_str().len() > FSCONFIG_STRING_MAX);
        fs::create_dir_all(&special).unwrap();
        fs::create_dir_all(&long).unwrap();
        fs::write(special.join("top"), "special").unwrap();
        fs::write(long.join("below"), "long").unwrap();
        for by_fd in [true, false] {
            let ctx = FsContext::open().unwrap();
            ctx.layer("lowerdir+", LayerRole::Lower, &special, by_fd)
                .unwrap();
            ctx.layer("lowerdir+", LayerRole::Lower, &long, by_fd)
                .unwrap();
            // An upper whose name needs escaping when it goes as a string.
            let upper = tmp.path().join(format!(r"u\:,{by_fd}"));
            let work = tmp.path().join(format!("w{by_fd}"));
            fs::create_dir(&upper).unwrap();
            fs::create_dir(&work).unwrap();
            fs::write(upper.join("up"), "upper").unwrap();
            ctx.layer("upperdir", LayerRole::Upper, &upper, by_fd)
                .unwrap();
            ctx.layer("workdir", LayerRole::Work, &work, by_fd).unwrap();
            rustix::mount::fsconfig_create(&ctx.fd).unwrap();
            let mnt = rustix::mount::fsmount(
                &ctx.fd,
                FsMountFlags::FSMOUNT_CLOEXEC,
                MountAttrFlags::empty(),
            )
            .unwrap();
            for (name, expected) in [("top", "special"), ("below", "long"), ("up", "upper")] {
                let fd =
                    rustix::fs::openat(&mnt, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                        .unwrap();
                let mut text = String::new();
                fs::File::from(fd).read_to_string(&mut text).unwrap();
                assert_eq!(text, expected, "by_fd={by_fd}");
            }
        }
    }
}

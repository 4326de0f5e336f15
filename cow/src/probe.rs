//! What the running kernel and a directory's filesystem can do, asked once and cached.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{CWD, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::overlay::new_api::FsContext;
use crate::sys::{self, Recursion};

/// Overlay features of the running kernel. [`Features::probe`] asks the kernel once per process;
/// [`Features::userns_overlay`] is asked on its first call; the directory-specific questions
/// ([`Features::d_type`], [`Features::reflink`], [`Features::idmapped_mounts`]) ask each time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    overlay: bool,
    new_mount_api: bool,
    lowerdir_add: bool,
    datadir_add: bool,
    layer_fds: bool,
    index_knob: bool,
    /// Asked on first use only: it forks a child, which mounting never needs.
    userns_overlay: OnceLock<bool>,
}

impl Features {
    /// The features of the running kernel, probed on the first call (by configuring, never
    /// creating, throwaway overlay contexts) and cached for the life of the process.
    ///
    /// Without `CAP_SYS_ADMIN` overlay cannot be asked; then [`Features::overlay`] comes from
    /// `/proc/filesystems` and the overlay options read `false`.
    pub fn probe() -> &'static Features {
        static FEATURES: OnceLock<Features> = OnceLock::new();
        FEATURES.get_or_init(Features::detect)
    }

    fn detect() -> Features {
        let mut features = Features {
            overlay: false,
            new_mount_api: false,
            lowerdir_add: false,
            datadir_add: false,
            layer_fds: false,
            index_knob: false,
            userns_overlay: OnceLock::new(),
        };
        match FsContext::open() {
            Ok(ctx) => {
                features.overlay = true;
                features.new_mount_api = true;
                features.lowerdir_add = ctx.option_path("lowerdir+", "/").is_ok();
                features.datadir_add =
                    features.lowerdir_add && ctx.option_path("datadir+", "/").is_ok();
                features.layer_fds = FsContext::open().is_ok_and(|ctx| {
                    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
                    rustix::fs::openat(CWD, "/", flags, Mode::empty())
                        .is_ok_and(|root| ctx.option_fd("lowerdir+", root.as_fd()).is_ok())
                });
            }
            Err(err) => {
                tracing::debug!(
                    error = &err as &dyn std::error::Error,
                    "fsopen(overlay) failed; reading /proc/filesystems"
                );
                features.overlay = std::fs::read_to_string("/proc/filesystems")
                    .is_ok_and(|list| list.lines().any(|l| l.ends_with("\toverlay")));
                features.new_mount_api = err.errno() != Some(Errno::NOSYS);
            }
        }
        // The module's parameters appear once it is loaded, which fsopen just did.
        features.index_knob = Path::new("/sys/module/overlay/parameters/index").exists();
        features
    }

    /// Overlayfs is available.
    pub fn overlay(&self) -> bool {
        self.overlay
    }

    /// The kernel has `fsopen`/`fsconfig`/`fsmount` (5.2+).
    pub fn new_mount_api(&self) -> bool {
        self.new_mount_api
    }

    /// Overlay takes lower dirs one at a time with `lowerdir+` (6.8+), lifting the page limit
    /// of the `lowerdir=` string.
    pub fn lowerdir_add(&self) -> bool {
        self.lowerdir_add
    }

    /// Overlay takes data-only lower dirs with `datadir+` (6.8+).
    pub fn datadir_add(&self) -> bool {
        self.datadir_add
    }

    /// Overlay takes layers as file descriptors (`FSCONFIG_SET_FD` with an `O_PATH` fd).
    pub fn layer_fds(&self) -> bool {
        self.layer_fds
    }

    /// The overlay module has the `index` knob, so `index=off` may be sent (containerd's test).
    pub fn index_knob(&self) -> bool {
        self.index_knob
    }

    /// An overlay with `userxattr` can be created inside a new user + mount namespace (what a
    /// rootless runtime does; Linux 5.11+, unless user namespaces are restricted). Probed in a
    /// forked child (on the first call), so it holds for unprivileged callers too.
    pub fn userns_overlay(&self) -> bool {
        *self.userns_overlay.get_or_init(|| {
            self.overlay
                && sys::userns_overlay()
                    .inspect_err(|err| {
                        tracing::debug!(
                            error = err as &dyn std::error::Error,
                            "no overlay in a user namespace"
                        )
                    })
                    .is_ok()
        })
    }

    /// Whether a mount of the filesystem holding `dir` can be idmapped (`MOUNT_ATTR_IDMAP`, Linux
    /// 5.12+ and per filesystem). Tries it on a detached clone of `dir`'s mount with a fresh user
    /// namespace; needs `CAP_SYS_ADMIN` (without it the answer is `false`).
    ///
    /// # References
    /// - [`mount_setattr(2)`](https://man7.org/linux/man-pages/man2/mount_setattr.2.html)
    pub fn idmapped_mounts(&self, dir: &Path) -> io::Result<bool> {
        use rustix::mount::{MountAttrFlags, OpenTreeFlags};
        let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        let tree = match rustix::mount::open_tree(CWD, dir, flags) {
            Ok(tree) => tree,
            Err(Errno::PERM | Errno::NOSYS) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let userns = sys::new_user_namespace()?;
        let idmap = MountAttrFlags::MOUNT_ATTR_IDMAP;
        match sys::mount_setattr(tree.as_fd(), Recursion::Single, idmap, Some(userns.as_fd())) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error().map(Errno::from_raw_os_error),
                    Some(Errno::INVAL | Errno::PERM | Errno::NOSYS | Errno::OPNOTSUPP)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the filesystem of `dir` reports file types in directory entries (`d_type`),
    /// which overlay needs for whiteouts. Creates and removes a scratch file in `dir`.
    ///
    /// # References
    /// - [`getdents64(2)`](https://man7.org/linux/man-pages/man2/getdents64.2.html)
    pub fn d_type(&self, dir: &Path) -> io::Result<bool> {
        let name = scratch_name();
        let dir_fd = open_dir(dir)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        drop(rustix::fs::openat(
            &dir_fd,
            &name,
            flags,
            Mode::from_raw_mode(0o600),
        )?);
        let found = scan_type(&dir_fd, &name);
        let removed = rustix::fs::unlinkat(&dir_fd, &name, rustix::fs::AtFlags::empty());
        let file_type = found?;
        removed?;
        Ok(file_type.is_some_and(|t| t == FileType::RegularFile))
    }

    /// Whether the filesystem of `dir` shares extents between files (`FICLONE`, as on XFS with
    /// `reflink=1`, btrfs, bcachefs). Uses two unnamed scratch files in `dir`.
    ///
    /// # References
    /// - [`ioctl_ficlone(2)`](https://man7.org/linux/man-pages/man2/ioctl_ficlone.2.html)
    pub fn reflink(&self, dir: &Path) -> io::Result<bool> {
        let dir_fd = open_dir(dir)?;
        let src = scratch_file(&dir_fd)?;
        rustix::io::write(&src, &[0x5a; 4096])?;
        let dst = scratch_file(&dir_fd)?;
        match rustix::fs::ioctl_ficlone(&dst, &src) {
            Ok(()) => Ok(true),
            Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::XDEV | Errno::NOTTY | Errno::NOSYS) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(CWD, dir, flags, Mode::empty())?)
}

/// A name no other probe in this or another process uses at the same time.
fn scratch_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(".strata-probe-{}-{n}", std::process::id())
}

/// A read-write file in `dir` that no one can see: `O_TMPFILE`, else created and unlinked.
fn scratch_file(dir: &OwnedFd) -> io::Result<OwnedFd> {
    let mode = Mode::from_raw_mode(0o600);
    match rustix::fs::openat(
        dir,
        ".",
        OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
        mode,
    ) {
        Ok(fd) => Ok(fd),
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
            let name = scratch_name();
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(dir, &name, flags, mode)?;
            rustix::fs::unlinkat(dir, &name, rustix::fs::AtFlags::empty())?;
            Ok(fd)
        }
        Err(e) => Err(e.into()),
    }
}

/// The `d_type` of entry `name` in `dir`, `None` if it is not listed.
fn scan_type(dir: &OwnedFd, name: &str) -> io::Result<Option<FileType>> {
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        if entry.file_name().to_bytes() == name.as_bytes() {
            return Ok(Some(entry.file_type()));
        }
    }
    Ok(None)
}

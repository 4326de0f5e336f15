//! The few system calls that rustix offers only as `unsafe` or not at all.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::mount::MountAttrFlags;
use rustix::thread::UnshareFlags;

/// Gives the calling thread its own cwd, root and umask (`unshare(CLONE_FS)`), so that a
/// `chdir` on it leaves every other thread alone.
///
/// # References
/// - [`unshare(2)`](https://man7.org/linux/man-pages/man2/unshare.2.html)
pub(crate) fn unshare_fs() -> io::Result<()> {
    // SAFETY: `unshare_unsafe` is unsafe because `CLONE_FILES` would split the fd table under
    // other threads' feet; `CLONE_FS` touches only this thread's cwd, root and umask.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS) }?;
    Ok(())
}

/// `struct mount_attr` of `<linux/mount.h>` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Which mounts `mount_setattr` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recursion {
    /// Only the mount `fd` refers to.
    Single,
    /// That mount and every mount below it (`AT_RECURSIVE`).
    Recursive,
}

/// Sets `attrs` on the mount `mount` refers to (an `open_tree`/`fsmount` fd); with
/// [`MountAttrFlags::MOUNT_ATTR_IDMAP`], `userns` gives the mapping.
///
/// # References
/// - [`mount_setattr(2)`](https://man7.org/linux/man-pages/man2/mount_setattr.2.html)
pub(crate) fn mount_setattr(
    mount: BorrowedFd<'_>,
    recursion: Recursion,
    attrs: MountAttrFlags,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs.bits().into(),
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH;
    if recursion == Recursion::Recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: the path is a NUL-terminated empty string, `attr` is a live `struct mount_attr`
    // whose exact size is passed, and the kernel only reads both during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

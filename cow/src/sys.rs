//! The few system calls that rustix offers only as `unsafe` or not at all.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::io::Errno;
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

/// Runs `check` in a forked child that never executes anything, and returns its result.
///
/// The child is a copy of a possibly multi-threaded process, so `check` may only make system
/// calls: no allocation, no locks (what `fork(2)` allows before `exec`). The result comes back
/// through std's exec-error pipe: success travels as error code 0, so the child is never exec'd.
///
/// # Safety
/// `check` must be async-signal-safe as described above.
unsafe fn in_forked_child(
    mut check: impl FnMut() -> io::Result<()> + Send + Sync + 'static,
) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let mut command = Command::new("/");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the caller promises `check` is async-signal-safe; building the io::Error from a
    // raw code allocates nothing.
    unsafe {
        command.pre_exec(move || {
            Err(check()
                .err()
                .unwrap_or_else(|| io::Error::from_raw_os_error(0)))
        });
    }
    match command.spawn() {
        Err(e) if e.raw_os_error() == Some(0) => Ok(()),
        Err(e) => Err(e),
        Ok(mut child) => {
            // Unreachable: pre_exec always fails. Do not leave a process behind regardless.
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::other("probe child unexpectedly executed"))
        }
    }
}

/// Prepared before the fork: the single-line id maps the child writes for itself.
struct IdMaps {
    uid_map: String,
    gid_map: String,
}

impl IdMaps {
    fn current() -> IdMaps {
        IdMaps {
            uid_map: format!("0 {} 1", rustix::process::geteuid().as_raw()),
            gid_map: format!("0 {} 1", rustix::process::getegid().as_raw()),
        }
    }

    /// In a fresh user namespace: maps root to this process's ids (setgroups denied first, as
    /// an unprivileged gid_map needs).
    fn write(&self) -> io::Result<()> {
        write_file(c"/proc/self/setgroups", b"deny")?;
        write_file(c"/proc/self/uid_map", self.uid_map.as_bytes())?;
        write_file(c"/proc/self/gid_map", self.gid_map.as_bytes())
    }
}

fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    use rustix::fs::{CWD, Mode, OFlags};
    let fd = rustix::fs::openat(CWD, path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::io::write(&fd, data)?;
    Ok(())
}

/// Whether an overlay with `userxattr` can be created inside a new user + mount namespace:
/// a forked child unshares both, mounts a tmpfs over `/dev` in its private namespace, and
/// creates an overlay superblock from two dirs there. Nothing outside the child changes.
///
/// # References
/// - [`user_namespaces(7)`](https://man7.org/linux/man-pages/man7/user_namespaces.7.html)
pub(crate) fn userns_overlay() -> io::Result<()> {
    use rustix::fs::{CWD, Mode};
    use rustix::mount::{FsOpenFlags, MountFlags, MountPropagationFlags};
    let maps = IdMaps::current();
    let check = move || -> io::Result<()> {
        // SAFETY: no CLONE_FILES (the hazard unshare_unsafe guards), in a single-threaded child.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) }?;
        maps.write()?;
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?;
        rustix::mount::mount(
            c"tmpfs",
            c"/dev",
            c"tmpfs",
            MountFlags::empty(),
            None::<&std::ffi::CStr>,
        )?;
        rustix::fs::mkdirat(CWD, c"/dev/a", Mode::from_raw_mode(0o755))?;
        rustix::fs::mkdirat(CWD, c"/dev/b", Mode::from_raw_mode(0o755))?;
        let fs = rustix::mount::fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        rustix::mount::fsconfig_set_flag(&fs, c"userxattr")?;
        rustix::mount::fsconfig_set_string(&fs, c"lowerdir", c"/dev/a:/dev/b")?;
        rustix::mount::fsconfig_create(&fs)?;
        Ok(())
    };
    // SAFETY: `check` makes raw system calls only, on C-string literals and buffers prepared
    // before the fork.
    unsafe { in_forked_child(check) }
}

/// A new user namespace (root mapped to this process's ids), as an fd, for idmapped mounts:
/// made by a forked child that passes `/proc/self/ns/user` back over a socket and exits.
pub(crate) fn new_user_namespace() -> io::Result<std::os::fd::OwnedFd> {
    use std::io::{IoSlice, IoSliceMut};
    use std::mem::MaybeUninit;

    use rustix::fs::{CWD, Mode, OFlags};
    use rustix::net::{
        AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
        SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
    };

    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let maps = IdMaps::current();
    let check = move || -> io::Result<()> {
        // SAFETY: no CLONE_FILES (the hazard unshare_unsafe guards), in a single-threaded child.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) }?;
        maps.write()?;
        let ns = rustix::fs::openat(
            CWD,
            c"/proc/self/ns/user",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [std::os::fd::AsFd::as_fd(&ns)];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &theirs,
            &[IoSlice::new(b"u")],
            &mut control,
            SendFlags::empty(),
        )?;
        Ok(())
    };
    // SAFETY: `check` makes raw system calls only; the cmsg buffer lives on the stack.
    unsafe { in_forked_child(check) }?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        &ours,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    control
        .drain()
        .find_map(|msg| match msg {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .ok_or_else(|| io::Error::other("no user namespace fd received"))
}

// Syscalls added since Linux 5.1 share one number on every architecture Rust targets; the libc
// crate names these two only for a few of them yet.
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;

/// `struct xattr_args` of `<linux/xattr.h>` (version 0, 16 bytes).
#[repr(C, align(8))]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

fn result(ret: libc::c_long) -> Result<usize, Errno> {
    if ret < 0 {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    } else {
        Ok(ret as usize)
    }
}

/// The NUL-separated attribute names of `name` in `dir`, never following a final symlink, into
/// `buf`; returns the length used. `ERANGE` when `buf` is too small, `ENOSYS` before Linux 6.13.
///
/// # References
/// - [`listxattrat(2)`](https://man7.org/linux/man-pages/man2/listxattrat.2.html)
pub(crate) fn listxattrat(dir: impl AsFd, name: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the fd is borrowed for the call, `name` is NUL-terminated, and the kernel writes
    // at most `buf.len()` bytes into `buf`.
    let ret = unsafe {
        libc::syscall(
            SYS_LISTXATTRAT,
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    result(ret)
}

/// The value of attribute `attr` of `name` in `dir`, never following a final symlink, into
/// `buf`; returns its length. `ERANGE` when `buf` is too small, `ENODATA` when there is no such
/// attribute, `ENOSYS` before Linux 6.13.
///
/// # References
/// - [`getxattrat(2)`](https://man7.org/linux/man-pages/man2/getxattrat.2.html)
pub(crate) fn getxattrat(
    dir: impl AsFd,
    name: &CStr,
    attr: &CStr,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let mut args = XattrArgs {
        value: buf.as_mut_ptr() as u64,
        size: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        flags: 0,
    };
    // SAFETY: the fd is borrowed for the call, `name` and `attr` are NUL-terminated, `args`
    // lives across the call with its declared size, and the kernel writes at most `args.size`
    // (≤ `buf.len()`) bytes at `args.value`, which points into `buf`.
    let ret = unsafe {
        libc::syscall(
            SYS_GETXATTRAT,
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            attr.as_ptr(),
            &mut args as *mut XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    };
    result(ret)
}

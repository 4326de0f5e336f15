//! The two system calls rustix does not offer yet: extended attributes of a directory entry named
//! relative to a directory fd (Linux 6.13+), which saves the full path walk that `llistxattr`
//! and `lgetxattr` would do for every entry of a tree.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd};

use rustix::io::Errno;

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

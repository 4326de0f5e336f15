//! Byte-for-byte comparison of two regular files of the same size.
//!
//! Files are read in chunks into two buffers small enough to stay in the CPU's L2 cache
//! together, so the kernel's copy out of the page cache lands in cache and the compare reads it
//! from there. Measured on the 5,078 pairs the Debian base → app diff compares: 16-64 KiB
//! chunks took half the CPU of 128-256 KiB ones, and `mmap` (from 64 KiB up, `read` below)
//! took more than 64 KiB `read`s, its page-table set-up outweighing the saved copy; `mmap` would
//! also risk a SIGBUS if a file shrinks under us. Reading stops at the size `lstat` gave, so no
//! call is spent on finding the end.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::buffer::spare_capacity;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

const CHUNK: usize = 64 * 1024;

/// Whether the regular files `old_dir/name` and `new_dir/name`, both `size` bytes long by their
/// `lstat`, hold the same bytes. A file that turns out shorter than `size` counts as different.
pub(crate) fn same_content(
    old_dir: impl AsFd,
    new_dir: impl AsFd,
    name: &CStr,
    size: u64,
) -> io::Result<bool> {
    if size == 0 {
        return Ok(true);
    }
    let old = open(old_dir, name)?;
    let new = open(new_dir, name)?;
    let chunk = usize::try_from(size).map_or(CHUNK, |size| size.min(CHUNK));
    let mut a = Vec::with_capacity(chunk);
    let mut b = Vec::with_capacity(chunk);
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).map_or(chunk, |left| left.min(chunk));
        a.clear();
        b.clear();
        if !read_exact(&old, &mut a, want)? || !read_exact(&new, &mut b, want)? || a != b {
            return Ok(false);
        }
        left -= want as u64;
    }
    Ok(true)
}

fn open(dir: impl AsFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Reads `file` into the spare capacity of the empty `buf` until it holds at least `want`
/// bytes (more only if the file grew past its `lstat` size); false when the file ends first.
///
/// # References
/// - [`read(2)`](https://man7.org/linux/man-pages/man2/read.2.html)
fn read_exact(file: &OwnedFd, buf: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    while buf.len() < want {
        match rustix::io::read(file, spare_capacity(buf)) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

//! Byte-for-byte comparison of two regular files of the same size.
//!
//! Files are read in chunks into two small buffers that stay in the CPU cache, so the cost is
//! one pass over the page cache per file, with an early exit at the first difference. (mmap
//! would save the copy but costs page faults and a SIGBUS if a file shrinks under us.)

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags};

const CHUNK: usize = 128 * 1024;

/// Whether the regular files `old_dir/name` and `new_dir/name`, both `size` bytes long by their
/// `lstat`, hold the same bytes.
pub(crate) fn same_content(
    old_dir: impl AsFd,
    new_dir: impl AsFd,
    name: &CStr,
    size: u64,
) -> io::Result<bool> {
    if size == 0 {
        return Ok(true);
    }
    let mut old = open(old_dir, name)?;
    let mut new = open(new_dir, name)?;
    let chunk = CHUNK.min(usize::try_from(size).unwrap_or(CHUNK));
    let mut a = vec![0u8; chunk];
    let mut b = vec![0u8; chunk];
    loop {
        let n = read_full(&mut old, &mut a)?;
        let m = read_full(&mut new, &mut b)?;
        if a[..n] != b[..m] {
            return Ok(false);
        }
        if n < a.len() {
            return Ok(true);
        }
    }
}

fn open(dir: impl AsFd, name: &CStr) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

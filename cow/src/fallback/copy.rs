//! Placing one entry's data and metadata in the new tree.

use std::fs::Metadata;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::{CopyMethod, Stats};
use crate::{conventions, xattr};

/// Which mechanism moved a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Used {
    Reflink,
    CopyFileRange,
    ReadWrite,
}

impl Used {
    pub(super) fn count(self, stats: &mut Stats) {
        match self {
            Used::Reflink => stats.reflinked += 1,
            Used::CopyFileRange => stats.copy_file_range += 1,
            Used::ReadWrite => stats.read_write += 1,
        }
    }
}

/// Opens `path` for reading, never following a final symlink.
pub(super) fn open_read(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(CWD, path, flags, Mode::empty())?)
}

/// Creates `path` (which must not exist) for writing, private until its mode is set.
pub(super) fn create(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        CWD,
        path,
        flags,
        Mode::from_raw_mode(0o600),
    )?)
}

/// Moves all `len` bytes of `src` into the empty `dst`: reflink, else `copy_file_range`, else
/// read/write, starting where `method` says.
///
/// # References
/// - [`ioctl_ficlone(2)`](https://man7.org/linux/man-pages/man2/ioctl_ficlone.2.html),
///   [`copy_file_range(2)`](https://man7.org/linux/man-pages/man2/copy_file_range.2.html)
pub(super) fn copy_data(
    src: &OwnedFd,
    dst: &OwnedFd,
    len: u64,
    method: CopyMethod,
) -> io::Result<Used> {
    if method == CopyMethod::Auto {
        match rustix::fs::ioctl_ficlone(dst, src) {
            Ok(()) => return Ok(Used::Reflink),
            Err(e) if !unsupported(e) => return Err(e.into()),
            Err(_) => {}
        }
    }
    if method != CopyMethod::ReadWrite {
        let mut done = 0u64;
        while done < len {
            match rustix::fs::copy_file_range(src, None, dst, None, (len - done) as usize) {
                Ok(0) => break, // the file shrank under us; keep what is there
                Ok(n) => done += n as u64,
                Err(e) if done == 0 && unsupported(e) => return read_write(src, dst),
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Used::CopyFileRange);
    }
    read_write(src, dst)
}

/// True for the errors that mean "this filesystem cannot do that", not "something broke".
fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::NOTTY
    )
}

fn read_write(src: &OwnedFd, dst: &OwnedFd) -> io::Result<Used> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = rustix::io::read(src, &mut buf)?;
        if n == 0 {
            return Ok(Used::ReadWrite);
        }
        let mut written = 0;
        while written < n {
            written += rustix::io::write(dst, &buf[written..n])?;
        }
    }
}

/// Creates a device node, fifo or socket at `path` like the one `meta` describes.
///
/// # References
/// - [`mknodat(2)`](https://man7.org/linux/man-pages/man2/mknodat.2.html)
pub(super) fn make_special(path: &Path, meta: &Metadata) -> io::Result<()> {
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        FileType::CharacterDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else if ft.is_fifo() {
        FileType::Fifo
    } else {
        FileType::Socket
    };
    rustix::fs::mknodat(CWD, path, kind, Mode::from_raw_mode(0o600), meta.rdev())?;
    Ok(())
}

/// Gives `dst` the owner, xattrs (overlay's own excepted), mode and times of `src` (whose
/// `lstat` is `meta`), in the order that keeps each: chown clears setuid bits and file
/// capabilities, so it goes first, times last.
pub(super) fn copy_metadata(src: &Path, meta: &Metadata, dst: &Path) -> io::Result<()> {
    rustix::fs::chownat(
        CWD,
        dst,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    for (name, value) in xattr::all(src)? {
        if !conventions::is_overlay_xattr(&name) {
            xattr::set(dst, &name, &value)?;
        }
    }
    if !meta.file_type().is_symlink() {
        rustix::fs::chmodat(
            CWD,
            dst,
            Mode::from_raw_mode(meta.mode() & 0o7777),
            AtFlags::empty(),
        )?;
    }
    let time = |sec: i64, nsec: i64| Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = Timestamps {
        last_access: time(meta.atime(), meta.atime_nsec()),
        last_modification: time(meta.mtime(), meta.mtime_nsec()),
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

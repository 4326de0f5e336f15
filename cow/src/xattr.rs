//! Extended attributes of a path, or of a directory entry relative to its directory's fd,
//! never following a final symlink.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use crate::sys::{getxattrat, listxattrat};

/// The names of every extended attribute of `path`, sorted bytewise.
///
/// # References
/// - [`llistxattr(2)`](https://man7.org/linux/man-pages/man2/llistxattr.2.html)
pub fn list(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(len) => break len,
            Err(Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut names: Vec<Vec<u8>> = buf[..len]
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    names.sort_unstable();
    Ok(names)
}

/// The value of attribute `name` of `path`, or `None` when it has none.
///
/// # References
/// - [`lgetxattr(2)`](https://man7.org/linux/man-pages/man2/lgetxattr.2.html)
pub fn get(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let name = OsStr::from_bytes(name);
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(Errno::NODATA | Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets attribute `name` of `path` to `value`, creating or replacing it.
///
/// # References
/// - [`lsetxattr(2)`](https://man7.org/linux/man-pages/man2/lsetxattr.2.html)
pub fn set(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let name = OsStr::from_bytes(name);
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())?;
    Ok(())
}

/// Sets attribute `name` of the open file `fd` to `value`, creating or replacing it: no path
/// walk, for callers that hold the file open anyway.
///
/// # References
/// - [`fsetxattr(2)`](https://man7.org/linux/man-pages/man2/fsetxattr.2.html)
pub fn set_fd(fd: impl std::os::fd::AsFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let name = OsStr::from_bytes(name);
    rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty())?;
    Ok(())
}

/// Every attribute of `path` as sorted `(name, value)` pairs.
pub fn all(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut pairs = Vec::new();
    for name in list(path)? {
        // An attribute removed between list and get is simply gone.
        if let Some(value) = get(path, &name)? {
            pairs.push((name, value));
        }
    }
    Ok(pairs)
}

/// Removes attribute `name` of `path`; a missing attribute is not an error.
///
/// # References
/// - [`lremovexattr(2)`](https://man7.org/linux/man-pages/man2/lremovexattr.2.html)
pub fn remove(path: &Path, name: &[u8]) -> io::Result<()> {
    match rustix::fs::lremovexattr(path, OsStr::from_bytes(name)) {
        Ok(()) | Err(Errno::NODATA) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Room for the attribute names or one value of a typical entry without touching the heap.
const STACK: usize = 512;

/// Every attribute of `name` in `dir` as `(name, value)` pairs sorted by name, never following
/// a final symlink, like [`all`] but without its path walk per call: most entries have no
/// attributes, so one `listxattrat` into a stack buffer is all an entry costs. `path` names the
/// entry for the fallback to [`all`] on kernels before 6.13 (and seccomp filters that refuse
/// unknown syscalls with `EPERM`).
///
/// # Errors
/// The entry cannot be read.
///
/// # References
/// - [`listxattrat(2)`](https://man7.org/linux/man-pages/man2/listxattrat.2.html)
/// - [`getxattrat(2)`](https://man7.org/linux/man-pages/man2/getxattrat.2.html)
pub fn all_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: impl FnOnce() -> PathBuf,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut stack = [0u8; STACK];
    let list = match read(&mut stack, |buf| listxattrat(dir, name, buf)) {
        Ok(list) => list,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(Errno::NOSYS | Errno::PERM) => return all(&path()),
        Err(e) => return Err(e.into()),
    };
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let mut names: Vec<&[u8]> = list.split(|&b| b == 0).filter(|n| !n.is_empty()).collect();
    names.sort_unstable();
    let mut pairs = Vec::with_capacity(names.len());
    let mut attr = Vec::new();
    for attr_name in names {
        attr.clear();
        attr.extend_from_slice(attr_name);
        attr.push(0);
        let attr_c = CStr::from_bytes_with_nul(&attr).map_err(io::Error::other)?;
        match read(&mut stack, |buf| getxattrat(dir, name, attr_c, buf)) {
            Ok(value) => pairs.push((attr_name.to_vec(), value)),
            // Removed between the list and the read: simply gone.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pairs)
}

/// Runs `call` into `stack`, then into a heap buffer of the size the kernel asks for while it
/// answers `ERANGE` (the entry grew between calls).
fn read(
    stack: &mut [u8],
    mut call: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
) -> Result<Vec<u8>, Errno> {
    match call(stack) {
        Ok(len) => return Ok(stack[..len].to_vec()),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e),
    }
    loop {
        let mut heap = vec![0u8; call(&mut [])?];
        match call(&mut heap) {
            Ok(len) => {
                heap.truncate(len);
                return Ok(heap);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::*;
    use std::path::PathBuf;

    fn read_at(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
        let name = CString::new(path.file_name().unwrap().as_bytes()).unwrap();
        all_at(std::os::fd::AsFd::as_fd(&dir), &name, || -> PathBuf {
            unreachable!("this kernel has listxattrat")
        })
        .unwrap()
    }

    #[test]
    fn matches_the_path_calls_past_the_stack_buffer_and_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("f", &link).unwrap();
        // Names listed past the 512-byte stack buffer, one value past it too, one empty (all
        // within the one 4 KiB block ext4 gives an inode's xattrs).
        let mut want = Vec::new();
        for i in (0..20).rev() {
            let name = format!("user.attribute-with-a-long-name-{i:02}").into_bytes();
            let value = if i == 7 {
                vec![0xa5; 1500]
            } else {
                vec![i as u8; i]
            };
            set(&file, &name, &value).unwrap();
            want.push((name, value));
        }
        want.sort();
        assert_eq!(read_at(&file), want);
        assert_eq!(read_at(&file), all(&file).unwrap());
        assert_eq!(read_at(&link), Vec::new());
    }
}

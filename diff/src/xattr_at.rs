//! Every extended attribute of a directory entry, read relative to its directory's fd.
//!
//! `listxattrat`/`getxattrat` (Linux 6.13+) spare the path walk from `/` that the path-based
//! calls do for every entry; most entries have no attributes, so one `listxattrat` into a stack
//! buffer is all an entry costs. Older kernels (and seccomp filters that refuse unknown
//! syscalls with `EPERM`) fall back to [`strata_cow::xattr::all`] on the full path.

use std::ffi::CStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use rustix::io::Errno;

use crate::sys::{getxattrat, listxattrat};

/// Room for the attribute names or one value of a typical entry without touching the heap.
const STACK: usize = 512;

/// Every attribute of `name` in `dir` as `(name, value)` pairs sorted by name, never following
/// a final symlink. `path` names the entry for the fallback on kernels without the `*at` calls.
pub(crate) fn all_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: impl FnOnce() -> PathBuf,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut stack = [0u8; STACK];
    let list = match read(&mut stack, |buf| listxattrat(dir, name, buf)) {
        Ok(list) => list,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(Errno::NOSYS | Errno::PERM) => return strata_cow::xattr::all(&path()),
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

    fn read_at(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let dir = crate::dir::open_dir(rustix::fs::CWD, path.parent().unwrap()).unwrap();
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
            strata_cow::xattr::set(&file, &name, &value).unwrap();
            want.push((name, value));
        }
        want.sort();
        assert_eq!(read_at(&file), want);
        assert_eq!(read_at(&file), strata_cow::xattr::all(&file).unwrap());
        assert_eq!(read_at(&link), Vec::new());
    }
}

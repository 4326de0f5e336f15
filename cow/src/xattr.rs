//! Extended attributes of a path, never following a final symlink.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

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

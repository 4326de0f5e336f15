//! Directory handles and sorted listings, and the ordered map that runs per-entry work
//! sequentially or on rayon.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rayon::prelude::*;
use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};

use crate::change::Threads;

/// Opens the directory `name` inside `parent` (or an absolute/relative path with `CWD`),
/// refusing a symlink.
///
/// # References
/// - [`openat(2)`](https://man7.org/linux/man-pages/man2/openat.2.html)
pub(crate) fn open_dir(parent: impl AsFd, name: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
}

/// The names in directory `dir`, without `.` and `..`, sorted bytewise. Reads from the start
/// of the directory whatever `dir`'s offset, without reopening it.
pub(crate) fn sorted_names(dir: impl AsFd) -> io::Result<Vec<CString>> {
    rustix::fs::seek(&dir, SeekFrom::Start(0))?;
    sorted_names_of_fresh(dir)
}

/// [`sorted_names`] of a directory opened for this listing and not read yet, so without the
/// rewind (one `lseek` less per directory of a walk).
///
/// # References
/// - [`getdents64(2)`](https://man7.org/linux/man-pages/man2/getdents64.2.html)
pub(crate) fn sorted_names_of_fresh(dir: impl AsFd) -> io::Result<Vec<CString>> {
    // One getdents call lists a typical directory whole.
    let mut buf = Vec::with_capacity(32 * 1024);
    let mut entries = RawDir::new(&dir, buf.spare_capacity_mut());
    let mut names = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// `name` as a path component.
pub(crate) fn component(name: &CStr) -> &Path {
    Path::new(OsStr::from_bytes(name.to_bytes()))
}

/// Runs `f` on every item and returns the results in item order, on rayon or not.
pub(crate) fn map_ordered<T, R, E, F>(threads: Threads, items: Vec<T>, f: F) -> Result<Vec<R>, E>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(T) -> Result<R, E> + Sync + Send,
{
    match threads {
        // One item gains nothing from a rayon job.
        Threads::Rayon if items.len() > 1 => items.into_par_iter().map(f).collect(),
        _ => items.into_iter().map(f).collect(),
    }
}

/// Runs `f` on every item and concatenates the results in item order, on rayon or not.
pub(crate) fn flat_map_ordered<T, R, E, F>(
    threads: Threads,
    items: Vec<T>,
    f: F,
) -> Result<Vec<R>, E>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(T) -> Result<Vec<R>, E> + Sync + Send,
{
    Ok(map_ordered(threads, items, f)?
        .into_iter()
        .flatten()
        .collect())
}

//! The floor under `changes`: only the system calls any two-tree diff of a pair must make, with
//! no diff logic around them, so its time is what no implementation built on these calls can beat.
//!
//! A plan made before timing says, per directory, which names to `lstat` and xattr-list on each
//! side (both sides for a name in both, the new side for a new name, nothing for a deleted one),
//! which of them are symlinks to read, and which regular files to read and compare (same
//! metadata, a zero-nanosecond mtime on either side: the ambiguous-mtime rule). The
//! timed part opens each directory, lists it (`getdents64` to the end), makes those calls and
//! compares those files, over a flat list of directories on rayon: no sorting, merging, change
//! records or paths. It knows beforehand what a real diff learns from the listings, so it is a
//! generous floor.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, Mode, OFlags, RawDir};

const CHUNK: usize = 64 * 1024;

/// The calls one directory of the pair needs.
struct DirWork {
    /// Relative to the roots; `.` for the roots themselves.
    rel: CString,
    /// Whether the old side has this directory (else only the new one is listed).
    in_old: bool,
    stat_old: Vec<CString>,
    stat_new: Vec<CString>,
    /// The symlinks among `stat_old` and `stat_new`.
    links_old: Vec<CString>,
    links_new: Vec<CString>,
    compare: Vec<(CString, usize)>,
}

/// The calls a diff of `old` → `new` needs, per directory.
pub struct Plan {
    old: OwnedFd,
    new: OwnedFd,
    dirs: Vec<DirWork>,
}

impl Plan {
    /// Plans the pair by walking it once (untimed).
    pub fn new(old: &Path, new: &Path) -> Plan {
        let mut dirs = Vec::new();
        plan_dir(old, new, Path::new("."), true, &mut dirs);
        Plan {
            old: open_dir(CWD, old),
            new: open_dir(CWD, new),
            dirs,
        }
    }

    /// Makes every planned call, directories on the current rayon pool when `parallel`.
    pub fn run(&self, parallel: bool) {
        let work = |dir: &DirWork| dir.run(&self.old, &self.new);
        if parallel {
            self.dirs.par_iter().for_each(work);
        } else {
            self.dirs.iter().for_each(work);
        }
    }
}

impl DirWork {
    fn run(&self, old_root: &OwnedFd, new_root: &OwnedFd) {
        let new = open_dir(new_root, self.rel.as_c_str());
        list(&new);
        let old = self.in_old.then(|| {
            let old = open_dir(old_root, self.rel.as_c_str());
            list(&old);
            old
        });
        inspect(&new, &self.stat_new, &self.links_new);
        let Some(old) = old else { return };
        inspect(&old, &self.stat_old, &self.links_old);
        let (mut a, mut b) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        for (name, size) in &self.compare {
            let files = [&old, &new].map(|dir| {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                rustix::fs::openat(dir, name.as_c_str(), flags, Mode::empty()).unwrap()
            });
            let mut left = *size;
            while left > 0 {
                let want = left.min(CHUNK);
                let x = rustix::io::read(&files[0], &mut a[..want]).unwrap();
                let y = rustix::io::read(&files[1], &mut b[..want]).unwrap();
                assert!(x == want && y == want && a[..want] == b[..want]);
                left -= want;
            }
        }
    }
}

fn open_dir(parent: impl AsFd, path: impl rustix::path::Arg) -> OwnedFd {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(parent, path, flags, Mode::empty()).unwrap()
}

fn list(dir: &OwnedFd) {
    let mut buf = Vec::with_capacity(32 * 1024);
    let mut entries = RawDir::new(dir, buf.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        std::hint::black_box(entry.unwrap());
    }
}

/// The metadata calls of `names` in `dir`: `lstat` and the xattrs of each, the target of each
/// of `links`.
fn inspect(dir: &OwnedFd, names: &[CString], links: &[CString]) {
    for name in names {
        std::hint::black_box(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).unwrap());
        let xattrs = strata_cow::xattr::all_at(dir.as_fd(), name, || unreachable!("listxattrat"));
        std::hint::black_box(xattrs.unwrap());
    }
    for name in links {
        std::hint::black_box(rustix::fs::readlinkat(dir, name, Vec::new()).unwrap());
    }
}

/// Whether the rule sends this pair of entries to a content compare (the pair is known
/// to hold no xattrs beyond what mode and owner already cover, as the plan is a floor).
fn needs_compare(old: &std::fs::Metadata, new: &std::fs::Metadata) -> bool {
    old.file_type().is_file()
        && new.file_type().is_file()
        && old.mode() == new.mode()
        && old.uid() == new.uid()
        && old.gid() == new.gid()
        && old.size() == new.size()
        && old.mtime() == new.mtime()
        && (old.mtime_nsec() == 0 || new.mtime_nsec() == 0)
        && (old.dev(), old.ino()) != (new.dev(), new.ino())
}

fn plan_dir(old: &Path, new: &Path, rel: &Path, in_old: bool, out: &mut Vec<DirWork>) {
    let mut work = DirWork {
        rel: CString::new(rel.as_os_str().as_bytes()).unwrap(),
        in_old,
        stat_old: Vec::new(),
        stat_new: Vec::new(),
        links_old: Vec::new(),
        links_new: Vec::new(),
        compare: Vec::new(),
    };
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(new.join(rel)).unwrap() {
        let name = entry.unwrap().file_name();
        let child = rel.join(&name);
        let c_name = CString::new(name.as_bytes()).unwrap();
        let new_meta = std::fs::symlink_metadata(new.join(&child)).unwrap();
        let old_meta = in_old
            .then(|| std::fs::symlink_metadata(old.join(&child)).ok())
            .flatten();
        if let Some(old_meta) = &old_meta {
            work.stat_old.push(c_name.clone());
            if old_meta.is_symlink() {
                work.links_old.push(c_name.clone());
            }
            if needs_compare(old_meta, &new_meta) {
                work.compare
                    .push((c_name.clone(), new_meta.size() as usize));
            }
        }
        if new_meta.is_symlink() {
            work.links_new.push(c_name.clone());
        }
        work.stat_new.push(c_name);
        if new_meta.is_dir() {
            let old_is_dir = old_meta.as_ref().is_some_and(std::fs::Metadata::is_dir);
            subdirs.push((child, old_is_dir));
        }
    }
    out.push(work);
    for (child, old_is_dir) in subdirs {
        plan_dir(old, new, &child, old_is_dir, out);
    }
}

//! `changes(old, new)`: the two-tree walk.
//!
//! Each directory is listed on both sides, the sorted name lists are merged, and every name is
//! then handled as its own task (one `lstat` per side, a recursion for a directory), so rayon
//! spreads entries and subtrees over the pool while the output keeps walk order.

use std::cmp::Ordering;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;

use crate::change::{Change, ChangeKind, ChangeSet, ContentCheck, DiffError, DiffOptions};
use crate::content::same_content;
use crate::dir::{component, flat_map_ordered, open_dir, sorted_names};
use crate::meta::{Kind, Meta, Verdict, compare};

/// The changes that turn the tree `old` into the tree `new`.
///
/// Directories are compared concurrently on the current rayon pool unless
/// [`DiffOptions::threads`] says otherwise; the result is the same either way. The roots' own
/// metadata is not compared.
pub fn changes(old: &Path, new: &Path, options: &DiffOptions) -> Result<ChangeSet, DiffError> {
    let walk = TwoTrees {
        old_root: old,
        new_root: new,
        options,
    };
    let old_fd = open_root(old)?;
    let new_fd = open_root(new)?;
    let changes = walk.diff_dir(Path::new(""), &old_fd, &new_fd)?;
    Ok(ChangeSet {
        source: new.to_path_buf(),
        changes,
    })
}

pub(crate) fn open_root(path: &Path) -> Result<OwnedFd, DiffError> {
    open_dir(CWD, path).map_err(|source| match source.raw_os_error() {
        Some(code) if code == rustix::io::Errno::NOTDIR.raw_os_error() => {
            DiffError::NotADirectory {
                path: path.to_path_buf(),
            }
        }
        _ => DiffError::Read {
            path: path.to_path_buf(),
            source,
        },
    })
}

struct TwoTrees<'a> {
    old_root: &'a Path,
    new_root: &'a Path,
    options: &'a DiffOptions,
}

/// Where a name of a directory exists.
pub(crate) enum Side {
    Old,
    New,
    Both,
}

impl TwoTrees<'_> {
    fn diff_dir(&self, rel: &Path, old: &OwnedFd, new: &OwnedFd) -> Result<Vec<Change>, DiffError> {
        let old_names = sorted_names(old).map_err(DiffError::read(&self.old_root.join(rel)))?;
        let new_names = sorted_names(new).map_err(DiffError::read(&self.new_root.join(rel)))?;
        let merged = merge(old_names, new_names);
        flat_map_ordered(self.options.threads, merged, |(name, side)| {
            let path = rel.join(component(&name));
            match side {
                Side::Old => Ok(vec![Change {
                    path,
                    kind: ChangeKind::Deleted,
                    meta: None,
                }]),
                Side::New => added(self.new_root, self.options, path, new, &name),
                Side::Both => self.diff_entry(path, old, new, &name),
            }
        })
    }

    fn diff_entry(
        &self,
        path: PathBuf,
        old_dir: &OwnedFd,
        new_dir: &OwnedFd,
        name: &CString,
    ) -> Result<Vec<Change>, DiffError> {
        let old_full = self.old_root.join(&path);
        let new_full = self.new_root.join(&path);
        let old = Meta::load(old_dir, name, &old_full).map_err(DiffError::read(&old_full))?;
        let new = Meta::load(new_dir, name, &new_full).map_err(DiffError::read(&new_full))?;
        let force = self.options.content == ContentCheck::Always;
        let changed = match compare(&old, &new, force) {
            Verdict::Same => false,
            Verdict::Changed => true,
            Verdict::CompareContent => !same_content(old_dir, new_dir, name, new.size)
                .map_err(DiffError::read(&new_full))?,
        };
        match (old.kind, new.kind) {
            (Kind::Dir, Kind::Dir) => {
                let old_fd =
                    open_dir(old_dir, name.as_c_str()).map_err(DiffError::read(&old_full))?;
                let new_fd =
                    open_dir(new_dir, name.as_c_str()).map_err(DiffError::read(&new_full))?;
                let children = self.diff_dir(&path, &old_fd, &new_fd)?;
                let mut out = Vec::with_capacity(children.len() + 1);
                if changed {
                    out.push(modified(path, new));
                }
                out.extend(children);
                Ok(out)
            }
            (_, Kind::Dir) => {
                // A non-directory became a directory: everything below it is new.
                let fd = open_dir(new_dir, name.as_c_str()).map_err(DiffError::read(&new_full))?;
                let mut out = vec![modified(path.clone(), new)];
                out.extend(added_children(self.new_root, self.options, &path, &fd)?);
                Ok(out)
            }
            _ if changed => Ok(vec![modified(path, new)]),
            _ => Ok(Vec::new()),
        }
    }
}

fn modified(path: PathBuf, meta: Meta) -> Change {
    Change {
        path,
        kind: ChangeKind::Modified,
        meta: Some(meta),
    }
}

/// `name` in `dir` and, for a directory, everything below it, all as [`ChangeKind::Added`].
pub(crate) fn added(
    root: &Path,
    options: &DiffOptions,
    path: PathBuf,
    dir: &OwnedFd,
    name: &CString,
) -> Result<Vec<Change>, DiffError> {
    let full = root.join(&path);
    let meta = Meta::load(dir, name, &full).map_err(DiffError::read(&full))?;
    let is_dir = meta.kind == Kind::Dir;
    let mut out = vec![Change {
        path,
        kind: ChangeKind::Added,
        meta: Some(meta),
    }];
    if is_dir {
        let fd = open_dir(dir, name.as_c_str()).map_err(DiffError::read(&full))?;
        let path = out[0].path.clone();
        out.extend(added_children(root, options, &path, &fd)?);
    }
    Ok(out)
}

/// Everything below the directory `dir` (at `rel`), as [`ChangeKind::Added`].
pub(crate) fn added_children(
    root: &Path,
    options: &DiffOptions,
    rel: &Path,
    dir: &OwnedFd,
) -> Result<Vec<Change>, DiffError> {
    let names = sorted_names(dir).map_err(DiffError::read(&root.join(rel)))?;
    flat_map_ordered(options.threads, names, |name| {
        added(root, options, rel.join(component(&name)), dir, &name)
    })
}

/// Merges two sorted name lists, saying where each name exists.
pub(crate) fn merge(old: Vec<CString>, new: Vec<CString>) -> Vec<(CString, Side)> {
    let mut out = Vec::with_capacity(old.len().max(new.len()));
    let mut old = old.into_iter().peekable();
    let mut new = new.into_iter().peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) => o.cmp(n),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return out,
        };
        match order {
            Ordering::Less => out.push((old.next().expect("peeked"), Side::Old)),
            Ordering::Greater => out.push((new.next().expect("peeked"), Side::New)),
            Ordering::Equal => {
                old.next();
                out.push((new.next().expect("peeked"), Side::Both));
            }
        }
    }
}

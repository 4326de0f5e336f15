//! `changes(old, new)`: the two-tree walk.
//!
//! Each directory is listed on both sides and the sorted name lists are merged. The cheap work of
//! every name (one `lstat` and one xattr list per side, all relative to the directory fds) runs
//! inline; what is left, content compares and subdirectories, becomes rayon tasks that splice
//! their changes back in place, so the pool stays busy while the output keeps walk order.

use std::cmp::Ordering;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::CWD;

use crate::change::{Change, ChangeKind, ChangeSet, ContentCheck, DiffError, DiffOptions};
use crate::content::same_content;
use crate::dir::{component, map_ordered, open_dir, sorted_names_of_fresh};
use crate::meta::{FileKind, Meta, Verdict, compare};

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

/// The work on an entry that is left for after its directory's metadata pass, so that the
/// cheap per-entry work stays inline and only this runs as rayon tasks.
enum Deferred {
    /// Regular files whose metadata matches but whose mtime cannot vouch for the content.
    Content { name: CString, new: Meta },
    /// A directory on both sides.
    BothDirs { name: CString },
    /// A directory only the new side has below this name: everything in it is added.
    AddedDir { name: CString },
}

/// A directory's changes in walk order, with the places where deferred work splices in its own.
struct Listing {
    changes: Vec<Change>,
    /// Each deferred item with the length `changes` had when it was deferred.
    deferred: Vec<(usize, Deferred)>,
}

impl Listing {
    fn new() -> Listing {
        Listing {
            changes: Vec::new(),
            deferred: Vec::new(),
        }
    }

    fn defer(&mut self, work: Deferred) {
        self.deferred.push((self.changes.len(), work));
    }
}

impl TwoTrees<'_> {
    /// The changes below the directories `old` and `new` (at `rel`).
    fn diff_dir(&self, rel: &Path, old: &OwnedFd, new: &OwnedFd) -> Result<Vec<Change>, DiffError> {
        let old_names =
            sorted_names_of_fresh(old).map_err(DiffError::read(&self.old_root.join(rel)))?;
        let new_names =
            sorted_names_of_fresh(new).map_err(DiffError::read(&self.new_root.join(rel)))?;
        let mut listing = Listing::new();
        for (name, side) in merge(old_names, new_names) {
            match side {
                Side::Old => listing.changes.push(Change {
                    path: rel.join(component(&name)),
                    kind: ChangeKind::Deleted,
                    meta: None,
                }),
                Side::New => self.added(&mut listing, rel, new, name)?,
                Side::Both => self.both(&mut listing, rel, old, new, name)?,
            }
        }
        self.finish(listing, rel, old, new)
    }

    /// Everything below the directory `dir` (at `rel`) of the new tree, as added.
    fn added_dir(&self, rel: &Path, dir: &OwnedFd) -> Result<Vec<Change>, DiffError> {
        let names =
            sorted_names_of_fresh(dir).map_err(DiffError::read(&self.new_root.join(rel)))?;
        let mut listing = Listing::new();
        for name in names {
            self.added(&mut listing, rel, dir, name)?;
        }
        self.finish(listing, rel, dir, dir)
    }

    /// `name` exists in the new directory `dir` only.
    fn added(
        &self,
        listing: &mut Listing,
        rel: &Path,
        dir: &OwnedFd,
        name: CString,
    ) -> Result<(), DiffError> {
        let full = || self.new_root.join(rel).join(component(&name));
        let meta = Meta::load(dir, &name, full).map_err(|source| DiffError::Read {
            path: full(),
            source,
        })?;
        let is_dir = meta.kind == FileKind::Dir;
        listing.changes.push(Change {
            path: rel.join(component(&name)),
            kind: ChangeKind::Added,
            meta: Some(meta),
        });
        if is_dir {
            listing.defer(Deferred::AddedDir { name });
        }
        Ok(())
    }

    /// `name` exists in both directories: its metadata is compared now, the rest deferred.
    fn both(
        &self,
        listing: &mut Listing,
        rel: &Path,
        old_dir: &OwnedFd,
        new_dir: &OwnedFd,
        name: CString,
    ) -> Result<(), DiffError> {
        let old_full = || self.old_root.join(rel).join(component(&name));
        let new_full = || self.new_root.join(rel).join(component(&name));
        let old = Meta::load(old_dir, &name, old_full).map_err(|source| DiffError::Read {
            path: old_full(),
            source,
        })?;
        let new = Meta::load(new_dir, &name, new_full).map_err(|source| DiffError::Read {
            path: new_full(),
            source,
        })?;
        let force = self.options.content == ContentCheck::Always;
        let verdict = compare(&old, &new, force);
        let modified = |meta| Change {
            path: rel.join(component(&name)),
            kind: ChangeKind::Modified,
            meta: Some(meta),
        };
        match (old.kind, new.kind, verdict) {
            (FileKind::Dir, FileKind::Dir, verdict) => {
                if verdict != Verdict::Same {
                    listing.changes.push(modified(new));
                }
                listing.defer(Deferred::BothDirs { name });
            }
            // A non-directory became a directory: everything below it is new.
            (_, FileKind::Dir, _) => {
                listing.changes.push(modified(new));
                listing.defer(Deferred::AddedDir { name });
            }
            (_, _, Verdict::Same) => {}
            (_, _, Verdict::Changed) => listing.changes.push(modified(new)),
            (_, _, Verdict::CompareContent) => listing.defer(Deferred::Content { name, new }),
        }
        Ok(())
    }

    /// Runs the deferred work of a listing (on rayon or not) and splices its changes in.
    fn finish(
        &self,
        listing: Listing,
        rel: &Path,
        old: &OwnedFd,
        new: &OwnedFd,
    ) -> Result<Vec<Change>, DiffError> {
        let Listing { changes, deferred } = listing;
        if deferred.is_empty() {
            return Ok(changes);
        }
        let (at, work): (Vec<usize>, Vec<Deferred>) = deferred.into_iter().unzip();
        let parts = map_ordered(self.options.threads, work, |work| {
            self.run(work, rel, old, new)
        })?;
        let mut out = Vec::with_capacity(changes.len() + parts.iter().map(Vec::len).sum::<usize>());
        let mut changes = changes.into_iter();
        let mut taken = 0;
        for (at, part) in at.into_iter().zip(parts) {
            out.extend(changes.by_ref().take(at - taken));
            taken = at;
            out.extend(part);
        }
        out.extend(changes);
        Ok(out)
    }

    fn run(
        &self,
        work: Deferred,
        rel: &Path,
        old_dir: &OwnedFd,
        new_dir: &OwnedFd,
    ) -> Result<Vec<Change>, DiffError> {
        match work {
            Deferred::Content { name, new } => {
                let same = same_content(old_dir, new_dir, &name, new.size).map_err(|source| {
                    DiffError::Read {
                        path: self.new_root.join(rel).join(component(&name)),
                        source,
                    }
                })?;
                Ok(if same {
                    Vec::new()
                } else {
                    vec![Change {
                        path: rel.join(component(&name)),
                        kind: ChangeKind::Modified,
                        meta: Some(new),
                    }]
                })
            }
            Deferred::BothDirs { name } => {
                let path = rel.join(component(&name));
                let old = open_dir(old_dir, name.as_c_str())
                    .map_err(DiffError::read(&self.old_root.join(&path)))?;
                let new = open_dir(new_dir, name.as_c_str())
                    .map_err(DiffError::read(&self.new_root.join(&path)))?;
                self.diff_dir(&path, &old, &new)
            }
            Deferred::AddedDir { name } => {
                let path = rel.join(component(&name));
                let dir = open_dir(new_dir, name.as_c_str())
                    .map_err(DiffError::read(&self.new_root.join(&path)))?;
                self.added_dir(&path, &dir)
            }
        }
    }
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

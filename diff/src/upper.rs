//! `upper_changes(lowers, upper)`: the changes of an overlay snapshot read from its upper dir,
//! in time proportional to the upper dir.
//!
//! Each upper entry is looked up in the lowers (topmost first) only to decide between added,
//! modified, unchanged (a copy-up that changed nothing) and a whiteout with nothing below. An
//! opaque directory hides the lowers below it, so the lower children it does not list become
//! explicit deletions, and so on down its subtree.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType};
use strata_cow::conventions::{Attr, Namespace};

use crate::change::{Change, ChangeKind, ChangeSet, ContentCheck, DiffError, DiffOptions};
use crate::content::same_content;
use crate::dir::{component, flat_map_ordered, open_dir, sorted_names};
use crate::meta::{FileKind, Meta, Verdict, compare};
use crate::tree::{Side, merge, open_root};

/// The changes an overlay mount with these `lowers` (topmost first) and this `upper` dir holds,
/// read from the upper dir without mounting anything.
///
/// Whiteouts (char 0:0, or xwhiteouts) with nothing below are dropped, copied-up entries that
/// did not change are not reported, and opaque directories (`y`, in `trusted.` or `user.`)
/// become explicit deletions of the lower children they hide.
///
/// # Errors
/// [`DiffError::NeedsTreeWalk`] when the upper dir holds a `redirect` (renamed directory) or a
/// `metacopy` entry: mount the snapshot and its parent read-only and call
/// [`changes`](crate::changes) on the two mounted trees instead.
pub fn upper_changes(
    lowers: &[&Path],
    upper: &Path,
    options: &DiffOptions,
) -> Result<ChangeSet, DiffError> {
    let upper_fd = open_root(upper)?;
    let lower_dirs = lowers
        .iter()
        .enumerate()
        .map(|(index, path)| {
            Ok(LowerDir {
                index,
                fd: open_root(path)?,
            })
        })
        .collect::<Result<Vec<_>, DiffError>>()?;
    let walk = UpperWalk {
        lowers,
        upper,
        options,
    };
    let root = Dir {
        rel: PathBuf::new(),
        fd: upper_fd,
        lowers: lower_dirs,
        hides_lower: false,
    };
    Ok(ChangeSet {
        source: upper.to_path_buf(),
        changes: walk.dir(&root)?,
    })
}

struct UpperWalk<'a> {
    lowers: &'a [&'a Path],
    upper: &'a Path,
    options: &'a DiffOptions,
}

/// An upper directory with the lower directories visible under it, topmost first.
struct Dir {
    rel: PathBuf,
    fd: OwnedFd,
    lowers: Vec<LowerDir>,
    /// Inside an opaque directory: lower children the upper does not list are deleted.
    hides_lower: bool,
}

struct LowerDir {
    index: usize,
    fd: OwnedFd,
}

/// An entry found in a lower.
struct Found<'a> {
    dir: &'a LowerDir,
    meta: Meta,
}

impl UpperWalk<'_> {
    fn dir(&self, dir: &Dir) -> Result<Vec<Change>, DiffError> {
        let upper_names =
            sorted_names(&dir.fd).map_err(DiffError::read(&self.upper.join(&dir.rel)))?;
        let lower_names = if dir.hides_lower {
            self.visible_lower_names(dir)?
        } else {
            Vec::new()
        };
        flat_map_ordered(
            self.options.threads,
            merge(lower_names, upper_names),
            |(name, side)| match side {
                Side::Old => Ok(vec![Change {
                    path: dir.rel.join(component(&name)),
                    kind: ChangeKind::Deleted,
                    meta: None,
                }]),
                Side::New | Side::Both => self.entry(dir, &name),
            },
        )
    }

    fn entry(&self, dir: &Dir, name: &CString) -> Result<Vec<Change>, DiffError> {
        let path = dir.rel.join(component(name));
        let full = self.upper.join(&path);
        let meta = Meta::load(&dir.fd, name, || full.clone()).map_err(DiffError::read(&full))?;
        for ns in Namespace::ALL {
            for attr in [Attr::Redirect, Attr::Metacopy] {
                if meta.overlay_xattr(ns.name(attr)).is_some() {
                    return Err(DiffError::NeedsTreeWalk {
                        path: full,
                        attr: String::from_utf8_lossy(ns.name(attr)).into_owned(),
                    });
                }
            }
        }
        let below = self.lookup(dir, name, &path)?;
        if is_whiteout(&meta) {
            return Ok(match below {
                Some(_) => vec![Change {
                    path,
                    kind: ChangeKind::Deleted,
                    meta: None,
                }],
                None => Vec::new(),
            });
        }
        let changed = match &below {
            None => true,
            Some(found) => {
                let force = self.options.content == ContentCheck::Always;
                match compare(&found.meta, &meta, force) {
                    Verdict::Same => false,
                    Verdict::Changed => true,
                    Verdict::CompareContent => {
                        !same_content(&found.dir.fd, &dir.fd, name, meta.size)
                            .map_err(DiffError::read(&full))?
                    }
                }
            }
        };
        let kind = if below.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        if meta.kind != FileKind::Dir {
            return Ok(if changed {
                vec![Change {
                    path,
                    kind,
                    meta: Some(meta),
                }]
            } else {
                Vec::new()
            });
        }
        let opaque = Namespace::ALL
            .iter()
            .any(|ns| meta.overlay_xattr(ns.name(Attr::Opaque)) == Some(b"y"));
        let below_is_dir = below
            .as_ref()
            .is_some_and(|found| found.meta.kind == FileKind::Dir);
        let child = Dir {
            rel: path.clone(),
            fd: open_dir(&dir.fd, name.as_c_str()).map_err(DiffError::read(&full))?,
            lowers: if below_is_dir {
                self.child_lowers(dir, name, &path)?
            } else {
                Vec::new()
            },
            hides_lower: below_is_dir && (opaque || dir.hides_lower),
        };
        let children = self.dir(&child)?;
        let mut out = Vec::with_capacity(children.len() + 1);
        if changed {
            out.push(Change {
                path,
                kind,
                meta: Some(meta),
            });
        }
        out.extend(children);
        Ok(out)
    }

    /// The entry `name` of the merged lowers, if one is visible.
    fn lookup<'d>(
        &self,
        dir: &'d Dir,
        name: &CStr,
        rel: &Path,
    ) -> Result<Option<Found<'d>>, DiffError> {
        for lower in &dir.lowers {
            let full = self.lowers[lower.index].join(rel);
            match Meta::load(&lower.fd, name, || full.clone()) {
                Ok(meta) if is_whiteout(&meta) => return Ok(None),
                Ok(meta) => return Ok(Some(Found { dir: lower, meta })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(DiffError::Read { path: full, source }),
            }
        }
        Ok(None)
    }

    /// The lower directories visible at `dir/name`: topmost down to the first one that is opaque,
    /// stopping at a whiteout or a non-directory.
    fn child_lowers(&self, dir: &Dir, name: &CStr, rel: &Path) -> Result<Vec<LowerDir>, DiffError> {
        let mut out = Vec::new();
        for lower in &dir.lowers {
            let full = self.lowers[lower.index].join(rel);
            let meta = match Meta::load(&lower.fd, name, || full.clone()) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(DiffError::Read { path: full, source }),
            };
            if meta.kind != FileKind::Dir {
                break;
            }
            let fd = open_dir(&lower.fd, name).map_err(DiffError::read(&full))?;
            out.push(LowerDir {
                index: lower.index,
                fd,
            });
            if Namespace::ALL
                .iter()
                .any(|ns| meta.overlay_xattr(ns.name(Attr::Opaque)) == Some(b"y"))
            {
                break;
            }
        }
        Ok(out)
    }

    /// The names the merged lowers show in `dir`, sorted.
    fn visible_lower_names(&self, dir: &Dir) -> Result<Vec<CString>, DiffError> {
        let mut seen = std::collections::BTreeMap::new();
        for lower in &dir.lowers {
            let full = self.lowers[lower.index].join(&dir.rel);
            for name in sorted_names(&lower.fd).map_err(DiffError::read(&full))? {
                if seen.contains_key(&name) {
                    continue;
                }
                let stat =
                    rustix::fs::statat(&lower.fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| DiffError::Read {
                            path: full.join(component(&name)),
                            source: e.into(),
                        })?;
                let whiteout = FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice
                    && stat.st_rdev == 0;
                seen.insert(name, !whiteout);
            }
        }
        Ok(seen
            .into_iter()
            .filter(|(_, visible)| *visible)
            .map(|(name, _)| name)
            .collect())
    }
}

/// A whiteout in either overlay form: a char 0:0 device, or an empty file marked
/// `overlay.whiteout` (an xwhiteout) in either namespace.
fn is_whiteout(meta: &Meta) -> bool {
    (meta.kind == FileKind::CharDevice && meta.rdev == 0)
        || (meta.kind == FileKind::File
            && meta.size == 0
            && Namespace::ALL
                .iter()
                .any(|ns| meta.overlay_xattr(ns.name(Attr::Whiteout)).is_some()))
}

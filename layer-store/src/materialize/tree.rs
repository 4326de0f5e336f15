//! Building one layer's tree: entries in tar order, later ones replacing earlier ones of the
//! same layer, whiteouts and opaque markers in overlay form, directory metadata last.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, RenameFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use strata_cow::conventions::{self, Namespace, Opacity, Stub, WhiteoutStyle};
use strata_cow::xattr;

use super::MaterializeError;
use crate::error::{IoContext, StoreError};
use crate::object::ObjectId;
use crate::record::{Entry, EntryKind, Strategy};
use crate::store::Store;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

struct Builder<'a> {
    store: &'a Store,
    strategy: Strategy,
    tree: PathBuf,
    ns: Namespace,
    root: bool,
    /// Paths created so far → whether each is a directory.
    created: HashMap<Vec<u8>, bool>,
    /// Directories whose metadata is applied at the end (children would bump their mtime).
    dirs: Vec<Entry>,
    /// Stubs not created yet, by path: created in parallel, see [`Builder::create_pending`].
    pending: HashMap<Vec<u8>, &'a Entry>,
}

/// Builds the tree of a layer with `entries` at `tree` (which must not exist) by `strategy`;
/// the caller makes it durable and renames it into place. Stubs need nothing of the objects
/// but their ids, so an import builds them while its objects are still staged.
pub(crate) fn build_tree(
    store: &Store,
    strategy: Strategy,
    tree: &Path,
    entries: &[Entry],
) -> Result<(), StoreError> {
    let root = rustix::process::geteuid().is_root();
    if strategy == Strategy::Stub && !root {
        return Err(MaterializeError::NeedsRoot { strategy: "stub" }.into());
    }
    fs::create_dir(tree).at(tree)?;
    let mut builder = Builder {
        store,
        strategy,
        tree: tree.to_path_buf(),
        ns: if root {
            Namespace::Trusted
        } else {
            Namespace::User
        },
        root,
        created: HashMap::new(),
        dirs: Vec::new(),
        pending: HashMap::new(),
    };
    for entry in entries {
        builder.add(entry)?;
    }
    builder.create_pending()?;
    builder.finish_dirs()
}

/// Whether `path` lies below directory `dir` (both relative to the tree).
fn is_below(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && path.get(dir.len()) == Some(&b'/')
}

fn os(bytes: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl<'a> Builder<'a> {
    fn path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.tree.clone()
        } else {
            self.tree.join(os(rel))
        }
    }

    /// Makes sure every ancestor of `rel` is a directory we created, creating missing ones.
    fn ensure_parents(&mut self, rel: &[u8]) -> Result<(), StoreError> {
        let mut end = 0;
        while let Some(pos) = rel[end..].iter().position(|&b| b == b'/') {
            let prefix = &rel[..end + pos];
            match self.created.get(prefix) {
                Some(true) => {}
                Some(false) => {
                    return Err(MaterializeError::BelowNonDirectory { path: lossy(rel) }.into());
                }
                None => {
                    let path = self.path(prefix);
                    fs::create_dir(&path).at(&path)?;
                    self.created.insert(prefix.to_vec(), true);
                }
            }
            end += pos + 1;
        }
        Ok(())
    }

    fn add(&mut self, entry: &'a Entry) -> Result<(), StoreError> {
        let rel = entry.path.as_slice();
        self.ensure_parents(rel)?;
        let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&rel[..0], rel),
        };
        if name == OPAQUE_MARKER {
            let dir = self.path(parent);
            return conventions::set_opacity(&dir, self.ns, Opacity::Opaque).at(&dir);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let mut target = parent.to_vec();
            if !target.is_empty() {
                target.push(b'/');
            }
            target.extend_from_slice(hidden);
            return self.whiteout(parent, &target);
        }
        let is_dir = entry.kind == EntryKind::Dir;
        let path = self.path(rel);
        match self.created.get(rel) {
            Some(true) if is_dir => {}
            Some(&was_dir) => {
                self.remove(rel, was_dir)?;
                // Gone, with everything below: a directory replacing a file must be created.
                self.created.remove(rel);
                self.created.retain(|k, _| !is_below(k, rel));
            }
            None => {}
        }
        if is_dir {
            if !rel.is_empty() && !self.created.contains_key(rel) {
                fs::create_dir(&path).at(&path)?;
            }
            self.created.insert(rel.to_vec(), true);
            self.dirs.push(entry.clone());
            return Ok(());
        }
        self.created.insert(rel.to_vec(), false);
        match &entry.kind {
            // Stubs are most of a tree and independent of each other: created later, in parallel.
            EntryKind::File { size, .. } if *size > 0 && self.strategy == Strategy::Stub => {
                self.pending.insert(rel.to_vec(), entry);
                Ok(())
            }
            EntryKind::File { object, size } => self.file(&path, entry, object, *size),
            EntryKind::Symlink { target } => {
                symlink(os(target), &path).at(&path)?;
                self.set_meta(&path, entry, true)
            }
            EntryKind::Hardlink { target } => {
                self.create_pending()?;
                let from = self.path(target);
                fs::hard_link(&from, &path).at(&path)
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                let kind = if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let dev = rustix::fs::makedev(*major, *minor);
                rustix::fs::mknodat(CWD, &path, kind, Mode::from_raw_mode(0o600), dev).at(&path)?;
                self.set_meta(&path, entry, false)
            }
            EntryKind::Fifo => {
                rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .at(&path)?;
                self.set_meta(&path, entry, false)
            }
            EntryKind::Dir => Ok(()),
        }
    }

    /// A whiteout hiding `target` of lower layers, in the form overlay reads.
    ///
    /// A whiteout hides lower layers only, never an entry of its own layer (OCI image spec,
    /// "Whiteouts"): that entry already hides a lower file, and a directory of this layer
    /// becomes opaque.
    fn whiteout(&mut self, parent: &[u8], target: &[u8]) -> Result<(), StoreError> {
        let path = self.path(target);
        match self.created.get(target) {
            Some(false) => return Ok(()),
            Some(true) => {
                return conventions::set_opacity(&path, self.ns, Opacity::Opaque).at(&path);
            }
            None => {}
        }
        let style = if self.root {
            WhiteoutStyle::CharDevice
        } else {
            let dir = self.path(parent);
            conventions::set_opacity(&dir, self.ns, Opacity::Xwhiteouts).at(&dir)?;
            WhiteoutStyle::Xattr(self.ns)
        };
        conventions::create_whiteout(&path, style).at(&path)?;
        self.created.insert(target.to_vec(), false);
        Ok(())
    }

    /// Removes what this layer created at `rel` earlier (a later entry replaces it).
    fn remove(&mut self, rel: &[u8], was_dir: bool) -> Result<(), StoreError> {
        let path = self.path(rel);
        if was_dir {
            self.pending.retain(|k, _| !is_below(k, rel));
            // Its metadata, applied at the end, would land on whatever replaces it.
            self.dirs
                .retain(|d| d.path.as_slice() != rel && !is_below(&d.path, rel));
            fs::remove_dir_all(&path).at(&path)
        } else if self.pending.remove(rel).is_some() {
            // Never created.
            Ok(())
        } else {
            fs::remove_file(&path).at(&path)
        }
    }

    /// Creates the pending stubs, in parallel.
    fn create_pending(&mut self) -> Result<(), StoreError> {
        use rayon::prelude::*;
        let pending: Vec<(Vec<u8>, &Entry)> =
            std::mem::take(&mut self.pending).into_iter().collect();
        pending
            .par_iter()
            .try_for_each(|(rel, entry)| match &entry.kind {
                EntryKind::File { object, size } => {
                    self.file(&self.path(rel), entry, object, *size)
                }
                _ => Ok(()),
            })
    }

    fn file(
        &self,
        path: &Path,
        entry: &Entry,
        object: &ObjectId,
        size: u64,
    ) -> Result<(), StoreError> {
        let xattrs = own_xattrs(entry);
        if size == 0 {
            File::create(path).at(path)?;
            return self.set_meta(path, entry, false);
        }
        match self.strategy {
            Strategy::Stub => {
                let redirect = object.redirect();
                let stub = Stub {
                    size,
                    mode: entry.mode,
                    uid: entry.uid,
                    gid: entry.gid,
                    mtime: conventions::Time {
                        sec: entry.mtime.sec,
                        nsec: entry.mtime.nsec,
                    },
                    xattrs: &xattrs,
                    redirect: redirect.as_bytes(),
                };
                conventions::create_metacopy_stub(path, &stub).at(path)
            }
            Strategy::Hardlink => {
                let checkout = self.checkout(entry, object)?;
                match fs::hard_link(&checkout, path) {
                    Err(e) if e.raw_os_error() == Some(Errno::MLINK.raw_os_error()) => {
                        self.copy_object(object, path, false)?;
                        self.set_meta(path, entry, false)
                    }
                    other => other.at(path),
                }
            }
            Strategy::Reflink | Strategy::Copy => {
                self.copy_object(object, path, self.strategy == Strategy::Reflink)?;
                self.set_meta(path, entry, false)
            }
        }
    }

    /// The checkout file of `object` with `entry`'s metadata, created on first use.
    fn checkout(&self, entry: &Entry, object: &ObjectId) -> Result<PathBuf, StoreError> {
        let key = postcard::to_stdvec(&(
            object,
            entry.mode,
            entry.uid,
            entry.gid,
            entry.mtime,
            own_xattrs(entry),
        ))
        .map_err(crate::record::RecordError::Payload)?;
        let key = ObjectId::of(&key);
        let path = self
            .store
            .root()
            .join("checkouts")
            .join(key.relative_path());
        if path.exists() {
            return Ok(path);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).at(dir)?;
        let tmp = self.tree.with_file_name(format!("checkout.{}", key.hex()));
        self.copy_object(object, &tmp, false)?;
        self.set_meta(&tmp, entry, false)?;
        match rustix::fs::renameat_with(CWD, &tmp, CWD, &path, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(path),
            Err(Errno::EXIST) => {
                fs::remove_file(&tmp).at(&tmp)?;
                Ok(path)
            }
            Err(e) => Err(e).at(&path),
        }
    }

    /// Copies object data to a new file at `dest`: a reflink where possible (required when
    /// `reflink_only`), else an in-kernel copy.
    fn copy_object(
        &self,
        object: &ObjectId,
        dest: &Path,
        reflink_only: bool,
    ) -> Result<(), StoreError> {
        let src_path = self.store.objects.path(object);
        let src = File::open(&src_path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::ObjectMissing { id: object.hex() },
            _ => StoreError::Io {
                path: src_path.clone(),
                source: e,
            },
        })?;
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(dest)
            .at(dest)?;
        match rustix::fs::ioctl_ficlone(&out, &src) {
            Ok(()) => return Ok(()),
            Err(e) if reflink_only => {
                return Err(MaterializeError::ReflinkUnsupported {
                    path: dest.to_path_buf(),
                    source: e.into(),
                }
                .into());
            }
            Err(_) => {}
        }
        io::copy(&mut &src, &mut out).at(dest)?;
        Ok(())
    }

    /// Sets owner, xattrs, mode and times of a created entry (in that order: chown clears
    /// setuid bits).
    fn set_meta(&self, path: &Path, entry: &Entry, is_symlink: bool) -> Result<(), StoreError> {
        if self.root {
            rustix::fs::chownat(
                CWD,
                path,
                Some(Uid::from_raw(entry.uid)),
                Some(Gid::from_raw(entry.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .at(path)?;
        }
        if !is_symlink {
            for (name, value) in own_xattrs(entry) {
                xattr::set(path, &name, &value).at(path)?;
            }
            rustix::fs::chmodat(CWD, path, Mode::from_raw_mode(entry.mode), AtFlags::empty())
                .at(path)?;
        }
        let time = Timespec {
            tv_sec: entry.mtime.sec,
            tv_nsec: entry.mtime.nsec.into(),
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).at(path)
    }

    /// Applies directory metadata deepest first, so creating children no longer touches it.
    fn finish_dirs(&mut self) -> Result<(), StoreError> {
        let dirs = std::mem::take(&mut self.dirs);
        for entry in dirs.iter().rev() {
            let path = self.path(&entry.path);
            self.set_meta(&path, entry, false)?;
        }
        Ok(())
    }
}

/// The entry's xattrs minus overlay's own: a layer must never smuggle in redirects or opacity.
fn own_xattrs(entry: &Entry) -> Vec<(Vec<u8>, Vec<u8>)> {
    entry
        .xattrs
        .iter()
        .filter(|(name, _)| {
            let ours = conventions::is_overlay_xattr(name);
            if ours {
                tracing::warn!(path = %lossy(&entry.path), "dropping overlay xattr from layer entry");
            }
            !ours
        })
        .cloned()
        .collect()
}

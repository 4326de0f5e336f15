//! Building one layer's tree: entries in tar order, later ones replacing earlier ones of the
//! same layer, whiteouts and opaque markers in overlay form, directory metadata last.
//!
//! Every write goes through a [`Root`] on the tree, the machinery `apply` uses: parents are
//! resolved by the kernel inside the tree (`openat2(RESOLVE_IN_ROOT)`) and final names are made
//! with `*at` calls that never follow a symlink. However a layer arranges its symlinks, nothing
//! it names reaches outside the tree. On top of that, a hard link may only name a regular file
//! this layer created and still holds, as the import checked.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{
    AtFlags, CWD, FileType, Gid, Mode, OFlags, RenameFlags, Timespec, Timestamps, Uid,
};
use rustix::io::Errno;
use strata_cow::conventions::{
    self, Namespace, OPAQUE_WHITEOUT, Opacity, Stub, WHITEOUT_PREFIX, WhiteoutStyle,
};
use strata_cow::xattr;
use strata_diff::confined::{Root, proc_path, remove_all_at};

use super::MaterializeError;
use crate::error::{IoContext, StoreError};
use crate::object::ObjectId;
use crate::record::{Entry, EntryKind, Strategy};
use crate::store::Store;

/// What this layer holds at a path so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    /// A regular file: the only thing a hard link may name.
    File,
    /// A symlink, device, fifo or whiteout.
    Other,
}

struct Builder<'a> {
    store: &'a Store,
    strategy: Strategy,
    /// The tree's path, for error messages and the checkout staging beside it.
    tree: PathBuf,
    root: Root,
    ns: Namespace,
    privileged: bool,
    /// Paths created so far, and what each is.
    created: BTreeMap<Vec<u8>, Node>,
    /// Directories whose metadata is applied at the end (children would bump their mtime).
    dirs: BTreeMap<Vec<u8>, &'a Entry>,
    /// Stubs not created yet, by path: created in parallel, see [`Builder::create_pending`].
    pending: BTreeMap<Vec<u8>, &'a Entry>,
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
    let privileged = rustix::process::geteuid().is_root();
    if strategy == Strategy::Stub && !privileged {
        return Err(MaterializeError::NeedsRoot {
            strategy: Strategy::Stub,
        }
        .into());
    }
    fs::create_dir(tree).at(tree)?;
    let mut builder = Builder {
        store,
        strategy,
        tree: tree.to_path_buf(),
        root: Root::open(tree).at(tree)?,
        ns: if privileged {
            Namespace::Trusted
        } else {
            Namespace::User
        },
        privileged,
        created: BTreeMap::new(),
        dirs: BTreeMap::new(),
        pending: BTreeMap::new(),
    };
    for entry in entries {
        builder.add(entry)?;
    }
    builder.create_pending()?;
    builder.finish_dirs()
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `rel` as its parent and final name; the tree itself is `("", ".")`.
fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None if rel.is_empty() => (rel, b"."),
        None => (&rel[..0], rel),
    }
}

/// An entry inside the tree: its parent directory, resolved inside the tree, and its name.
struct At<'n> {
    dir: Arc<OwnedFd>,
    name: &'n OsStr,
}

impl At<'_> {
    /// A path the kernel resolves through the parent's fd (for calls without an `*at` form);
    /// the final name is not followed by the calls that take it.
    fn proc(&self) -> PathBuf {
        proc_path(self.dir.as_fd(), self.name)
    }
}

/// Removes every key of `map` below directory `dir`: they form one range of the byte order.
fn remove_below<V>(map: &mut BTreeMap<Vec<u8>, V>, dir: &[u8]) {
    let mut start = dir.to_vec();
    start.push(b'/');
    let mut end = dir.to_vec();
    end.push(b'/' + 1);
    let below: Vec<Vec<u8>> = map.range(start..end).map(|(k, _)| k.clone()).collect();
    for key in below {
        map.remove(&key);
    }
}

impl<'a> Builder<'a> {
    /// The tree path of `rel`, for messages only: never opened.
    fn shown(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.tree.clone()
        } else {
            self.tree.join(os(rel))
        }
    }

    /// Turns an error at `rel` into [`StoreError::Io`] naming it.
    fn failed<E: Into<io::Error>>(&self, rel: &[u8]) -> impl FnOnce(E) -> StoreError {
        let path = self.shown(rel);
        move |err| StoreError::Io {
            path,
            source: err.into(),
        }
    }

    /// `rel`'s parent directory, resolved inside the tree, and its name.
    fn at<'n>(&mut self, rel: &'n [u8]) -> Result<At<'n>, StoreError> {
        let (parent, name) = split(rel);
        match self.root.dir(Path::new(os(parent))) {
            Ok(dir) => Ok(At {
                dir,
                name: os(name),
            }),
            Err(e) => Err(self.failed(parent)(e)),
        }
    }

    /// Makes sure every ancestor of `rel` is a directory we created, creating missing ones.
    fn ensure_parents(&mut self, rel: &[u8]) -> Result<(), StoreError> {
        let mut end = 0;
        while let Some(pos) = rel[end..].iter().position(|&b| b == b'/') {
            let prefix = &rel[..end + pos];
            match self.created.get(prefix) {
                Some(Node::Dir) => {}
                Some(_) => {
                    return Err(MaterializeError::BelowNonDirectory { path: lossy(rel) }.into());
                }
                None => {
                    let loc = self.at(prefix)?;
                    rustix::fs::mkdirat(&*loc.dir, loc.name, Mode::from_raw_mode(0o755))
                        .map_err(self.failed(prefix))?;
                    self.created.insert(prefix.to_vec(), Node::Dir);
                }
            }
            end += pos + 1;
        }
        Ok(())
    }

    fn add(&mut self, entry: &'a Entry) -> Result<(), StoreError> {
        let rel = entry.path.as_slice();
        self.ensure_parents(rel)?;
        let (parent, name) = split(rel);
        if name == OPAQUE_WHITEOUT {
            return self.set_opacity(parent, Opacity::Opaque);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let mut target = parent.to_vec();
            if !target.is_empty() {
                target.push(b'/');
            }
            target.extend_from_slice(hidden);
            return self.whiteout(parent, &target);
        }
        if let EntryKind::Hardlink { target } = &entry.kind {
            // Checked before anything of `rel` goes: a link to itself names nothing.
            if target.as_slice() == rel || self.created.get(target) != Some(&Node::File) {
                return Err(MaterializeError::BadHardlink {
                    path: lossy(rel),
                    target: lossy(target),
                }
                .into());
            }
        }
        let is_dir = entry.kind == EntryKind::Dir;
        match self.created.get(rel).copied() {
            Some(Node::Dir) if is_dir => {}
            Some(was) => {
                self.remove(rel, was)?;
                self.created.remove(rel);
            }
            None => {}
        }
        let loc = self.at(rel)?;
        let node = match entry.kind {
            EntryKind::Dir => Node::Dir,
            EntryKind::File { .. } | EntryKind::Hardlink { .. } => Node::File,
            _ => Node::Other,
        };
        let existed = self.created.insert(rel.to_vec(), node).is_some();
        match &entry.kind {
            EntryKind::Dir => {
                if !rel.is_empty() && !existed {
                    rustix::fs::mkdirat(&*loc.dir, loc.name, Mode::from_raw_mode(0o700))
                        .map_err(self.failed(rel))?;
                }
                self.dirs.insert(rel.to_vec(), entry);
                Ok(())
            }
            // Stubs are most of a tree and independent of each other: created later, in parallel.
            EntryKind::File { size, .. } if *size > 0 && self.strategy == Strategy::Stub => {
                self.pending.insert(rel.to_vec(), entry);
                Ok(())
            }
            EntryKind::File { object, size } => self.file(&loc, rel, entry, object, *size),
            EntryKind::Symlink { target } => {
                rustix::fs::symlinkat(os(target), &*loc.dir, loc.name).map_err(self.failed(rel))?;
                self.set_meta(&loc, rel, entry, FileType::Symlink)
            }
            EntryKind::Hardlink { target } => self.hardlink(&loc, rel, target),
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                let kind = if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let dev = rustix::fs::makedev(*major, *minor);
                rustix::fs::mknodat(&*loc.dir, loc.name, kind, Mode::from_raw_mode(0o600), dev)
                    .map_err(self.failed(rel))?;
                self.set_meta(&loc, rel, entry, kind)
            }
            EntryKind::Fifo => {
                rustix::fs::mknodat(
                    &*loc.dir,
                    loc.name,
                    FileType::Fifo,
                    Mode::from_raw_mode(0o600),
                    0,
                )
                .map_err(self.failed(rel))?;
                self.set_meta(&loc, rel, entry, FileType::Fifo)
            }
        }
    }

    /// A hard link at `loc` to `target`, a regular file this layer created (checked by the
    /// caller). Both ends are resolved inside the tree; `linkat` follows neither.
    fn hardlink(&mut self, loc: &At<'_>, rel: &[u8], target: &[u8]) -> Result<(), StoreError> {
        if let Some(entry) = self.pending.remove(target) {
            let target_loc = self.at(target)?;
            self.create_stub(&target_loc, target, entry)?;
        }
        let target_loc = self.at(target)?;
        rustix::fs::linkat(
            &*target_loc.dir,
            target_loc.name,
            &*loc.dir,
            loc.name,
            AtFlags::empty(),
        )
        .map_err(self.failed(rel))
    }

    /// A whiteout hiding `target` of lower layers, in the form overlay reads.
    ///
    /// A whiteout hides lower layers only, never an entry of its own layer (OCI image spec,
    /// "Whiteouts"): that entry already hides a lower file, and a directory of this layer
    /// becomes opaque.
    fn whiteout(&mut self, parent: &[u8], target: &[u8]) -> Result<(), StoreError> {
        match self.created.get(target) {
            Some(Node::Dir) => return self.set_opacity(target, Opacity::Opaque),
            Some(_) => return Ok(()),
            None => {}
        }
        let style = if self.privileged {
            WhiteoutStyle::CharDevice
        } else {
            self.set_opacity(parent, Opacity::Xwhiteouts)?;
            WhiteoutStyle::Xattr(self.ns)
        };
        let loc = self.at(target)?;
        conventions::create_whiteout(&loc.proc(), style).map_err(self.failed(target))?;
        self.created.insert(target.to_vec(), Node::Other);
        Ok(())
    }

    /// Marks directory `rel` with `opacity`; xwhiteouts never weaken an opaque directory.
    fn set_opacity(&mut self, rel: &[u8], opacity: Opacity) -> Result<(), StoreError> {
        let path = self.at(rel)?.proc();
        if opacity == Opacity::Xwhiteouts
            && conventions::opacity(&path, self.ns).map_err(self.failed(rel))? == Opacity::Opaque
        {
            return Ok(());
        }
        conventions::set_opacity(&path, self.ns, opacity).map_err(self.failed(rel))
    }

    /// Removes what this layer created at `rel` earlier (a later entry replaces it).
    fn remove(&mut self, rel: &[u8], was: Node) -> Result<(), StoreError> {
        if was == Node::Dir {
            remove_below(&mut self.created, rel);
            remove_below(&mut self.pending, rel);
            // Its metadata, applied at the end, would land on whatever replaces it.
            self.dirs.remove(rel);
            remove_below(&mut self.dirs, rel);
        } else if self.pending.remove(rel).is_some() {
            // Never created.
            return Ok(());
        }
        let loc = self.at(rel)?;
        // A cached handle may be the directory that goes.
        self.root.invalidate();
        remove_all_at(&*loc.dir, loc.name).map_err(self.failed(rel))
    }

    /// Creates the pending stubs, in parallel: one task per directory, which resolves its
    /// handle once (so open descriptors stay few however many directories there are).
    fn create_pending(&mut self) -> Result<(), StoreError> {
        use rayon::prelude::*;
        let mut by_dir: BTreeMap<&[u8], Vec<(&[u8], &Entry)>> = BTreeMap::new();
        let pending = std::mem::take(&mut self.pending);
        for (rel, entry) in &pending {
            by_dir.entry(split(rel).0).or_default().push((rel, entry));
        }
        let this = &*self;
        by_dir.par_iter().try_for_each(|(parent, stubs)| {
            let dir = Arc::new(
                this.root
                    .open_dir(Path::new(os(parent)))
                    .map_err(this.failed(parent))?,
            );
            stubs.par_iter().try_for_each(|(rel, entry)| {
                let loc = At {
                    dir: Arc::clone(&dir),
                    name: os(split(rel).1),
                };
                this.create_stub(&loc, rel, entry)
            })
        })
    }

    fn create_stub(&self, loc: &At<'_>, rel: &[u8], entry: &Entry) -> Result<(), StoreError> {
        match &entry.kind {
            EntryKind::File { object, size } => self.file(loc, rel, entry, object, *size),
            _ => Ok(()),
        }
    }

    fn file(
        &self,
        loc: &At<'_>,
        rel: &[u8],
        entry: &Entry,
        object: &ObjectId,
        size: u64,
    ) -> Result<(), StoreError> {
        if size == 0 {
            drop(create_file(loc).map_err(self.failed(rel))?);
            return self.set_meta(loc, rel, entry, FileType::RegularFile);
        }
        match self.strategy {
            Strategy::Stub => {
                let xattrs = own_xattrs(entry);
                let redirect = self.store.objects.redirect(object)?;
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
                conventions::create_metacopy_stub(&loc.proc(), &stub).map_err(self.failed(rel))
            }
            Strategy::Hardlink => {
                let checkout = self.checkout(entry, object)?;
                match rustix::fs::linkat(CWD, &checkout, &*loc.dir, loc.name, AtFlags::empty()) {
                    Err(Errno::MLINK) => {
                        self.copy_object(object, loc, rel, false)?;
                        self.set_meta(loc, rel, entry, FileType::RegularFile)
                    }
                    other => other.map_err(self.failed(rel)),
                }
            }
            Strategy::Reflink | Strategy::Copy => {
                self.copy_object(object, loc, rel, self.strategy == Strategy::Reflink)?;
                self.set_meta(loc, rel, entry, FileType::RegularFile)
            }
        }
    }

    /// The checkout file of `object` with `entry`'s metadata, created on first use.
    fn checkout(&self, entry: &Entry, object: &ObjectId) -> Result<PathBuf, StoreError> {
        let (path, key) = checkout_path(
            self.store,
            object,
            &Checkout {
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
                mtime: entry.mtime,
                xattrs: own_xattrs(entry),
            },
        )?;
        if path.exists() {
            return Ok(path);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).at(dir)?;
        // Staged beside the tree, in the store's own staging dir.
        let staging = self.tree.parent().unwrap_or(Path::new("."));
        let name = format!("checkout.{}", key.hex());
        let tmp = staging.join(&name);
        let loc = At {
            dir: Arc::new(
                rustix::fs::open(
                    staging,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .at(staging)?,
            ),
            name: OsStr::new(&name),
        };
        self.copy_object(object, &loc, name.as_bytes(), false)?;
        self.set_meta(&loc, name.as_bytes(), entry, FileType::RegularFile)?;
        match rustix::fs::renameat_with(CWD, &tmp, CWD, &path, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(path),
            Err(Errno::EXIST) => {
                fs::remove_file(&tmp).at(&tmp)?;
                Ok(path)
            }
            Err(e) => Err(e).at(&path),
        }
    }

    /// Copies object data to a new file at `loc` (`rel` in messages): a reflink where possible
    /// (required when `reflink_only`), else an in-kernel copy.
    fn copy_object(
        &self,
        object: &ObjectId,
        loc: &At<'_>,
        rel: &[u8],
        reflink_only: bool,
    ) -> Result<(), StoreError> {
        let (src, _) = self.store.objects.open_object(object)?;
        let mut out = File::from(create_file(loc).map_err(self.failed(rel))?);
        match rustix::fs::ioctl_ficlone(&out, &src) {
            Ok(()) => return Ok(()),
            Err(e) if reflink_only => {
                return Err(MaterializeError::ReflinkUnsupported {
                    path: self.shown(rel),
                    source: e.into(),
                }
                .into());
            }
            Err(_) => {}
        }
        io::copy(&mut &src, &mut out).map_err(self.failed(rel))?;
        Ok(())
    }

    /// Sets owner, xattrs, mode and times of a created entry (in that order: chown clears
    /// setuid bits). Only `loc`'s final name is touched, never followed.
    fn set_meta(
        &self,
        loc: &At<'_>,
        rel: &[u8],
        entry: &Entry,
        kind: FileType,
    ) -> Result<(), StoreError> {
        let dir = &*loc.dir;
        if self.privileged {
            rustix::fs::chownat(
                dir,
                loc.name,
                Some(Uid::from_raw(entry.uid)),
                Some(Gid::from_raw(entry.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(self.failed(rel))?;
        }
        if kind != FileType::Symlink {
            let xattrs = own_xattrs(entry);
            if !xattrs.is_empty() {
                let path = loc.proc();
                for (name, value) in xattrs {
                    xattr::set(&path, &name, &value).map_err(self.failed(rel))?;
                }
            }
            rustix::fs::chmodat(
                dir,
                loc.name,
                Mode::from_raw_mode(entry.mode),
                AtFlags::empty(),
            )
            .map_err(self.failed(rel))?;
        }
        let time = Timespec {
            tv_sec: entry.mtime.sec,
            tv_nsec: entry.mtime.nsec.into(),
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(dir, loc.name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(self.failed(rel))
    }

    /// Applies directory metadata deepest first (reverse path order puts every directory
    /// before its parent), so creating children no longer touches it.
    fn finish_dirs(&mut self) -> Result<(), StoreError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, entry) in dirs.iter().rev() {
            let loc = self.at(rel)?;
            self.set_meta(&loc, rel, entry, FileType::Directory)?;
        }
        Ok(())
    }
}

/// Creates the regular file `loc` (which must not exist), never through a symlink.
fn create_file(loc: &At<'_>) -> io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        &*loc.dir,
        loc.name,
        flags,
        Mode::from_raw_mode(0o600),
    )?)
}

/// The entry's xattrs minus overlay's own: a layer must never smuggle in redirects or opacity.
/// The inode metadata a checkout file carries besides its object's bytes.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Checkout {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: crate::record::Time,
    /// Sorted by name, overlay's own left out.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where the checkout of `object` with `meta` lives (`checkouts/` and the blake3 of both), and
/// that key: one file per object and metadata, which every hardlinked tree shares.
pub(crate) fn checkout_path(
    store: &Store,
    object: &ObjectId,
    meta: &Checkout,
) -> Result<(PathBuf, ObjectId), StoreError> {
    // The encoding of the tuple the first release hashed: existing checkouts keep their keys.
    let key = postcard::to_stdvec(&(
        object,
        meta.mode,
        meta.uid,
        meta.gid,
        meta.mtime,
        &meta.xattrs,
    ))
    .map_err(crate::record::RecordError::Payload)?;
    let key = ObjectId::of(&key);
    Ok((
        store.root().join("checkouts").join(key.relative_path()),
        key,
    ))
}

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

#[cfg(test)]
mod tests {
    //! The tree builder on its own, fed entries the import would refuse: whatever the record
    //! says, nothing outside the tree is touched.

    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::record::Time;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: Time::default(),
            xattrs: Vec::new(),
        }
    }

    fn file(path: &str) -> Entry {
        entry(
            path,
            EntryKind::File {
                object: ObjectId::of(b""),
                size: 0,
            },
        )
    }

    /// Builds `entries` with every strategy this process may use, next to an outside dir
    /// whose victim must stay as it was; returns each build's result.
    fn build_beside_victim(entries: &[Entry]) -> Vec<Result<(), StoreError>> {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"host").unwrap();
        let entries: Vec<Entry> = entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::Symlink { target } if target == b"OUTSIDE" => Entry {
                    kind: EntryKind::Symlink {
                        target: outside.as_os_str().as_bytes().to_vec(),
                    },
                    ..e.clone()
                },
                _ => e.clone(),
            })
            .collect();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let mut results = Vec::new();
        let mut strategies = vec![Strategy::Hardlink, Strategy::Copy];
        if rustix::process::geteuid().is_root() {
            strategies.push(Strategy::Stub);
        }
        for (i, strategy) in strategies.into_iter().enumerate() {
            let tree = tmp.path().join(format!("tree{i}"));
            results.push(build_tree(&store, strategy, &tree, &entries));
            let names: Vec<_> = fs::read_dir(&outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["secret"], "{strategy:?} wrote outside");
            let victim = fs::metadata(outside.join("secret")).unwrap();
            assert_eq!(victim.nlink(), 1, "{strategy:?} linked the victim");
            assert_eq!(fs::read(outside.join("secret")).unwrap(), b"host");
        }
        results
    }

    fn symlink(path: &str, target: &str) -> Entry {
        entry(
            path,
            EntryKind::Symlink {
                target: target.as_bytes().to_vec(),
            },
        )
    }

    fn hardlink(path: &str, target: &str) -> Entry {
        entry(
            path,
            EntryKind::Hardlink {
                target: target.as_bytes().to_vec(),
            },
        )
    }

    #[test]
    fn a_hard_link_through_a_replaced_dir_is_refused() {
        let entries = [
            entry("d", EntryKind::Dir),
            file("d/secret"),
            symlink("d", "OUTSIDE"),
            hardlink("h", "d/secret"),
        ];
        for result in build_beside_victim(&entries) {
            assert!(matches!(
                result,
                Err(StoreError::Materialize(
                    MaterializeError::BadHardlink { .. }
                ))
            ));
        }
    }

    #[test]
    fn writes_below_a_symlink_stay_inside() {
        for entries in [
            vec![symlink("d", "OUTSIDE"), file("d/x")],
            vec![
                symlink("d", "OUTSIDE"),
                entry("d/.wh.secret", EntryKind::Fifo),
            ],
            vec![
                symlink("d", "OUTSIDE"),
                entry("d/.wh..wh..opq", EntryKind::Fifo),
            ],
            vec![symlink("a", "/"), hardlink("h", "a/etc/passwd")],
        ] {
            for result in build_beside_victim(&entries) {
                assert!(result.is_err(), "{entries:?} built");
            }
        }
    }

    #[test]
    fn a_symlink_replaced_by_a_file_is_replaced_not_followed() {
        let entries = [
            symlink("s", "OUTSIDE"),
            file("s"),
            entry("s2", EntryKind::Dir),
        ];
        for result in build_beside_victim(&entries) {
            result.unwrap();
        }
    }
}

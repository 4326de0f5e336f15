//! The sources of `COPY` and `ADD`: read from a directory (the build context, or a stage's
//! mounted rootfs) through handles, so that no symlink in it is ever followed out of it; their
//! content checksum; and their copy into a rootfs, confined to it.
//!
//! Sources resolve inside the tree (`openat2(RESOLVE_IN_ROOT)` for their parent directories);
//! a source or an entry below it that is a symlink is read and copied as a link.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, RawDir, Stat, Timespec, Timestamps, Uid};
use strata_diff::confined::{Root, proc_path, remove_all_at};

use crate::ignore::{Ignore, glob};

/// A directory sources are read from.
#[derive(Debug)]
pub struct SourceTree {
    root: Root,
    ignore: Ignore,
}

/// One resolved source.
#[derive(Debug)]
pub struct Source {
    /// Its path in the tree (empty for the tree's root).
    pub rel: PathBuf,
    parent: OwnedFd,
    name: OsString,
    stat: Stat,
}

impl Source {
    /// Whether it is a directory (whose contents are copied).
    pub fn is_dir(&self) -> bool {
        FileType::from_raw_mode(self.stat.st_mode) == FileType::Directory
    }

    /// Opens it for reading when it is a regular file (never following a symlink).
    pub fn open_file(&self) -> io::Result<Option<File>> {
        if FileType::from_raw_mode(self.stat.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        open_file(&self.parent, &self.name).map(Some)
    }

    /// Its name.
    pub fn name(&self) -> &OsStr {
        &self.name
    }
}

/// An entry met by a walk: the source itself (`rel` empty) or something below it.
struct Item<'a> {
    rel: PathBuf,
    dir: &'a OwnedFd,
    name: &'a OsStr,
    stat: Stat,
}

impl Item<'_> {
    fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

impl SourceTree {
    /// The tree at `path`, leaving out what `ignore` names.
    pub fn open(path: &Path, ignore: Ignore) -> io::Result<SourceTree> {
        Ok(SourceTree {
            root: Root::open(path)?,
            ignore,
        })
    }

    /// The entries `source` (as written in a Dockerfile) names: wildcards in its last
    /// component expand, sorted; nothing when it names nothing.
    pub fn resolve(&self, source: &str) -> io::Result<Vec<Source>> {
        let rel = clean(source);
        let (parent_rel, last) = match rel.file_name() {
            Some(name) => (
                rel.parent().unwrap_or(Path::new("")).to_path_buf(),
                Some(name.to_owned()),
            ),
            None => (PathBuf::new(), None),
        };
        let parent = match self.root.open_dir(&parent_rel) {
            Ok(fd) => fd,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let Some(last) = last else {
            let stat = rustix::fs::statat(&parent, ".", AtFlags::empty())?;
            return Ok(vec![Source {
                rel: PathBuf::new(),
                parent,
                name: OsString::from("."),
                stat,
            }]);
        };
        let names: Vec<OsString> = if last.as_bytes().iter().any(|b| b"*?[".contains(b)) {
            let listing = open_listing(&parent, OsStr::new("."))?;
            names(&listing)?
                .into_iter()
                .filter(|n| glob(last.as_bytes(), n.as_bytes()))
                .collect()
        } else {
            vec![last]
        };
        let mut out = Vec::new();
        for name in names {
            let rel = parent_rel.join(&name);
            if self.ignore.ignored(&rel) {
                continue;
            }
            match rustix::fs::statat(&parent, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => out.push(Source {
                    rel,
                    parent: parent.try_clone()?,
                    name,
                    stat,
                }),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Visits `source` and, for a directory, everything below it not ignored, parents first
    /// and names sorted.
    fn walk(
        &self,
        source: &Source,
        visit: &mut dyn FnMut(&Item<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let item = Item {
            rel: PathBuf::new(),
            dir: &source.parent,
            name: &source.name,
            stat: source.stat,
        };
        visit(&item)?;
        if source.is_dir() {
            let dir = open_listing(&source.parent, &source.name)?;
            self.walk_dir(&dir, &source.rel, Path::new(""), visit)?;
        }
        Ok(())
    }

    fn walk_dir(
        &self,
        dir: &OwnedFd,
        tree_rel: &Path,
        rel: &Path,
        visit: &mut dyn FnMut(&Item<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        for name in names(dir)? {
            if self.ignore.ignored(&tree_rel.join(rel).join(&name)) {
                continue;
            }
            let stat = rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
            let item = Item {
                rel: rel.join(&name),
                dir,
                name: &name,
                stat,
            };
            visit(&item)?;
            if item.kind() == FileType::Directory {
                let child = open_listing(dir, &name)?;
                self.walk_dir(&child, tree_rel, &item.rel, visit)?;
            }
        }
        Ok(())
    }

    /// A checksum of `sources` as a `COPY` would place them: names, types, mode, owner,
    /// xattrs, link targets and file contents; not times.
    pub fn checksum(&self, sources: &[Source]) -> io::Result<String> {
        let mut hasher = blake3::Hasher::new();
        for source in sources {
            field(&mut hasher, source.rel.as_os_str().as_bytes());
            self.walk(source, &mut |item| {
                let s = &item.stat;
                field(&mut hasher, item.rel.as_os_str().as_bytes());
                let meta = format!("{:o} {} {}", s.st_mode, s.st_uid, s.st_gid);
                field(&mut hasher, meta.as_bytes());
                let mut xattrs = strata_cow::xattr::all(&proc_path(item.dir, item.name))?;
                xattrs.sort();
                for (k, v) in xattrs {
                    field(&mut hasher, &k);
                    field(&mut hasher, &v);
                }
                match item.kind() {
                    FileType::Symlink => {
                        let target = rustix::fs::readlinkat(item.dir, item.name, Vec::new())?;
                        field(&mut hasher, target.as_bytes());
                    }
                    FileType::RegularFile => {
                        let mut file = open_file(item.dir, item.name)?;
                        let mut content = blake3::Hasher::new();
                        io::copy(&mut file, &mut content)?;
                        field(&mut hasher, content.finalize().as_bytes());
                    }
                    _ => field(&mut hasher, &s.st_rdev.to_le_bytes()),
                }
                Ok(())
            })?;
        }
        Ok(hasher.finalize().to_hex().to_string())
    }

    /// Copies `source` to `name` in directory `into` of `target` (for a directory source:
    /// its contents into `into/name`, or into `into` itself when `name` is `None`).
    pub fn copy(
        &self,
        source: &Source,
        into: &Arc<OwnedFd>,
        name: Option<&OsStr>,
        target: &Target,
    ) -> io::Result<()> {
        let mut dirs: HashMap<PathBuf, Arc<OwnedFd>> = HashMap::new();
        // Directory times are set last: writing their children changes them.
        let mut times: Vec<(Arc<OwnedFd>, OsString, Stat)> = Vec::new();
        self.walk(source, &mut |item| {
            let (parent, name) = if item.rel.as_os_str().is_empty() {
                match (name, source.is_dir()) {
                    (None, true) => {
                        dirs.insert(PathBuf::new(), Arc::clone(into));
                        return Ok(());
                    }
                    (Some(name), _) => (Arc::clone(into), name.to_owned()),
                    (None, false) => (Arc::clone(into), source.name.clone()),
                }
            } else {
                let parent_rel = item.rel.parent().unwrap_or(Path::new(""));
                let parent = dirs.get(parent_rel).cloned().ok_or_else(|| {
                    io::Error::other(format!("no parent for {}", item.rel.display()))
                })?;
                (parent, item.name.to_owned())
            };
            if let Some(dir) = target.write(item, &parent, &name)? {
                dirs.insert(item.rel.clone(), Arc::new(dir));
                times.push((parent, name, item.stat));
            }
            Ok(())
        })?;
        for (parent, name, stat) in times.iter().rev() {
            set_times(parent, name, stat, AtFlags::empty())?;
        }
        Ok(())
    }
}

/// Where and how sources are written.
#[derive(Debug)]
pub struct Target {
    /// The rootfs, every path resolved inside it.
    pub root: Root,
    /// Owner of everything written (`--chown`, or root for context files); `None` keeps the
    /// source's.
    pub owner: Option<(u32, u32)>,
    /// Mode of everything written (`--chmod`); `None` keeps the source's.
    pub mode: Option<u32>,
}

impl Target {
    /// The directory `rel` of the rootfs, created (0755) as needed.
    pub fn dir(&mut self, rel: &Path) -> io::Result<Arc<OwnedFd>> {
        self.root.dir_creating(rel)
    }

    /// Whether `rel` is a directory in the rootfs (symlinks followed inside it).
    pub fn is_dir(&self, rel: &Path) -> bool {
        self.root.open_dir(rel).is_ok()
    }

    /// Writes `item` as `name` in `parent`, replacing what is there unless both are
    /// directories; returns the new directory's handle for a directory.
    fn write(
        &self,
        item: &Item<'_>,
        parent: &OwnedFd,
        name: &OsStr,
    ) -> io::Result<Option<OwnedFd>> {
        let kind = item.kind();
        let existing = strata_diff::confined::file_type_at(parent, name)?;
        if existing.is_some_and(|t| !(t == FileType::Directory && kind == FileType::Directory)) {
            remove_all_at(parent, name)?;
        }
        let s = &item.stat;
        let (uid, gid) = self.owner.unwrap_or((s.st_uid, s.st_gid));
        let mode = Mode::from_raw_mode(self.mode.unwrap_or(s.st_mode & 0o7777));
        let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        match kind {
            FileType::Directory => {
                if existing.is_none() {
                    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
                }
                rustix::fs::chownat(parent, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
                rustix::fs::chmodat(parent, name, mode, AtFlags::empty())?;
                copy_xattrs(item, parent, name)?;
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                Ok(Some(rustix::fs::openat(
                    parent,
                    name,
                    flags,
                    Mode::empty(),
                )?))
            }
            FileType::RegularFile => {
                let mut from = open_file(item.dir, item.name)?;
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600))?;
                let mut to = File::from(fd);
                io::copy(&mut from, &mut to)?;
                rustix::fs::fchown(&to, owner.0, owner.1)?;
                copy_xattrs(item, parent, name)?;
                rustix::fs::fchmod(&to, mode)?;
                set_times(parent, name, s, AtFlags::empty())?;
                Ok(None)
            }
            FileType::Symlink => {
                let link = rustix::fs::readlinkat(item.dir, item.name, Vec::new())?;
                rustix::fs::symlinkat(link.as_c_str(), parent, name)?;
                rustix::fs::chownat(parent, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
                set_times(parent, name, s, AtFlags::SYMLINK_NOFOLLOW)?;
                Ok(None)
            }
            _ => {
                tracing::warn!(path = %item.rel.display(), "not copying a special file");
                Ok(None)
            }
        }
    }
}

/// `path` as a relative path inside a tree: no root, no `.`; `..` is left for the kernel to
/// confine.
pub fn clean(path: &str) -> PathBuf {
    Path::new(path)
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn open_listing(parent: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
}

fn open_file(dir: impl AsFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// The names in `dir`, without `.` and `..`, sorted.
///
/// # References
/// - [`getdents64(2)`](https://man7.org/linux/man-pages/man2/getdents64.2.html)
fn names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut entries = RawDir::new(dir, buf.spare_capacity_mut());
    let mut out = Vec::new();
    while let Some(entry) = entries.next() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(OsString::from(std::ffi::OsStr::from_bytes(&name)));
        }
    }
    out.sort();
    Ok(out)
}

fn copy_xattrs(item: &Item<'_>, parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let xattrs = strata_cow::xattr::all(&proc_path(item.dir, item.name))?;
    if xattrs.is_empty() {
        return Ok(());
    }
    let target = proc_path(parent, name);
    for (key, value) in xattrs {
        strata_cow::xattr::set(&target, &key, &value)?;
    }
    Ok(())
}

fn set_times(dir: &OwnedFd, name: &OsStr, stat: &Stat, flags: AtFlags) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: stat.st_atime,
            tv_nsec: stat.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: stat.st_mtime,
            tv_nsec: stat.st_mtime_nsec as _,
        },
    };
    Ok(rustix::fs::utimensat(dir, name, &times, flags)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A context beside a secret, with links and `..` pointing at it.
    fn context() -> (tempfile::TempDir, SourceTree) {
        let dir = tempfile::tempdir().unwrap();
        fs_write(&dir.path().join("secret"), "outside");
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        fs_write(&ctx.join("a.txt"), "a");
        symlink(dir.path(), ctx.join("up")).unwrap();
        symlink("../secret", ctx.join("rel")).unwrap();
        let tree = SourceTree::open(&ctx, Ignore::default()).unwrap();
        (dir, tree)
    }

    fn fs_write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn sources_never_resolve_outside_the_tree() {
        let (_dir, tree) = context();
        assert!(tree.resolve("../secret").unwrap().is_empty());
        assert!(tree.resolve("/../../secret").unwrap().is_empty());
        // `up` links to the context's parent by absolute path, which inside the context is
        // nothing.
        assert!(tree.resolve("up/secret").unwrap().is_empty());
        let rel = tree.resolve("rel").unwrap();
        assert_eq!(rel.len(), 1);
        assert!(
            rel[0].open_file().unwrap().is_none(),
            "a link, not its target"
        );
        let all = tree.resolve("*").unwrap();
        let names: Vec<&OsStr> = all.iter().map(Source::name).collect();
        assert_eq!(names, ["a.txt", "rel", "up"]);
    }

    #[test]
    fn the_checksum_covers_content_mode_and_link_targets_but_not_times() {
        let (dir, tree) = context();
        let ctx = dir.path().join("ctx");
        let sum = |tree: &SourceTree| tree.checksum(&tree.resolve(".").unwrap()).unwrap();
        let first = sum(&tree);
        let file = std::fs::File::options()
            .write(true)
            .open(ctx.join("a.txt"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(sum(&tree), first, "times do not count");
        fs_write(&ctx.join("a.txt"), "b");
        let content = sum(&tree);
        assert_ne!(content, first);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ctx.join("a.txt"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let mode = sum(&tree);
        assert_ne!(mode, content);
        std::fs::remove_file(ctx.join("rel")).unwrap();
        symlink("../elsewhere", ctx.join("rel")).unwrap();
        assert_ne!(sum(&tree), mode);
    }
}

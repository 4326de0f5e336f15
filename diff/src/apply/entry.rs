//! The applier: tar entries in stream order, each resolved inside the root.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use strata_codec::tar::{EntryType, Header, TarReader, Whiteout};
use strata_cow::conventions::{self, Opacity, WhiteoutStyle};
use strata_cow::xattr;

use super::{ApplyError, ApplyOptions, ApplyStats, Ownership, Whiteouts};
use crate::confined::{Root, file_type_at, proc_path, remove_all_at};

const ZERO_RUN: usize = 64 * 1024;

pub(crate) struct Applier<'a> {
    root: Root,
    options: &'a ApplyOptions,
    stats: ApplyStats,
    /// Every path this layer created or updated: its whiteouts and opaque markers must leave
    /// them alone, whatever the order of entries.
    touched: HashSet<PathBuf>,
    /// Directory mtimes, set last because creating children changes them.
    dir_times: Vec<(PathBuf, i64)>,
    /// The directories in `dir_times`.
    timed: HashSet<PathBuf>,
    buf: Vec<u8>,
}

/// An entry's metadata as the layer gives it.
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Applier<'a> {
    pub(crate) fn new(root: Root, options: &'a ApplyOptions) -> Self {
        Applier {
            root,
            options,
            stats: ApplyStats::default(),
            touched: HashSet::new(),
            dir_times: Vec::new(),
            timed: HashSet::new(),
            buf: vec![0u8; ZERO_RUN],
        }
    }

    pub(crate) fn run(mut self, reader: impl Read) -> Result<ApplyStats, ApplyError> {
        let mut tar = TarReader::new(reader, self.options.limits);
        while let Some(header) = tar.next_entry()? {
            if header.path.is_empty() {
                tracing::debug!("skipping the root entry");
                continue;
            }
            let path = PathBuf::from(OsStr::from_bytes(&header.path));
            self.entry(&header, &mut tar, &path)?;
        }
        self.set_dir_times()?;
        Ok(self.stats)
    }

    fn entry(
        &mut self,
        header: &Header,
        data: &mut impl Read,
        path: &Path,
    ) -> Result<(), ApplyError> {
        let name = path
            .file_name()
            .expect("clean paths end in a name")
            .as_bytes();
        let parent = path.parent().unwrap_or(Path::new(""));
        let at = |source: io::Error| ApplyError::Entry {
            path: path.to_path_buf(),
            source,
        };
        match header.whiteout() {
            Some(Whiteout::Opaque { .. }) => return self.opaque(parent).map_err(at),
            Some(Whiteout::Hides { name: target, .. }) => {
                return self.whiteout(path, parent, target);
            }
            None => {}
        }
        let times = self.untouched_dir_times(parent).map_err(at)?;
        self.create(header, data, path, parent, name)?;
        self.restore_dir_times(parent, times).map_err(at)
    }

    fn create(
        &mut self,
        header: &Header,
        data: &mut impl Read,
        path: &Path,
        parent: &Path,
        name: &[u8],
    ) -> Result<(), ApplyError> {
        let at = |source: io::Error| ApplyError::Entry {
            path: path.to_path_buf(),
            source,
        };
        let attrs = attrs(header);
        match &header.kind {
            EntryType::File => {
                let dir = self.root.dir_creating(parent).map_err(at)?;
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = self
                    .create_replacing(&dir, name, || {
                        rustix::fs::openat(
                            &dir,
                            OsStr::from_bytes(name),
                            flags,
                            Mode::from_raw_mode(0o600),
                        )
                    })
                    .map_err(at)?;
                let mut file = File::from(fd);
                self.stats.bytes += write_sparse(&mut file, data, &mut self.buf).map_err(at)?;
                self.finish_file(&file, &dir, name, &attrs).map_err(at)?;
            }
            EntryType::Dir => {
                let dir = self.root.dir_creating(parent).map_err(at)?;
                let name_os = OsStr::from_bytes(name);
                let mkdir = || rustix::fs::mkdirat(&dir, name_os, Mode::from_raw_mode(0o700));
                match mkdir() {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        if file_type_at(&dir, name_os).map_err(at)? == Some(FileType::Directory) {
                            drop_stale_xattrs(&dir, name_os, &attrs.xattrs).map_err(at)?;
                        } else {
                            self.create_replacing(&dir, name, mkdir).map_err(at)?;
                        }
                    }
                    Err(e) => return Err(at(e.into())),
                }
                self.finish(&dir, name, &attrs, FileType::Directory)
                    .map_err(at)?;
                self.dir_times.push((path.to_path_buf(), attrs.mtime));
                self.timed.insert(path.to_path_buf());
            }
            EntryType::Symlink { target } => {
                let dir = self.root.dir_creating(parent).map_err(at)?;
                self.create_replacing(&dir, name, || {
                    rustix::fs::symlinkat(OsStr::from_bytes(target), &dir, OsStr::from_bytes(name))
                })
                .map_err(at)?;
                self.finish(&dir, name, &attrs, FileType::Symlink)
                    .map_err(at)?;
            }
            EntryType::Hardlink { target, .. } => self.hardlink(path, parent, name, target)?,
            kind @ (EntryType::CharDevice { .. }
            | EntryType::BlockDevice { .. }
            | EntryType::Fifo) => {
                let (file_type, dev) = match *kind {
                    EntryType::CharDevice { major, minor } => {
                        (FileType::CharacterDevice, rustix::fs::makedev(major, minor))
                    }
                    EntryType::BlockDevice { major, minor } => {
                        (FileType::BlockDevice, rustix::fs::makedev(major, minor))
                    }
                    _ => (FileType::Fifo, 0),
                };
                let dir = self.root.dir_creating(parent).map_err(at)?;
                let mknod = || {
                    rustix::fs::mknodat(
                        &dir,
                        OsStr::from_bytes(name),
                        file_type,
                        Mode::from_raw_mode(0o600),
                        dev,
                    )
                };
                match self.create_replacing(&dir, name, mknod) {
                    Ok(()) => {}
                    Err(e)
                        if e.raw_os_error() == Some(Errno::PERM.raw_os_error())
                            && file_type != FileType::Fifo =>
                    {
                        tracing::warn!(
                            ?path,
                            "skipping a device node: not permitted here (user namespace?)"
                        );
                        self.stats.skipped_devices += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(at(e)),
                }
                self.finish(&dir, name, &attrs, file_type).map_err(at)?;
            }
        }
        self.touch(path);
        Ok(())
    }

    /// A hard link to `link` (a clean path, not `path` itself: the reader checked both).
    fn hardlink(
        &mut self,
        path: &Path,
        parent: &Path,
        name: &[u8],
        link: &[u8],
    ) -> Result<(), ApplyError> {
        let at = |source: io::Error| ApplyError::Entry {
            path: path.to_path_buf(),
            source,
        };
        let target = PathBuf::from(OsStr::from_bytes(link));
        let missing = || ApplyError::MissingLinkTarget {
            path: path.to_path_buf(),
            target: target.clone(),
        };
        let target_name = target.file_name().expect("clean paths end in a name");
        let target_dir = match self.root.dir(target.parent().unwrap_or(Path::new(""))) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(at(e)),
        };
        let dir = self.root.dir_creating(parent).map_err(at)?;
        let link = || {
            rustix::fs::linkat(
                &target_dir,
                target_name,
                &dir,
                OsStr::from_bytes(name),
                AtFlags::empty(),
            )
        };
        match self.create_replacing(&dir, name, link) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                return Err(missing());
            }
            Err(e) => return Err(at(e)),
        }
        self.stats.entries += 1;
        self.touch(path);
        Ok(())
    }

    /// Records that this layer wrote `path` (and so holds its ancestors).
    fn touch(&mut self, path: &Path) {
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() || !self.touched.insert(ancestor.to_path_buf()) {
                break;
            }
        }
    }

    /// Runs `create` (which makes `name` in `dir`); if something is already there, removes it
    /// (with everything below it) and runs `create` again. One syscall in the common case.
    fn create_replacing<T>(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        create: impl Fn() -> rustix::io::Result<T>,
    ) -> io::Result<T> {
        match create() {
            Err(Errno::EXIST) => {
                self.root.invalidate();
                remove_all_at(dir, OsStr::from_bytes(name))?;
                Ok(create()?)
            }
            other => Ok(other?),
        }
    }

    /// Sets owner, xattrs, mode, and (except for directories, done last) mtime.
    fn finish(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        attrs: &Attrs,
        kind: FileType,
    ) -> io::Result<()> {
        let name = OsStr::from_bytes(name);
        if self.options.ownership == Ownership::FromLayer {
            rustix::fs::chownat(
                dir,
                name,
                Some(Uid::from_raw(attrs.uid)),
                Some(Gid::from_raw(attrs.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if !attrs.xattrs.is_empty() {
            let target = proc_path(dir, name);
            for (key, value) in &attrs.xattrs {
                xattr::set(&target, key, value)?;
            }
        }
        if kind != FileType::Symlink {
            rustix::fs::chmodat(
                dir,
                name,
                Mode::from_raw_mode(attrs.mode & 0o7777),
                AtFlags::empty(),
            )?;
        }
        if kind != FileType::Directory {
            set_mtime(dir, name, attrs.mtime)?;
        }
        self.stats.entries += 1;
        Ok(())
    }

    /// [`Applier::finish`] for a regular file we hold open: the same order, through the fd.
    fn finish_file(
        &mut self,
        file: &File,
        dir: &OwnedFd,
        name: &[u8],
        attrs: &Attrs,
    ) -> io::Result<()> {
        if self.options.ownership == Ownership::FromLayer {
            rustix::fs::fchown(
                file,
                Some(Uid::from_raw(attrs.uid)),
                Some(Gid::from_raw(attrs.gid)),
            )?;
        }
        if !attrs.xattrs.is_empty() {
            let target = proc_path(dir, OsStr::from_bytes(name));
            for (key, value) in &attrs.xattrs {
                xattr::set(&target, key, value)?;
            }
        }
        rustix::fs::fchmod(file, Mode::from_raw_mode(attrs.mode & 0o7777))?;
        let time = Timespec {
            tv_sec: attrs.mtime,
            tv_nsec: 0,
        };
        rustix::fs::futimens(
            file,
            &Timestamps {
                last_access: time,
                last_modification: time,
            },
        )?;
        self.stats.entries += 1;
        Ok(())
    }

    /// The whiteout `raw` of `target` in `parent` (a name the reader checked).
    fn whiteout(&mut self, raw: &Path, parent: &Path, target: &[u8]) -> Result<(), ApplyError> {
        let at = |source: io::Error| ApplyError::Entry {
            path: raw.to_path_buf(),
            source,
        };
        let path = parent.join(OsStr::from_bytes(target));
        let target = OsStr::from_bytes(target);
        if self.touched.contains(&path) {
            // Whiteouts hide only what the layers below hold: what this layer wrote stays, but
            // a directory it wrote loses what the layers below had in it, as if opaque.
            let dir = self.root.dir(parent).map_err(at)?;
            if file_type_at(&dir, target)
                .map_err(at)?
                .is_some_and(|t| t.is_dir())
            {
                return self.opaque(&path).map_err(at);
            }
            self.stats.whiteouts += 1;
            return Ok(());
        }
        self.stats.whiteouts += 1;
        match self.options.whiteouts {
            Whiteouts::Remove => {
                let dir = match self.root.dir(parent) {
                    Ok(dir) => dir,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
                        return Ok(());
                    }
                    Err(e) => return Err(at(e)),
                };
                if file_type_at(&dir, target).map_err(at)?.is_none() {
                    return Ok(());
                }
                let times = self.untouched_dir_times(parent).map_err(at)?;
                self.root.invalidate();
                remove_all_at(&dir, target).map_err(at)?;
                self.restore_dir_times(parent, times).map_err(at)
            }
            Whiteouts::Overlay(_) => {
                let dir = self.root.dir_creating(parent).map_err(at)?;
                if file_type_at(&dir, target).map_err(at)?.is_some() {
                    self.root.invalidate();
                    remove_all_at(&dir, target).map_err(at)?;
                }
                conventions::create_whiteout(&proc_path(&dir, target), WhiteoutStyle::CharDevice)
                    .map_err(at)?;
                self.touch(&path);
                Ok(())
            }
        }
    }

    /// `.wh..wh..opq` in `dir`: everything below `dir` this layer did not write goes.
    fn opaque(&mut self, dir_path: &Path) -> io::Result<()> {
        self.stats.whiteouts += 1;
        let dir = self.root.dir_creating(dir_path)?;
        match self.options.whiteouts {
            Whiteouts::Overlay(ns) => {
                let (parent, name) = split(dir_path);
                let parent_fd = self.root.dir(parent)?;
                let target = match name {
                    Some(name) => proc_path(&parent_fd, name),
                    None => proc_path(&dir, OsStr::new(".")),
                };
                conventions::set_opacity(&target, ns, Opacity::Opaque)
            }
            Whiteouts::Remove => {
                let times = self.untouched_dir_times(dir_path)?;
                self.root.invalidate();
                self.hide_untouched(&dir, dir_path)?;
                self.restore_dir_times(dir_path, times)
            }
        }
    }

    /// The times of the directory `dir_path` when this layer has not written it, so that
    /// adding or removing its entries can leave them as the layers below had them (the layer
    /// did not say the directory changed). `None` for a directory this layer wrote (its own
    /// time comes in the final pass) or one that does not exist.
    fn untouched_dir_times(&mut self, dir_path: &Path) -> io::Result<Option<Timestamps>> {
        if self.timed.contains(dir_path) {
            return Ok(None);
        }
        let (parent, name) = split(dir_path);
        let parent_fd = match self.root.dir(parent) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let name = name.unwrap_or(OsStr::new("."));
        match rustix::fs::statat(parent_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Timestamps {
                last_access: Timespec {
                    tv_sec: st.st_atime,
                    tv_nsec: st.st_atime_nsec as i64,
                },
                last_modification: Timespec {
                    tv_sec: st.st_mtime,
                    tv_nsec: st.st_mtime_nsec as i64,
                },
            })),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn restore_dir_times(&mut self, dir_path: &Path, times: Option<Timestamps>) -> io::Result<()> {
        let Some(times) = times else { return Ok(()) };
        let (parent, name) = split(dir_path);
        let parent_fd = self.root.dir(parent)?;
        let name = name.unwrap_or(OsStr::new("."));
        Ok(rustix::fs::utimensat(
            parent_fd,
            name,
            &times,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    fn hide_untouched(&self, dir: &OwnedFd, dir_path: &Path) -> io::Result<()> {
        // `dir` may be an O_PATH handle, which cannot be listed.
        let real = crate::dir::open_dir(dir, c".")?;
        let children = crate::dir::sorted_names(&real)?;
        for name in children {
            let child = dir_path.join(crate::dir::component(&name));
            if !self.touched.contains(&child) {
                remove_all_at(&real, OsStr::from_bytes(name.to_bytes()))?;
            } else if file_type_at(&real, OsStr::from_bytes(name.to_bytes()))?
                == Some(FileType::Directory)
            {
                let sub = crate::dir::open_dir(&real, name.as_c_str())?;
                self.hide_untouched(&sub, &child)?;
            }
        }
        Ok(())
    }

    fn set_dir_times(&mut self) -> Result<(), ApplyError> {
        for (path, mtime) in std::mem::take(&mut self.dir_times) {
            let at = |source: io::Error| ApplyError::Entry {
                path: path.clone(),
                source,
            };
            let (parent, name) = split(&path);
            let name = name.expect("directories with a time have a name");
            // A later whiteout may have removed it, or a later entry replaced a parent of it
            // by a file.
            let gone = |e: &io::Error| {
                e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
            };
            let dir = match self.root.dir(parent) {
                Err(e) if gone(&e) => continue,
                other => other.map_err(at)?,
            };
            match set_mtime(&dir, name, mtime) {
                Err(e) if gone(&e) => {}
                other => other.map_err(at)?,
            }
        }
        Ok(())
    }
}

/// An existing directory takes the layer's xattrs: those the layer does not list go (overlay's
/// own markers stay, they are not the layer's to set).
fn drop_stale_xattrs(dir: &OwnedFd, name: &OsStr, keep: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    let target = proc_path(dir, name);
    for existing in xattr::list(&target)? {
        let listed = keep.iter().any(|(k, _)| *k == existing);
        if !listed && !conventions::is_overlay_xattr(&existing) && existing != b"security.selinux" {
            xattr::remove(&target, &existing)?;
        }
    }
    Ok(())
}

fn split(path: &Path) -> (&Path, Option<&OsStr>) {
    (path.parent().unwrap_or(Path::new("")), path.file_name())
}

/// Sets atime and mtime of `name` in `dir` to `mtime`, not following a symlink.
///
/// # References
/// - [`utimensat(2)`](https://man7.org/linux/man-pages/man2/utimensat.2.html)
fn set_mtime(dir: impl AsFd, name: &OsStr, mtime: i64) -> io::Result<()> {
    let time = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

fn attrs(header: &Header) -> Attrs {
    Attrs {
        mode: header.mode,
        uid: header.uid,
        gid: header.gid,
        mtime: header.mtime.sec,
        xattrs: header
            .xattrs
            .iter()
            .filter(|(name, _)| !conventions::is_overlay_xattr(name))
            .cloned()
            .collect(),
    }
}

/// Copies the entry's data into `file`, turning every all-zero 64 KiB run into a hole; returns
/// the bytes written.
fn write_sparse(file: &mut File, data: &mut impl Read, buf: &mut [u8]) -> io::Result<u64> {
    let mut len = 0u64;
    let mut hole = false;
    loop {
        let n = read_full(data, buf)?;
        if n == 0 {
            break;
        }
        if n == buf.len() && buf.iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(n as i64))?;
            hole = true;
        } else {
            file.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    if hole {
        file.set_len(len)?;
    }
    Ok(len)
}

fn read_full(data: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

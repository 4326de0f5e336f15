//! One entry's metadata, read relative to its directory with one `lstat` (plus `readlink` and the
//! xattr list), and the rule that decides whether two entries differ.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Stat};
use strata_cow::conventions;

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A unix socket (never written into a layer).
    Socket,
}

impl FileKind {
    fn from_mode(mode: u32) -> FileKind {
        match FileType::from_raw_mode(mode) {
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Symlink,
            FileType::CharacterDevice => FileKind::CharDevice,
            FileType::BlockDevice => FileKind::BlockDevice,
            FileType::Fifo => FileKind::Fifo,
            FileType::Socket => FileKind::Socket,
            _ => FileKind::File,
        }
    }
}

/// A modification time with nanoseconds.
pub type Time = conventions::Time;

/// Everything a diff compares and a layer records about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The entry's type.
    pub kind: FileKind,
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node (0 otherwise).
    pub rdev: u64,
    /// Size in bytes of a regular file (0 otherwise).
    pub size: u64,
    /// Modification time.
    pub mtime: Time,
    /// Device of the inode, with `ino` the identity of a hardlink group.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Number of hardlinks.
    pub nlink: u64,
    /// Target of a symlink.
    pub link_target: Option<Vec<u8>>,
    /// Extended attributes, sorted by name, without overlay's own (`*.overlay.*`).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Overlay's own attributes (only ever read from an upper dir or a lower layer).
    pub(crate) overlay_xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    /// Reads the metadata of `name` inside the directory `dir`; `path` gives its full path, needed
    /// only on kernels that cannot read xattrs relative to `dir`.
    pub(crate) fn load(
        dir: impl AsFd,
        name: &CStr,
        path: impl FnOnce() -> PathBuf,
    ) -> io::Result<Meta> {
        let stat = rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)?;
        let mut meta = Meta::from_stat(&stat);
        if meta.kind == FileKind::Symlink {
            let target = rustix::fs::readlinkat(dir.as_fd(), name, Vec::new())?;
            meta.link_target = Some(target.into_bytes());
        }
        let (overlay, own) = strata_cow::xattr::all_at(dir.as_fd(), name, path)?
            .into_iter()
            .partition(|(name, _)| conventions::is_overlay_xattr(name));
        meta.xattrs = own;
        meta.overlay_xattrs = overlay;
        Ok(meta)
    }

    fn from_stat(stat: &Stat) -> Meta {
        let kind = FileKind::from_mode(stat.st_mode);
        Meta {
            kind,
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            rdev: if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
                stat.st_rdev
            } else {
                0
            },
            size: if kind == FileKind::File {
                stat.st_size as u64
            } else {
                0
            },
            mtime: Time {
                sec: stat.st_mtime,
                nsec: stat.st_mtime_nsec as u32,
            },
            dev: stat.st_dev,
            ino: stat.st_ino,
            nlink: stat.st_nlink,
            link_target: None,
            xattrs: Vec::new(),
            overlay_xattrs: Vec::new(),
        }
    }

    /// The value of overlay attribute `name` (full name, e.g. `trusted.overlay.opaque`).
    pub(crate) fn overlay_xattr(&self, name: &[u8]) -> Option<&[u8]> {
        self.overlay_xattrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// What the metadata alone says about two entries at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Same,
    Changed,
    /// Regular files whose metadata matches but whose mtime cannot vouch for the content.
    CompareContent,
}

/// Compares two entries' metadata. `force_content` asks for a content check of every pair of
/// regular files whose metadata matches.
pub(crate) fn compare(old: &Meta, new: &Meta, force_content: bool) -> Verdict {
    if old.dev == new.dev && old.ino == new.ino {
        // The very same inode (hardlinked trees, a shared lower): nothing can differ.
        return Verdict::Same;
    }
    if old.kind != new.kind
        || old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || old.rdev != new.rdev
        || old.size != new.size
        || old.link_target != new.link_target
        || old.xattrs != new.xattrs
        || old.mtime.sec != new.mtime.sec
    {
        return Verdict::Changed;
    }
    // A zero nanosecond field may be a truncated time (tar, some copies): the same second
    // then proves nothing, so regular files are compared by content.
    let truncated = old.mtime.nsec == 0 || new.mtime.nsec == 0;
    if !truncated && old.mtime.nsec != new.mtime.nsec {
        return Verdict::Changed;
    }
    if new.kind == FileKind::File && (truncated || force_content) {
        return Verdict::CompareContent;
    }
    Verdict::Same
}

//! Overlayfs's on-disk format: whiteouts, opaque directories, `redirect` and `metacopy` xattrs,
//! and the metadata-only stubs the layer store materializes, in both xattr namespaces.
//!
//! Everything here works on paths and never follows a final symlink.
//!
//! # Xwhiteouts, as Linux 6.7+ reads them (checked by this crate's tests)
//! An xwhiteout (an empty regular file carrying `overlay.whiteout`) counts only in a lower
//! layer. Lookups honour it wherever it is, but `readdir` hides it (and the lower entry it
//! covers) only when the directory holding it is marked `overlay.opaque=x`; that includes the
//! layer's root dir when the xwhiteout sits at the top. No other marker on the layer root is
//! needed (an early 6.7 draft wanted one; the released rule is per directory).
//! [`create_xwhiteout`] writes both the file and the marker.
//!
//! # Whiteouts that hide nothing
//! A whiteout in a lower dir that merges with no dir below it (nothing of that name in a
//! lower layer) is still listed by `readdir`, while every lookup of it fails with `ENOENT`
//! (Linux 6.18, checked by this crate's tests). Layers should not carry such whiteouts; the
//! copy-on-write fallback simply leaves them out.
//!
//! # References
//! - [overlayfs.rst](https://docs.kernel.org/filesystems/overlayfs.html)

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{CWD, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};

use crate::xattr;

/// The name prefix that marks a whiteout in an OCI layer tar: `.wh.<name>` hides `<name>` of
/// the layers below.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The name that marks its directory opaque in an OCI layer tar: nothing of the layers below
/// shows through it.
pub const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";

/// Which xattr namespace carries overlay's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `trusted.overlay.*`: needs `CAP_SYS_ADMIN`; what a mount by root reads.
    Trusted,
    /// `user.overlay.*`: what a mount with `userxattr` (rootless) reads.
    User,
}

/// An overlay attribute, named in a [`Namespace`] by [`Namespace::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attr {
    /// `overlay.opaque`: `y` hides lower dirs, `x` marks a lower dir holding xwhiteouts.
    Opaque,
    /// `overlay.whiteout`: on an empty regular file, makes it an xwhiteout.
    Whiteout,
    /// `overlay.redirect`: where the lower object of this entry really lives.
    Redirect,
    /// `overlay.metacopy`: the file carries metadata only; data comes from a lower layer.
    Metacopy,
}

impl Namespace {
    /// Both namespaces, `trusted.` first.
    pub const ALL: [Namespace; 2] = [Namespace::Trusted, Namespace::User];

    /// The full xattr name of `attr` in this namespace, e.g. `trusted.overlay.opaque`.
    pub fn name(self, attr: Attr) -> &'static [u8] {
        match (self, attr) {
            (Namespace::Trusted, Attr::Opaque) => b"trusted.overlay.opaque",
            (Namespace::Trusted, Attr::Whiteout) => b"trusted.overlay.whiteout",
            (Namespace::Trusted, Attr::Redirect) => b"trusted.overlay.redirect",
            (Namespace::Trusted, Attr::Metacopy) => b"trusted.overlay.metacopy",
            (Namespace::User, Attr::Opaque) => b"user.overlay.opaque",
            (Namespace::User, Attr::Whiteout) => b"user.overlay.whiteout",
            (Namespace::User, Attr::Redirect) => b"user.overlay.redirect",
            (Namespace::User, Attr::Metacopy) => b"user.overlay.metacopy",
        }
    }
}

/// True for an xattr name that belongs to overlay itself (in either namespace), which must never
/// travel into a layer tar or be copied between layers.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// How a whiteout is written on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhiteoutStyle {
    /// A character device with device number 0:0: the kernel's own form, valid in any layer.
    CharDevice,
    /// An empty regular file with `overlay.whiteout` (an "xwhiteout"): only honoured in a lower
    /// layer, inside a directory whose `overlay.opaque` is `x` (see [`Opacity::Xwhiteouts`]).
    Xattr(Namespace),
}

/// The `overlay.opaque` state of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opacity {
    /// No marker: the directory merges with the ones below it.
    Transparent,
    /// `y`: the directory hides every lower directory of the same path.
    Opaque,
    /// `x`: the directory merges, and holds xwhiteouts the kernel must look for.
    Xwhiteouts,
}

/// Whether the entry at `path` (whose `lstat` is `meta`) is a whiteout, and of which style.
///
/// An [`WhiteoutStyle::Xattr`] answer only means the file carries the marker; the kernel honours
/// it only when the parent is marked [`Opacity::Xwhiteouts`].
pub fn whiteout_style(
    path: &Path,
    meta: &Metadata,
    ns: Namespace,
) -> io::Result<Option<WhiteoutStyle>> {
    if meta.file_type().is_char_device() && meta.rdev() == 0 {
        return Ok(Some(WhiteoutStyle::CharDevice));
    }
    if meta.file_type().is_file()
        && meta.len() == 0
        && xattr::get(path, ns.name(Attr::Whiteout))?.is_some()
    {
        return Ok(Some(WhiteoutStyle::Xattr(ns)));
    }
    Ok(None)
}

/// Creates a whiteout at `path`, which must not exist.
///
/// # References
/// - [`mknodat(2)`](https://man7.org/linux/man-pages/man2/mknodat.2.html)
pub fn create_whiteout(path: &Path, style: WhiteoutStyle) -> io::Result<()> {
    match style {
        WhiteoutStyle::CharDevice => {
            rustix::fs::mknodat(CWD, path, FileType::CharacterDevice, Mode::empty(), 0)?;
        }
        WhiteoutStyle::Xattr(ns) => {
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            drop(rustix::fs::openat(CWD, path, flags, Mode::empty())?);
            xattr::set(path, ns.name(Attr::Whiteout), b"")?;
        }
    }
    Ok(())
}

/// Creates an xwhiteout at `path` (which must not exist) for a lower layer, and marks its
/// parent `overlay.opaque=x` so that `readdir` hides it too (see the module docs). A parent that
/// is already opaque (`y`) keeps its marker: nothing below it shows anyway.
pub fn create_xwhiteout(path: &Path, ns: Namespace) -> io::Result<()> {
    create_whiteout(path, WhiteoutStyle::Xattr(ns))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if opacity(parent, ns)? == Opacity::Transparent {
        set_opacity(parent, ns, Opacity::Xwhiteouts)?;
    }
    Ok(())
}

/// The `overlay.opaque` state of the directory at `path`.
pub fn opacity(path: &Path, ns: Namespace) -> io::Result<Opacity> {
    Ok(match xattr::get(path, ns.name(Attr::Opaque))?.as_deref() {
        Some(b"y") => Opacity::Opaque,
        Some(b"x") => Opacity::Xwhiteouts,
        _ => Opacity::Transparent,
    })
}

/// Marks the directory at `path` with `opacity` (a no-op for [`Opacity::Transparent`]).
pub fn set_opacity(path: &Path, ns: Namespace, opacity: Opacity) -> io::Result<()> {
    let value: &[u8] = match opacity {
        Opacity::Transparent => return Ok(()),
        Opacity::Opaque => b"y",
        Opacity::Xwhiteouts => b"x",
    };
    xattr::set(path, ns.name(Attr::Opaque), value)
}

/// The `overlay.redirect` target of `path`, if it has one.
pub fn redirect(path: &Path, ns: Namespace) -> io::Result<Option<Vec<u8>>> {
    xattr::get(path, ns.name(Attr::Redirect))
}

/// Whether `path` is a metadata-only copy whose data lives in a lower layer.
pub fn is_metacopy(path: &Path, ns: Namespace) -> io::Result<bool> {
    Ok(xattr::get(path, ns.name(Attr::Metacopy))?.is_some())
}

/// A point in time with nanoseconds, as stored in an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Time {
    /// Seconds since the Unix epoch.
    pub sec: i64,
    /// Nanoseconds within the second.
    pub nsec: u32,
}

/// The metadata of a metadata-only stub: everything of a regular file but its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub<'a> {
    /// Apparent size; the stub stays sparse.
    pub size: u64,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Time,
    /// The file's own xattrs, set before the overlay markers; overlay names are refused.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
    /// Absolute path of the data inside the data-only lower, e.g. `/ab/cdef…`.
    pub redirect: &'a [u8],
}

/// Creates a metadata-only stub at `path` (which must not exist): a sparse file with the stub's
/// size, owner, xattrs, mode and times, marked `trusted.overlay.metacopy` and
/// `trusted.overlay.redirect`, so that an overlay with the objects dir as a data-only lower
/// (`redirect_dir=follow`) shows the stub's metadata and the object's bytes.
///
/// Needs `CAP_SYS_ADMIN` for the `trusted.` markers; `userxattr` mounts cannot follow redirects.
pub fn create_metacopy_stub(path: &Path, stub: &Stub<'_>) -> io::Result<()> {
    if let Some((name, _)) = stub.xattrs.iter().find(|(name, _)| is_overlay_xattr(name)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "stub xattr {:?} is reserved for overlay",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = stub.mode & 0o7777;
    let fd = rustix::fs::openat(CWD, path, flags, Mode::from_raw_mode(mode))?;
    rustix::fs::ftruncate(&fd, stub.size)?;
    // Most stubs are created with their final owner and mode (root's files, the usual umask):
    // one fstat saves a chown and a chmod, each an inode update in the journal.
    let created = rustix::fs::fstat(&fd)?;
    let owned = created.st_uid == stub.uid && created.st_gid == stub.gid;
    // chown clears setuid/setgid, so ownership goes first and the mode last.
    if !owned {
        rustix::fs::fchown(
            &fd,
            Some(Uid::from_raw(stub.uid)),
            Some(Gid::from_raw(stub.gid)),
        )?;
    }
    for (name, value) in stub.xattrs {
        xattr::set_fd(&fd, name, value)?;
    }
    xattr::set_fd(&fd, Namespace::Trusted.name(Attr::Metacopy), b"")?;
    xattr::set_fd(&fd, Namespace::Trusted.name(Attr::Redirect), stub.redirect)?;
    if !owned || created.st_mode & 0o7777 != mode {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    }
    let time = Timespec {
        tv_sec: stub.mtime.sec,
        tv_nsec: stub.mtime.nsec.into(),
    };
    rustix::fs::futimens(
        &fd,
        &Timestamps {
            last_access: time,
            last_modification: time,
        },
    )?;
    Ok(())
}

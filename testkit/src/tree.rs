//! A directory tree read into a map (relative path → [`Node`]), to compare two trees, or a tree
//! with a model, entry by entry.
//!
//! Every entry records its kind with its content (a file's bytes, a link's target, a device's
//! number), its permission bits and its owner; [`Options`] adds what only some tests compare:
//! extended attributes, modification times, hard-link groups, the root itself.
//!
//! ```
//! use strata_testkit::tree::{self, Mtime, Options};
//!
//! let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
//! std::fs::write(a.path().join("f"), "x").unwrap();
//! tree::copy(a.path(), b.path());
//! let options = Options::default().with_mtime(Mtime::Nanos).with_links();
//! tree::assert_same(
//!     &tree::snapshot(b.path(), &options),
//!     &tree::snapshot(a.path(), &options),
//! );
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Every entry of a tree, by path relative to its root (the root itself is `""`).
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// What a path holds: its kind, with the content that kind has.
#[derive(Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory (its entries are entries of their own).
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symbolic link and its target.
    Symlink(PathBuf),
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device and its device number.
    CharDevice(u64),
    /// A block device and its device number.
    BlockDevice(u64),
}

/// Shows a long file by its length and digest, so that a failed comparison stays readable.
impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::File(bytes) if bytes.len() <= 64 => {
                write!(f, "File(b\"{}\")", bytes.escape_ascii())
            }
            Kind::File(bytes) => {
                let digest = hex::encode(Sha256::digest(bytes));
                write!(f, "File({} bytes, sha256 {})", bytes.len(), &digest[..16])
            }
            Kind::Dir => f.write_str("Dir"),
            Kind::Symlink(target) => write!(f, "Symlink({target:?})"),
            Kind::Fifo => f.write_str("Fifo"),
            Kind::Socket => f.write_str("Socket"),
            Kind::CharDevice(rdev) => write!(f, "CharDevice({rdev:#x})"),
            Kind::BlockDevice(rdev) => write!(f, "BlockDevice({rdev:#x})"),
        }
    }
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its kind and content.
    pub kind: Kind,
    /// Its permission bits, with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Its owner: (uid, gid).
    pub owner: (u32, u32),
    /// Its extended attributes that [`Options::with_xattrs`] asks for, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Its modification time (seconds, nanoseconds), when [`Options::with_mtime`] asks for it.
    pub mtime: Option<(i64, i64)>,
    /// With [`Options::with_links`], for a file that shares its inode with other paths of the
    /// tree: the first of those paths (in sorted order, maybe its own), which names the group.
    pub link: Option<PathBuf>,
}

/// Which extended attributes a snapshot records.
#[derive(Debug, Clone, Copy, Default)]
pub enum Xattrs {
    /// None.
    #[default]
    Ignore,
    /// All of them.
    All,
    /// Those whose name the function accepts.
    Matching(fn(&[u8]) -> bool),
}

/// How much of the modification times a snapshot records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mtime {
    /// None.
    #[default]
    Ignore,
    /// Whole seconds (what a tar keeps).
    Seconds,
    /// Seconds and nanoseconds.
    Nanos,
}

/// What a snapshot records beyond kind, content, mode and owner; by default nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    xattrs: Xattrs,
    mtime: Mtime,
    links: bool,
    root: bool,
}

impl Options {
    /// Records the extended attributes `xattrs` names.
    pub fn with_xattrs(mut self, xattrs: Xattrs) -> Options {
        self.xattrs = xattrs;
        self
    }

    /// Records modification times as `mtime` says.
    pub fn with_mtime(mut self, mtime: Mtime) -> Options {
        self.mtime = mtime;
        self
    }

    /// Records which files are hard links of each other ([`Node::link`]).
    pub fn with_links(mut self) -> Options {
        self.links = true;
        self
    }

    /// Records the root directory too, as path `""`.
    pub fn with_root(mut self) -> Options {
        self.root = true;
        self
    }
}

/// Every entry under `root`, as `options` says; panics (naming the path) when one cannot be
/// read.
pub fn snapshot(root: &Path, options: &Options) -> Snapshot {
    let mut out = Snapshot::new();
    let mut inodes: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Overlay lists a whiteout that sits in a lower dir merging with nothing, yet no
            // lookup finds it: it is not there for a reader.
            Err(e) if e.kind() == io::ErrorKind::NotFound && path != root => continue,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        let rel = path
            .strip_prefix(root)
            .expect("under the root")
            .to_path_buf();
        let kind = kind(&path, &meta);
        if kind == Kind::Dir {
            let entries = fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            stack.extend(entries.map(|e| e.unwrap().path()));
        }
        if path == root && !options.root {
            continue;
        }
        if options.links && meta.is_file() && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .insert(rel.clone());
        }
        let node = Node {
            kind,
            mode: meta.mode() & 0o7777,
            owner: (meta.uid(), meta.gid()),
            xattrs: xattrs(&path, options.xattrs),
            mtime: match options.mtime {
                Mtime::Ignore => None,
                Mtime::Seconds => Some((meta.mtime(), 0)),
                Mtime::Nanos => Some((meta.mtime(), meta.mtime_nsec())),
            },
            link: None,
        };
        out.insert(rel, node);
    }
    for group in inodes.into_values().filter(|g| g.len() > 1) {
        let first = group.first().expect("a group has members").clone();
        for path in group {
            out.get_mut(&path).expect("walked").link = Some(first.clone());
        }
    }
    out
}

/// The kind and content of `path`, whose metadata is `meta`.
fn kind(path: &Path, meta: &fs::Metadata) -> Kind {
    let ft = meta.file_type();
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File(fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    } else if ft.is_symlink() {
        Kind::Symlink(fs::read_link(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::CharDevice(meta.rdev())
    } else {
        Kind::BlockDevice(meta.rdev())
    }
}

/// The extended attributes of `path` (not following a symlink) that `which` names, by name.
fn xattrs(path: &Path, which: Xattrs) -> Vec<(Vec<u8>, Vec<u8>)> {
    let keep: fn(&[u8]) -> bool = match which {
        Xattrs::Ignore => return Vec::new(),
        Xattrs::All => |_| true,
        Xattrs::Matching(keep) => keep,
    };
    let list = match read_sized(
        || rustix::fs::llistxattr_query(path),
        |buf| rustix::fs::llistxattr(path, buf),
    ) {
        Ok(list) => list,
        Err(rustix::io::Errno::NOTSUP) => return Vec::new(),
        Err(e) => panic!("{}: listxattr: {e}", path.display()),
    };
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty() && keep(n)) {
        let name = std::ffi::OsStr::from_bytes(name);
        match read_sized(
            || rustix::fs::lgetxattr_query(path, name),
            |buf| rustix::fs::lgetxattr(path, name, buf),
        ) {
            Ok(value) => out.push((name.as_encoded_bytes().to_vec(), value)),
            // Removed between the list and the read: gone.
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => panic!("{}: getxattr {name:?}: {e}", path.display()),
        }
    }
    out.sort();
    out
}

/// Reads a value of a size `query` tells with `read`, again if it grew in between.
fn read_sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    loop {
        let mut buf = vec![0; query()?];
        match read(&mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Asserts that two snapshots are equal, naming every entry that differs and how.
#[track_caller]
pub fn assert_same(got: &Snapshot, want: &Snapshot) {
    let paths: BTreeSet<&PathBuf> = got.keys().chain(want.keys()).collect();
    let diffs: Vec<String> = paths
        .into_iter()
        .filter(|path| got.get(*path) != want.get(*path))
        .map(|path| {
            let (g, w) = (got.get(path), want.get(path));
            format!("{}:\n  got  {g:?}\n  want {w:?}", path.display())
        })
        .collect();
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

/// Copies everything under `from` into the existing directory `to` with `cp -a`: content,
/// modes, owners, times, extended attributes and hard links, and `from`'s own metadata onto
/// `to`.
pub fn copy(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .output()
        .expect("cp runs");
    assert!(
        out.status.success(),
        "cp -a {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// `f` (mode 0600), `d/`, `d/g` a hard link of `f`, `l` a symlink to `f`.
    fn sample() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("f"), "x").unwrap();
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir(root.join("d")).unwrap();
        fs::hard_link(root.join("f"), root.join("d/g")).unwrap();
        symlink("f", root.join("l")).unwrap();
        dir
    }

    #[test]
    fn records_kind_content_mode_and_links_as_asked() {
        let dir = sample();
        let plain = snapshot(dir.path(), &Options::default());
        let paths: Vec<&Path> = plain.keys().map(PathBuf::as_path).collect();
        assert_eq!(
            paths,
            [
                Path::new("d"),
                Path::new("d/g"),
                Path::new("f"),
                Path::new("l")
            ]
        );
        let f = &plain[Path::new("f")];
        assert_eq!(
            (&f.kind, f.mode, f.link.as_ref()),
            (&Kind::File(b"x".to_vec()), 0o600, None)
        );
        assert_eq!(plain[Path::new("l")].kind, Kind::Symlink("f".into()));
        assert_eq!(plain[Path::new("d")].kind, Kind::Dir);
        assert_eq!(plain[Path::new("f")].mtime, None);

        let full = snapshot(
            dir.path(),
            &Options::default()
                .with_links()
                .with_root()
                .with_mtime(Mtime::Nanos),
        );
        assert_eq!(full[Path::new("f")].link.as_deref(), Some(Path::new("d/g")));
        assert_eq!(
            full[Path::new("d/g")].link.as_deref(),
            Some(Path::new("d/g"))
        );
        assert_eq!(full[Path::new("")].kind, Kind::Dir);
        assert!(full[Path::new("f")].mtime.is_some());
    }

    #[test]
    fn copies_compare_the_same_and_a_changed_mode_does_not() {
        let (dir, copied) = (sample(), tempfile::tempdir().unwrap());
        copy(dir.path(), copied.path());
        let options = Options::default().with_links().with_mtime(Mtime::Nanos);
        let want = snapshot(dir.path(), &options);
        assert_same(&snapshot(copied.path(), &options), &want);

        let f = copied.path().join("f");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let got = snapshot(copied.path(), &options);
        let message = std::panic::catch_unwind(|| assert_same(&got, &want))
            .expect_err("the modes differ")
            .downcast::<String>()
            .unwrap();
        // Both links of the changed inode, and nothing else.
        assert!(
            message.contains("d/g:") && message.contains("\nf:"),
            "{message}"
        );
        assert!(!message.contains("\nl:"), "{message}");
    }
}

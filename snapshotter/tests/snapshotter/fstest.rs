//! Trees built by code and compared by content, in the manner of continuity's `fstest`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use strata_testkit::tree;

/// One change to a tree; paths are relative to its root.
#[derive(Debug, Clone)]
pub enum Op {
    File(&'static str, Vec<u8>, u32),
    Dir(&'static str, u32),
    RemoveAll(&'static str),
    Chown(&'static str, u32, u32),
    Rename(&'static str, &'static str),
    Link(&'static str, &'static str),
    /// Sets a path's mtime (seconds, nanoseconds) without following symlinks.
    Mtime(&'static str, i64, i64),
}

pub fn file(path: &'static str, data: impl AsRef<[u8]>, mode: u32) -> Op {
    Op::File(path, data.as_ref().to_vec(), mode)
}

/// A list of ops applied in order.
pub type Applier = Vec<Op>;

pub fn apply(root: &Path, ops: &[Op]) -> std::io::Result<()> {
    for op in ops {
        match op {
            Op::File(p, data, mode) => {
                let path = root.join(p);
                fs::write(&path, data)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
            }
            Op::Dir(p, mode) => {
                let path = root.join(p);
                fs::create_dir(&path)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
            }
            Op::RemoveAll(p) => match fs::symlink_metadata(root.join(p)) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(root.join(p))?,
                Ok(_) => fs::remove_file(root.join(p))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            Op::Chown(p, uid, gid) => {
                std::os::unix::fs::lchown(root.join(p), Some(*uid), Some(*gid))?
            }
            Op::Rename(from, to) => fs::rename(root.join(from), root.join(to))?,
            Op::Link(from, to) => fs::hard_link(root.join(from), root.join(to))?,
            Op::Mtime(p, secs, nanos) => {
                let t = rustix::fs::Timespec {
                    tv_sec: *secs,
                    tv_nsec: *nanos,
                };
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    root.join(p),
                    &rustix::fs::Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
        }
    }
    Ok(())
}

/// Panics naming every entry in which `actual` differs from `expected` (the roots aside): kind
/// and content, mode, owner, hard-link groups.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let options = tree::Options::default().with_links();
    tree::assert_same(
        &tree::snapshot(actual, &options),
        &tree::snapshot(expected, &options),
    );
}

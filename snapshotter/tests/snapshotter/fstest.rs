//! Trees built by code and compared by content, in the manner of continuity's `fstest`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

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

/// What is compared of each entry (the root itself is not).
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: Vec<u8>,
    /// Other paths of the tree sharing this inode (hardlinks).
    links: Vec<String>,
}

fn manifest(root: &Path) -> BTreeMap<String, Entry> {
    let mut by_inode: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let (kind, content) = if meta.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else if meta.file_type().is_symlink() {
                (
                    "symlink",
                    fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if meta.is_file() {
                ("file", fs::read(&path).unwrap())
            } else {
                ("other", meta.rdev().to_le_bytes().to_vec())
            };
            if meta.is_file() && meta.nlink() > 1 {
                by_inode.entry(meta.ino()).or_default().push(rel.clone());
            }
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    content,
                    links: Vec::new(),
                },
            );
        }
    }
    for group in by_inode.into_values().filter(|g| g.len() > 1) {
        for path in &group {
            let mut others: Vec<String> = group.iter().filter(|p| *p != path).cloned().collect();
            others.sort();
            out.get_mut(path).unwrap().links = others;
        }
    }
    out
}

/// Panics with the first difference between two trees.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (want, got) = (manifest(expected), manifest(actual));
    for (path, entry) in &want {
        assert_eq!(Some(entry), got.get(path), "{path} in {}", actual.display());
    }
    let extra: Vec<&String> = got.keys().filter(|p| !want.contains_key(*p)).collect();
    assert!(
        extra.is_empty(),
        "unexpected entries in {}: {extra:?}",
        actual.display()
    );
}

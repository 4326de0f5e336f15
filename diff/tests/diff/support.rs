//! Helpers shared by the test modules: diffs run both ways, tree snapshots, layer building.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
use strata_diff::{ChangeSet, ContentCheck, DiffOptions, Threads};

/// `changes(old, new)` run sequentially and on a 4-thread pool; asserts both agree.
pub fn both(old: &Path, new: &Path, content: ContentCheck) -> ChangeSet {
    let seq = strata_diff::changes(
        old,
        new,
        &DiffOptions::default()
            .with_content(content)
            .with_threads(Threads::Sequential),
    )
    .expect("sequential diff");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let par = pool
        .install(|| {
            strata_diff::changes(
                old,
                new,
                &DiffOptions::default()
                    .with_content(content)
                    .with_threads(Threads::Rayon),
            )
        })
        .expect("parallel diff");
    assert_eq!(seq, par, "sequential and parallel diffs differ");
    seq
}

/// `A path` / `M path` / `D path` lines of a change set.
pub fn lines(set: &ChangeSet) -> Vec<String> {
    set.changes
        .iter()
        .map(|c| format!("{} {}", c.kind.letter(), c.path.display()))
        .collect()
}

/// Sets the mtime (and atime) of `path` without following a symlink.
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Everything a layer must carry about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub rdev: u64,
    pub target: Option<Vec<u8>>,
    /// sha256 of a regular file's bytes.
    pub content: Option<String>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first path (in sorted order) of this entry's hardlink group, if it has one.
    pub link_group: Option<PathBuf>,
}

/// Every entry below `root` (not the root itself), keyed by relative path.
pub fn state(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    let mut first: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut links = BTreeMap::new();
    for path in out.keys() {
        let meta = fs::symlink_metadata(root.join(path)).unwrap();
        if meta.is_file() && meta.nlink() > 1 {
            let group = first
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| path.clone());
            links.insert(path.clone(), group.clone());
        }
    }
    for (path, group) in links {
        out.get_mut(&path).unwrap().link_group = Some(group);
    }
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let full = root.join(&path);
        let meta = fs::symlink_metadata(&full).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "other"
        };
        let xattrs = strata_cow::xattr::all(&full)
            .unwrap()
            .into_iter()
            .filter(|(n, _)| n.as_slice() != b"security.selinux")
            .collect();
        out.insert(
            path.clone(),
            Node {
                kind: kind.into(),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
                rdev: if ft.is_char_device() || ft.is_block_device() {
                    meta.rdev()
                } else {
                    0
                },
                target: ft.is_symlink().then(|| {
                    fs::read_link(&full)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec()
                }),
                content: ft.is_file().then(|| {
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                        fs::read(&full).unwrap(),
                    ))
                }),
                xattrs,
                link_group: None,
            },
        );
        if ft.is_dir() {
            walk(root, &path, out);
        }
    }
}

pub use strata_testkit::can_mount;

/// A raw tar built entry by entry, with names written verbatim (hostile ones included).
#[derive(Default)]
pub struct RawTar {
    builder: Option<tar::Builder<Vec<u8>>>,
}

/// The type of a [`RawTar`] entry.
pub enum Raw<'a> {
    File(&'a [u8]),
    Dir,
    Symlink(&'a [u8]),
    Hardlink(&'a [u8]),
    Fifo,
    Char(u32, u32),
}

impl RawTar {
    pub fn new() -> Self {
        RawTar {
            builder: Some(tar::Builder::new(Vec::new())),
        }
    }

    /// Appends an entry named `name` (verbatim, ≤ 100 bytes) with mode 0644/0755.
    pub fn add(mut self, name: &[u8], kind: Raw<'_>) -> Self {
        self.add_with(name, kind, |_| {});
        self
    }

    /// Appends PAX records, which apply to the next entry.
    pub fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.builder
            .as_mut()
            .unwrap()
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    pub fn add_with(&mut self, name: &[u8], kind: Raw<'_>, edit: impl FnOnce(&mut tar::Header)) {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        let mut data: &[u8] = &[];
        match kind {
            Raw::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                data = d;
            }
            Raw::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
            }
            Raw::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                set_field(&mut h.as_old_mut().linkname, t);
            }
            Raw::Hardlink(t) => {
                h.set_entry_type(tar::EntryType::Link);
                set_field(&mut h.as_old_mut().linkname, t);
            }
            Raw::Fifo => h.set_entry_type(tar::EntryType::Fifo),
            Raw::Char(major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(major).unwrap();
                h.set_device_minor(minor).unwrap();
            }
        }
        h.set_size(data.len() as u64);
        set_field(&mut h.as_old_mut().name, name);
        edit(&mut h);
        h.set_cksum();
        self.builder.as_mut().unwrap().append(&h, data).unwrap();
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.builder.take().unwrap().into_inner().unwrap()
    }
}

fn set_field(field: &mut [u8], value: &[u8]) {
    assert!(value.len() <= field.len(), "raw names fit the field");
    field.fill(0);
    field[..value.len()].copy_from_slice(value);
}

/// Asserts two tree states are equal, naming only the entries that differ.
#[track_caller]
pub fn assert_same_tree(got: &BTreeMap<PathBuf, Node>, want: &BTreeMap<PathBuf, Node>) {
    let mut diffs = Vec::new();
    for path in got
        .keys()
        .chain(want.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (got.get(path), want.get(path)) {
            (Some(g), Some(w)) if g == w => {}
            (g, w) => diffs.push(format!("{}:\n  got  {g:?}\n  want {w:?}", path.display())),
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

//! Helpers shared by the test modules: diffs run both ways, tree snapshots, layer building.

use std::path::Path;

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
use strata_diff::{ChangeSet, ContentCheck, DiffOptions, Threads};
use strata_testkit::tree::{self, Mtime, Options, Snapshot, Xattrs};

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

/// Every entry below `root` (not the root itself), keyed by relative path, with everything a
/// layer must carry about it: kind and content, mode, owner, mtime (whole seconds, as tar keeps
/// them), xattrs but SELinux's label (the machine's, not the layer's), hard-link groups.
pub fn state(root: &Path) -> Snapshot {
    let options = Options::default()
        .with_xattrs(Xattrs::Matching(|name| name != b"security.selinux"))
        .with_mtime(Mtime::Seconds)
        .with_links();
    tree::snapshot(root, &options)
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

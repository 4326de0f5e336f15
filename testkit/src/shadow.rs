//! A power cut, modelled: a shadow disk that holds only what was flushed.
//!
//! The page cache survives SIGKILL, so a crash test that kills a process passes even with every
//! fsync removed. [`ShadowDisk`] sees every flush of a store instead (through the stores'
//! sync seam) and keeps, beside the real tree, the durable state a disk would have after a power
//! cut, in the strict POSIX model:
//!
//! - an fsync of a file makes its bytes (and mode) durable, not its name;
//! - an fsync of a directory makes its current names durable, each pointing at whatever its
//!   inode holds durably: a file never fsynced is empty (what a rename without a data sync can
//!   leave on ext4 without `auto_da_alloc`), a directory never fsynced is empty;
//! - a `syncfs` makes the whole tree durable;
//! - a committed database transaction makes the database file (and its name) durable.
//!
//! Inodes are tracked by number, so renames and hard links behave as on a disk. Extended
//! attributes and ownership are not modelled.
//!
//! After `cut` flushes the disk stops listening: every later write is lost, and with
//! [`ShadowDisk::failing`] every later flush fails too (an I/O error, as a dying disk gives).
//! [`ShadowDisk::reboot`] writes the durable state out as a fresh directory tree, to open a
//! store on.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// What a directory entry names, as its parent's flush saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink(PathBuf),
}

#[derive(Debug, Clone)]
struct Entry {
    ino: u64,
    kind: Kind,
    mode: u32,
}

#[derive(Debug, Default)]
struct State {
    /// Flushes seen so far, including those after the cut.
    count: usize,
    /// Durable bytes and mode of each file inode.
    files: HashMap<u64, (Vec<u8>, u32)>,
    /// Durable names of each directory inode.
    dirs: HashMap<u64, BTreeMap<OsString, Entry>>,
}

/// The durable state of one tree (a store root), updated by the tree's flushes up to a cut.
#[derive(Debug)]
pub struct ShadowDisk {
    root: PathBuf,
    root_ino: u64,
    root_mode: u32,
    /// Flushes that reach the disk; `None`: all of them.
    cut: Option<usize>,
    /// Flushes after the cut fail rather than pretend to succeed.
    fail: bool,
    state: Mutex<State>,
}

impl ShadowDisk {
    /// A shadow of the tree at `root`, whose current content counts as durable already, that
    /// keeps the first `cut` flushes (all of them when `None`) and loses everything after.
    pub fn new(root: &Path, cut: Option<usize>) -> ShadowDisk {
        let meta = fs::metadata(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        let disk = ShadowDisk {
            root: root.to_owned(),
            root_ino: meta.ino(),
            root_mode: meta.mode() & 0o7777,
            cut,
            fail: false,
            state: Mutex::new(State::default()),
        };
        disk.capture_tree(&mut disk.state(), root);
        disk
    }

    /// This disk, with every flush after the cut failing with an I/O error.
    pub fn failing(mut self) -> ShadowDisk {
        self.fail = true;
        self
    }

    /// How many flushes the tree has seen, counting those after the cut.
    pub fn count(&self) -> usize {
        self.state().count
    }

    /// Counts a flush; whether it reaches the disk.
    fn take(&self, state: &mut State) -> bool {
        state.count += 1;
        self.cut.is_none_or(|cut| state.count <= cut)
    }

    /// What a flush that did not reach the disk returns.
    fn lost(&self) -> io::Result<()> {
        if self.fail {
            Err(io::Error::other("power cut (modelled)"))
        } else {
            Ok(())
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An fsync of regular file `path`.
    pub fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        if !self.take(&mut state) {
            return self.lost();
        }
        capture_file(&mut state, path);
        Ok(())
    }

    /// An fsync of directory `path`.
    pub fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        if !self.take(&mut state) {
            return self.lost();
        }
        capture_dir(&mut state, path);
        Ok(())
    }

    /// A `syncfs` of the file system holding the tree.
    pub fn syncfs(&self) -> io::Result<()> {
        let mut state = self.state();
        if !self.take(&mut state) {
            return self.lost();
        }
        self.capture_tree(&mut state, &self.root);
        Ok(())
    }

    /// A committed transaction of the database file `db`: its bytes and its name are durable,
    /// and so are those of its write-ahead log `<db>-wal` (gone when the last connection
    /// checkpointed and removed it). After the cut: lost, but the commit happened, so it
    /// cannot fail.
    pub fn committed(&self, db: &Path) {
        let mut state = self.state();
        if !self.take(&mut state) {
            return;
        }
        let parent = db.parent().expect("the database is in a directory");
        let parent_ino = stat(parent).ino();
        let name = db.file_name().expect("the database has a name").to_owned();
        let mut wal_name = name.clone();
        wal_name.push("-wal");
        for name in [name, wal_name] {
            let path = parent.join(&name);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                if let Some(names) = state.dirs.get_mut(&parent_ino) {
                    names.remove(&name);
                }
                continue;
            };
            capture_file(&mut state, &path);
            state.dirs.entry(parent_ino).or_default().insert(
                name,
                Entry {
                    ino: meta.ino(),
                    kind: Kind::File,
                    mode: meta.mode() & 0o7777,
                },
            );
        }
    }

    fn capture_tree(&self, state: &mut State, dir: &Path) {
        capture_dir(state, dir);
        for entry in read_dir(dir) {
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                self.capture_tree(state, &path);
            } else if kind.is_file() {
                capture_file(state, &path);
            }
        }
    }

    /// Writes what is durable out as a new tree at `dest` (which must not exist): the store
    /// root after a power cut and a reboot.
    pub fn reboot(&self, dest: &Path) {
        let state = self.state();
        let mut linked = HashMap::new();
        fs::create_dir(dest).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
        write_dir(&state, self.root_ino, dest, &mut linked);
        set_mode(dest, self.root_mode);
    }
}

/// Defines `struct $name(Arc<ShadowDisk>)` implementing the sync seam trait `$seam` (the layer
/// store's `SyncSeam`, named by the caller: this crate does not depend on the store) by
/// flushing into the shadow disk only; the kernel's fsync is not needed, the shadow is what
/// survives.
#[macro_export]
macro_rules! shadow_seam {
    ($name:ident, $seam:path) => {
        /// A sync seam that flushes into a shadow disk only.
        #[derive(Debug)]
        struct $name(std::sync::Arc<$crate::shadow::ShadowDisk>);

        impl $seam for $name {
            fn sync_file(
                &self,
                _file: &std::fs::File,
                path: &std::path::Path,
            ) -> std::io::Result<()> {
                self.0.sync_file(path)
            }

            fn sync_dir(
                &self,
                _dir: &std::fs::File,
                path: &std::path::Path,
            ) -> std::io::Result<()> {
                self.0.sync_dir(path)
            }

            fn syncfs(&self, _fd: &std::fs::File, _root: &std::path::Path) -> std::io::Result<()> {
                self.0.syncfs()
            }

            fn committed(&self, db: &std::path::Path) {
                self.0.committed(db);
            }
        }
    };
}

fn stat(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_dir(dir: &Path) -> Vec<fs::DirEntry> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry"))
        .collect()
}

fn capture_file(state: &mut State, path: &Path) {
    let meta = stat(path);
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    state
        .files
        .insert(meta.ino(), (bytes, meta.mode() & 0o7777));
}

fn capture_dir(state: &mut State, dir: &Path) {
    let mut entries = BTreeMap::new();
    for entry in read_dir(dir) {
        let path = entry.path();
        let meta = stat(&path);
        let kind = if meta.is_dir() {
            Kind::Dir
        } else if meta.file_type().is_symlink() {
            Kind::Symlink(fs::read_link(&path).expect("symlink target"))
        } else {
            Kind::File
        };
        entries.insert(
            entry.file_name(),
            Entry {
                ino: meta.ino(),
                kind,
                mode: meta.mode() & 0o7777,
            },
        );
    }
    state.dirs.insert(stat(dir).ino(), entries);
}

/// Writes directory inode `ino`'s durable entries into `dest`; `linked` maps file inodes
/// written already to their first path, so hard links stay links.
fn write_dir(state: &State, ino: u64, dest: &Path, linked: &mut HashMap<u64, PathBuf>) {
    let Some(entries) = state.dirs.get(&ino) else {
        return;
    };
    for (name, entry) in entries {
        let path = dest.join(name);
        match &entry.kind {
            Kind::Dir => {
                fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                write_dir(state, entry.ino, &path, linked);
                set_mode(&path, entry.mode);
            }
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            Kind::File => {
                if let Some(first) = linked.get(&entry.ino) {
                    fs::hard_link(first, &path)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    continue;
                }
                let (bytes, mode) = state
                    .files
                    .get(&entry.ino)
                    .map_or((&[][..], entry.mode), |(b, m)| (&b[..], *m));
                fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                set_mode(&path, mode);
                linked.insert(entry.ino, path);
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_flushed_survives() {
        let dir = tempfile_dir();
        let root = dir.join("root");
        fs::create_dir(&root).unwrap();
        let disk = ShadowDisk::new(&root, Some(3));
        fs::write(root.join("synced"), "data").unwrap();
        fs::write(root.join("unsynced"), "data").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/named-only"), "data").unwrap();
        disk.sync_file(&root.join("synced")).unwrap();
        disk.sync_dir(&root).unwrap();
        disk.sync_dir(&root.join("sub")).unwrap();
        // After the cut: lost.
        fs::write(root.join("late"), "data").unwrap();
        disk.sync_file(&root.join("unsynced")).unwrap();
        disk.sync_dir(&root).unwrap();
        assert_eq!(disk.count(), 5);

        let after = dir.join("after");
        disk.reboot(&after);
        assert_eq!(fs::read_to_string(after.join("synced")).unwrap(), "data");
        assert_eq!(fs::read_to_string(after.join("unsynced")).unwrap(), "");
        assert_eq!(
            fs::read_to_string(after.join("sub/named-only")).unwrap(),
            ""
        );
        assert!(!after.join("late").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rename_is_durable_with_both_directories() {
        let dir = tempfile_dir();
        let root = dir.join("root");
        fs::create_dir_all(root.join("tmp")).unwrap();
        fs::create_dir_all(root.join("objects")).unwrap();
        let disk = ShadowDisk::new(&root, None);
        fs::write(root.join("tmp/o"), "bytes").unwrap();
        disk.sync_file(&root.join("tmp/o")).unwrap();
        fs::rename(root.join("tmp/o"), root.join("objects/o")).unwrap();
        let before = dir.join("before");
        disk.reboot(&before);
        assert!(!before.join("objects/o").exists());
        disk.sync_dir(&root.join("objects")).unwrap();
        let after = dir.join("after");
        disk.reboot(&after);
        assert_eq!(
            fs::read_to_string(after.join("objects/o")).unwrap(),
            "bytes"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_disk_fails_every_flush_after_the_cut() {
        let dir = tempfile_dir();
        let disk = ShadowDisk::new(&dir, Some(1)).failing();
        disk.sync_dir(&dir).unwrap();
        assert!(disk.sync_dir(&dir).is_err());
        assert!(disk.syncfs().is_err());
        assert_eq!(disk.count(), 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "strata-shadow-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .replace(':', "_")
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}

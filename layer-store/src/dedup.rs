//! Deduplicating a tree in place: its regular files become the store's objects, moved by a
//! hard link and never copied (or dropped when the object exists), and metadata-only stubs take
//! their place, as in a layer tree materialized with [`Strategy::Stub`]. containerd's
//! extraction snapshots go through it when committed (`strata-snapshotter`).
//!
//! The order makes a crash at any point harmless (`docs/format.md`, "Deduplicating a tree"):
//! objects are staged, flushed and published before a GC root names them, and GC roots are
//! committed before any stub points at an object; the tree's files are replaced one rename at a
//! time, so each path holds either its file or its stub.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, Mode, Timespec, Timestamps};
use serde::Serialize;
use strata_cow::conventions::{self, Stub, is_overlay_xattr};
use strata_cow::xattr;

use crate::db::object_roots;
use crate::durable::Written;
use crate::error::{IoContext, StoreError};
use crate::lock::LockMode;
use crate::object::{Inserted, ObjectId, ObjectName, hash_file};
use crate::record::Strategy;
use crate::store::Store;

/// Why a tree was not deduplicated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DedupError {
    /// Stubs need root and an overlay that takes data-only lowers
    /// ([`probe_strategy`](crate::probe_strategy) is not [`Strategy::Stub`]); the tree is left
    /// as it is.
    #[error("deduplicating a tree needs metadata-only stubs: root and overlay data-only lowers")]
    StubsUnavailable,
    /// The store failed underneath (I/O, the database).
    #[error(transparent)]
    Store(Box<StoreError>),
}

/// What [`Store::dedup_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DedupReport {
    /// Regular files turned into stubs.
    pub files: u64,
    /// Of their objects, those the store did not have (the files' inodes became them).
    pub new_objects: u64,
    /// Bytes of files whose object the store had already: freed.
    pub shared_bytes: u64,
    /// Regular files left as they are: hard links, and overlay's own files (metacopy copy-ups).
    pub skipped: u64,
}

/// A regular file to turn into a stub.
struct Candidate {
    path: PathBuf,
    meta: fs::Metadata,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Store {
    /// Turns every regular file of `tree` (on the store's file system: files move by hard link
    /// and rename) into an object of the store and a metadata-only stub
    /// in its place (same mode, owner, times, xattrs and size), registering each object as
    /// needed by `owner` until [`remove_gc_roots_of`](Store::remove_gc_roots_of). Mount the tree
    /// with [`objects_dir`](Store::objects_dir) as the data-only lower afterwards. Directories
    /// keep their times; empty files, hard links and files overlay marked (metacopy copy-ups)
    /// stay as they are, so running it again on the same tree changes nothing. On return the
    /// whole tree is durable.
    ///
    /// # Errors
    /// [`DedupError::StubsUnavailable`] without root or data-only lowers. A failure part way
    /// leaves some files as stubs, each with its object published and rooted.
    pub fn dedup_tree(&self, tree: &Path, owner: &str) -> Result<DedupReport, DedupError> {
        if crate::probe_strategy() != Strategy::Stub {
            return Err(DedupError::StubsUnavailable);
        }
        Ok(self.dedup(tree, owner)?)
    }

    /// [`dedup_tree`](Store::dedup_tree), failing with the broad error.
    fn dedup(&self, tree: &Path, owner: &str) -> Result<DedupReport, StoreError> {
        // GC waits: an object found here stays until its root is committed.
        let _lock = self.lock(LockMode::Shared)?;
        let mut report = DedupReport::default();
        let mut candidates = Vec::new();
        let mut dirs = BTreeMap::new();
        scan(tree, &mut candidates, &mut dirs, &mut report)?;
        let ids: Vec<ObjectId> = candidates
            .par_iter()
            .map(|c| hash_file(&c.path))
            .collect::<Result<_, _>>()?;

        let staging = self.new_tmp_dir("dedup")?;
        let result = self.move_in(&staging, &candidates, &ids, owner, &mut report);
        let _ = fs::remove_dir_all(&staging);
        result?;

        restore_times(&dirs)?;
        // The whole tree: whoever wrote it (containerd's applier) flushed nothing.
        let mut written = Written::default();
        written.add_tree(tree)?;
        self.sync(written)?;
        report.files = candidates.len() as u64;
        Ok(report)
    }

    /// Publishes the objects of `candidates` (hashing to `ids`), roots them for `owner`, then
    /// replaces each file by its stub, made in `staging`.
    fn move_in(
        &self,
        staging: &Path,
        candidates: &[Candidate],
        ids: &[ObjectId],
        owner: &str,
        report: &mut DedupReport,
    ) -> Result<(), StoreError> {
        let mut stage = self.objects.stage(staging.join("objects"))?;
        let mut staged = Written::default();
        for (candidate, id) in candidates.iter().zip(ids) {
            match self.objects.stage_link(&mut stage, &candidate.path, id)? {
                Inserted::New => {
                    let path = stage.dir().join(id.hex());
                    make_object(&path, &candidate.xattrs)?;
                    staged.add(path);
                    report.new_objects += 1;
                }
                Inserted::Existing => report.shared_bytes += candidate.meta.len(),
            }
        }
        staged.add(stage.dir().to_path_buf());
        // The objects' data is durable before a name in `objects/` vouches for it.
        self.sync(staged)?;
        let mut published = Written::default();
        self.objects.publish(&stage, &mut published)?;
        self.sync(published)?;
        // Stubs here name objects by their short names only: a repair that shortens names
        // (shorten.rs) rewrites the stubs of layer trees, not these.
        let mut long = Vec::new();
        for id in ids.iter().collect::<HashSet<_>>() {
            if let Some(name @ ObjectName::Long(_)) = self.objects.find(id)? {
                long.push((*id, self.objects.path(&name)));
            }
        }
        let long: Vec<(ObjectId, &Path)> = long.iter().map(|(id, p)| (*id, p.as_path())).collect();
        self.link_short_names(&long)?;
        self.db.write(|tx| {
            ids.iter()
                .try_for_each(|id| object_roots::add(tx, owner, &id.hex()))
        })?;
        pause_for_crash_test();
        candidates
            .par_iter()
            .zip(ids)
            .enumerate()
            .try_for_each(|(n, (candidate, id))| {
                let stub = staging.join(format!("stub.{n}"));
                create_stub(&stub, candidate, &ObjectName::short(id).redirect())?;
                fs::rename(&stub, &candidate.path).at(&candidate.path)
            })
    }
}

/// Collects the regular files of `dir` to turn into stubs, and the times of the directories
/// holding them (renames would change those).
fn scan(
    dir: &Path,
    candidates: &mut Vec<Candidate>,
    dirs: &mut BTreeMap<PathBuf, fs::Metadata>,
    report: &mut DedupReport,
) -> Result<(), StoreError> {
    let mut holds_candidates = false;
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        let meta = fs::symlink_metadata(&path).at(&path)?;
        if meta.is_dir() {
            scan(&path, candidates, dirs, report)?;
            continue;
        }
        if !meta.is_file() || meta.len() == 0 {
            continue;
        }
        let xattrs = xattr::all(&path).at(&path)?;
        // A hard link's other names would keep the data; overlay's own files point elsewhere.
        if meta.nlink() > 1 || xattrs.iter().any(|(name, _)| is_overlay_xattr(name)) {
            report.skipped += 1;
            continue;
        }
        candidates.push(Candidate { path, meta, xattrs });
        holds_candidates = true;
    }
    if holds_candidates {
        dirs.insert(dir.to_path_buf(), fs::symlink_metadata(dir).at(dir)?);
    }
    Ok(())
}

/// Gives the staged link `path` an object's metadata: mode 0444, the store's owner, no xattrs
/// (`xattrs`, the file's own, go to its stub).
fn make_object(path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
    for (name, _) in xattrs {
        xattr::remove(path, name).at(path)?;
    }
    let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
    rustix::fs::chownat(CWD, path, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).at(path)?;
    rustix::fs::chmodat(CWD, path, Mode::from_raw_mode(0o444), AtFlags::empty()).at(path)
}

/// Creates at `path` the stub of `candidate`, whose bytes are the object at `redirect`.
fn create_stub(path: &Path, candidate: &Candidate, redirect: &str) -> Result<(), StoreError> {
    let meta = &candidate.meta;
    let stub = Stub {
        size: meta.len(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: conventions::Time {
            sec: meta.mtime(),
            nsec: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
        },
        xattrs: &candidate.xattrs,
        redirect: redirect.as_bytes(),
    };
    conventions::create_metacopy_stub(path, &stub).at(path)
}

/// Puts back the access and modification times the directories had before their files were
/// replaced.
fn restore_times(dirs: &BTreeMap<PathBuf, fs::Metadata>) -> Result<(), StoreError> {
    for (dir, meta) in dirs {
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: meta.atime(),
                tv_nsec: meta.atime_nsec(),
            },
            last_modification: Timespec {
                tv_sec: meta.mtime(),
                tv_nsec: meta.mtime_nsec(),
            },
        };
        rustix::fs::utimensat(CWD, dir, &times, AtFlags::SYMLINK_NOFOLLOW).at(dir)?;
    }
    Ok(())
}

/// A crash test's seam, in debug builds only: with `STRATA_TEST_PAUSE=dedup` in its
/// environment, a process stops for good in the middle of a dedup (objects published and
/// rooted, no file replaced yet) and says so on stderr, for the test to SIGKILL it there.
fn pause_for_crash_test() {
    if cfg!(debug_assertions) && std::env::var_os("STRATA_TEST_PAUSE").is_some_and(|v| v == "dedup")
    {
        eprintln!("strata: paused in the middle of a dedup (STRATA_TEST_PAUSE=dedup)");
        loop {
            std::thread::park();
        }
    }
}

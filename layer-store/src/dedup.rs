//! Deduplicating a tree in place, as a layer tree materialized with the same strategy holds its
//! files: as root, the files become the store's objects, moved by a hard link and never copied
//! (or dropped when the object exists), and metadata-only stubs take their place; rootless,
//! each file becomes a checkout or a hard link to one. containerd's extraction snapshots go
//! through it when committed (`strata-snapshotter`).
//!
//! The order makes a crash at any point harmless (`docs/format.md`, "Deduplicating a tree"):
//! objects are staged, flushed and published before a GC root names them, and GC roots are
//! committed before any stub points at an object; the tree's files are replaced one rename at a
//! time, so each path holds either its file or its stub.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, Mode, Timespec, Timestamps};
use rustix::io::Errno;
use serde::Serialize;
use strata_cow::conventions::{self, Stub, is_overlay_xattr};
use strata_cow::xattr;

use crate::db::object_roots;
use crate::durable::Written;
use crate::error::{IoContext, StoreError};
use crate::lock::LockMode;
use crate::materialize::{Checkout, checkout_path};
use crate::object::{Inserted, ObjectId, ObjectName, hash_file};
use crate::record::{Strategy, Time};
use crate::store::Store;

/// Why a tree was not deduplicated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DedupError {
    /// Stubs need root; the tree is left as it is.
    #[error("deduplicating a tree into metadata-only stubs needs root")]
    StubsUnavailable,
    /// Copies and reflinks share nothing a tree could be deduplicated into.
    #[error("a tree cannot be deduplicated as {}: stubs or hard links only", strategy.name())]
    Unsupported {
        /// The strategy asked for.
        strategy: Strategy,
    },
    /// The store failed underneath (I/O, the database).
    #[error(transparent)]
    Store(Box<StoreError>),
}

/// What [`Store::dedup_tree`] did. With hard links, "objects" are checkouts (bytes and
/// metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DedupReport {
    /// Regular files turned into stubs.
    pub files: u64,
    /// Of their objects, those the store did not have (the files' inodes became them).
    pub new_objects: u64,
    /// Bytes of files whose object the store had already: freed.
    pub shared_bytes: u64,
    /// Regular files left as they are: hard links, overlay's own files (metacopy copy-ups), and
    /// files whose checkout has as many links as the file system allows.
    pub skipped: u64,
}

/// A regular file to deduplicate.
struct Candidate {
    path: PathBuf,
    meta: fs::Metadata,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Store {
    /// Deduplicates the regular files of `tree` (on the store's file system: files move by hard
    /// link and rename) against the store, as a layer materialized with `strategy` (probed when
    /// `None`) would hold them:
    ///
    /// - [`Strategy::Stub`] (root): each file becomes an object of the store, and a
    ///   metadata-only stub (same mode, owner, times, xattrs and size) takes its place. Each
    ///   object is registered as needed by `owner` until
    ///   [`remove_gc_roots_of`](Store::remove_gc_roots_of). Mount the tree with
    ///   [`objects_dir`](Store::objects_dir) as the data-only lower afterwards.
    /// - [`Strategy::Hardlink`] (rootless): each file becomes the checkout of its bytes and
    ///   metadata, or is replaced by a hard link to the one the store has; a checkout lives as
    ///   long as a tree links it, so `owner` is not needed.
    ///
    /// Directories keep their times; empty files, hard links and files overlay marked
    /// (metacopy copy-ups) stay as they are, so running it again on the same tree changes
    /// nothing. On return the whole tree is durable.
    ///
    /// # Errors
    /// [`DedupError::StubsUnavailable`] for stubs without root, [`DedupError::Unsupported`]
    /// for copies and reflinks. A failure part way leaves some files done, each readable.
    pub fn dedup_tree(
        &self,
        tree: &Path,
        owner: &str,
        strategy: Option<Strategy>,
    ) -> Result<DedupReport, DedupError> {
        match strategy.unwrap_or_else(crate::probe_strategy) {
            Strategy::Stub if !rustix::process::geteuid().is_root() => {
                Err(DedupError::StubsUnavailable)
            }
            strategy @ (Strategy::Stub | Strategy::Hardlink) => {
                Ok(self.dedup(tree, owner, strategy)?)
            }
            strategy => Err(DedupError::Unsupported { strategy }),
        }
    }

    /// [`dedup_tree`](Store::dedup_tree), failing with the broad error.
    fn dedup(
        &self,
        tree: &Path,
        owner: &str,
        strategy: Strategy,
    ) -> Result<DedupReport, StoreError> {
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
        let result = match strategy {
            Strategy::Stub => self.move_in(&staging, &candidates, &ids, owner, &mut report),
            _ => self.link_checkouts(&staging, &candidates, &ids, &mut report),
        };
        let _ = fs::remove_dir_all(&staging);
        result?;

        restore_times(&dirs)?;
        // The whole tree: whoever wrote it (containerd's applier) flushed nothing.
        let mut written = Written::default();
        written.add_tree(tree)?;
        self.sync(written)?;
        Ok(report)
    }

    /// Makes each of `candidates` (hashing to `ids`) the checkout of its bytes and metadata,
    /// or replaces it by a hard link to the checkout the store has (made in `staging`).
    fn link_checkouts(
        &self,
        staging: &Path,
        candidates: &[Candidate],
        ids: &[ObjectId],
        report: &mut DedupReport,
    ) -> Result<(), StoreError> {
        // A checkout's bytes are trusted by its name: durable before it has one.
        let mut data = Written::default();
        for candidate in candidates {
            data.add(candidate.path.clone());
        }
        self.sync(data)?;
        let mut named = Written::default();
        for (n, (candidate, id)) in candidates.iter().zip(ids).enumerate() {
            let meta = &candidate.meta;
            let checkout = Checkout {
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: mtime(meta),
                xattrs: candidate.xattrs.clone(),
            };
            let (path, _) = checkout_path(self, id, &checkout)?;
            let fan = path.parent().unwrap_or(&path).to_path_buf();
            match fs::create_dir(&fan) {
                Ok(()) => named.add(self.root().join("checkouts")),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).at(&fan),
            }
            match fs::hard_link(&candidate.path, &path) {
                Ok(()) => {
                    named.add(fan);
                    report.new_objects += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let link = staging.join(format!("link.{n}"));
                    match rustix::fs::linkat(CWD, &path, CWD, &link, AtFlags::empty()) {
                        // As many links as the file system allows: this file stays itself.
                        Err(Errno::MLINK) => {
                            report.skipped += 1;
                            continue;
                        }
                        other => other.at(&path)?,
                    }
                    fs::rename(&link, &candidate.path).at(&candidate.path)?;
                    report.shared_bytes += meta.len();
                }
                Err(e) => return Err(e).at(&path),
            }
            report.files += 1;
        }
        self.sync(named)
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
        // Objects the store had: only these may have a long name.
        let mut found = HashSet::new();
        for (candidate, id) in candidates.iter().zip(ids) {
            match self.objects.stage_link(&mut stage, &candidate.path, id)? {
                Inserted::New => {
                    let path = stage.dir().join(id.hex());
                    make_object(&path, &candidate.xattrs)?;
                    staged.add(path);
                    report.new_objects += 1;
                }
                Inserted::Existing => {
                    found.insert(*id);
                    report.shared_bytes += candidate.meta.len();
                }
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
        for id in &found {
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
        report.files = candidates.len() as u64;
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
        let mut xattrs = xattr::all(&path).at(&path)?;
        // As a layer record keeps them: a checkout's key depends on the order.
        xattrs.sort();
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
        mtime: {
            let time = mtime(meta);
            conventions::Time {
                sec: time.sec,
                nsec: time.nsec,
            }
        },
        xattrs: &candidate.xattrs,
        redirect: redirect.as_bytes(),
    };
    conventions::create_metacopy_stub(path, &stub).at(path)
}

/// The modification time of `meta`.
fn mtime(meta: &fs::Metadata) -> Time {
    Time {
        sec: meta.mtime(),
        nsec: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
    }
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

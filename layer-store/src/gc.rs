//! Garbage collection: mark from image records and GC roots (of layers and of objects), sweep
//! unreferenced layers, objects, checkouts and staging leftovers.
//!
//! GC holds the store lock exclusively, and every import and materialization holds it shared
//! for its whole length, so nothing a running import staged or relies on can be swept.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::db::LAYERS;
use crate::error::{IoContext, StoreError};
use crate::fsck::Problem;
use crate::lock::LockMode;
use crate::object::{ObjectId, ShortName};
use crate::store::Store;

/// How to collect.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct GcOptions {
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
}

impl GcOptions {
    /// With [`dry_run`](GcOptions::dry_run) set to `dry_run`.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// What a collection removed (or would remove, on a dry run).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Layers removed (ids).
    pub layers: Vec<String>,
    /// Objects removed.
    pub objects: u64,
    /// Checkout files removed.
    pub checkouts: u64,
    /// Kept blobs removed (no image names them any more).
    pub blobs: u64,
    /// Staging leftovers and unnamed layer dirs removed.
    pub leftovers: u64,
    /// Bytes (allocated blocks) freed.
    pub bytes: u64,
}

/// Why GC removed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The metadata is damaged (records that do not decode, names or images pointing
    /// nowhere): GC refuses to run, as it would delete what the damaged records keep alive.
    #[error(
        "the store's metadata is damaged ({} problems, first: {}); run `strata fsck` for the list",
        problems.len(),
        problems.first().map(ToString::to_string).unwrap_or_default()
    )]
    Damaged {
        /// What fsck finds wrong with the metadata.
        problems: Vec<Problem>,
    },
    /// The store failed underneath (I/O, the database, among them
    /// [`StoreError::DatabaseDamaged`]).
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl Store {
    /// Removes everything no image and no GC root needs.
    ///
    /// # Errors
    /// [`GcError::Damaged`] when the metadata's records do not decode or point nowhere (what
    /// `fsck` reports), and [`StoreError::DatabaseDamaged`] (in [`GcError::Store`]) when the
    /// database fails SQLite's check: a damaged record may be all that keeps a layer alive,
    /// so GC then removes nothing.
    pub fn gc(&self, options: GcOptions) -> Result<GcReport, GcError> {
        Ok(self.collect(options)?)
    }

    /// [`gc`](Store::gc), failing with the broad error.
    fn collect(&self, options: GcOptions) -> Result<GcReport, StoreError> {
        let _lock = self.lock(LockMode::Exclusive)?;
        self.db.verify()?;
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let metadata = self.check_metadata()?;
        if !metadata.problems.is_empty() {
            return Err(GcError::Damaged {
                problems: metadata.problems,
            }
            .into());
        }
        let mut live: HashSet<String> = metadata
            .images
            .iter()
            .flat_map(|i| i.layers.iter().map(|d| d.hex()))
            .collect();
        live.extend(self.gc_roots()?.into_iter().map(|(_, layer)| layer));
        let known = metadata.layers;
        let dead: Vec<String> = known
            .iter()
            .filter(|id| !live.contains(*id))
            .cloned()
            .collect();
        let records: Vec<Result<Vec<ObjectId>, Problem>> = known
            .par_iter()
            .filter(|id| live.contains(*id))
            .map(|id| match self.read_layer_record(id) {
                Ok(record) if record.id() == *id => Ok(record.objects().map(|(o, _)| o).collect()),
                Ok(record) => Err(Problem::BadLayer {
                    id: id.clone(),
                    reason: format!("record is of layer {}", record.id()),
                }),
                Err(e) => Err(Problem::BadLayer {
                    id: id.clone(),
                    reason: crate::error::chain(&e),
                }),
            })
            .collect();
        // Compared by short name: all a short-named file tells of its id (a long name tells
        // the whole id, hence its short name too).
        let mut live_objects: HashSet<ShortName> = HashSet::new();
        let mut problems = Vec::new();
        for record in records {
            match record {
                Ok(objects) => live_objects.extend(objects.iter().map(ShortName::of)),
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(GcError::Damaged { problems }.into());
        }
        for (_, object) in self.object_roots()? {
            // A root that does not parse keeps nothing; fsck reports it.
            if let Ok(id) = object.parse::<ObjectId>() {
                live_objects.insert(ShortName::of(&id));
            }
        }
        if !options.dry_run && !dead.is_empty() {
            // The commit point: once the rows are gone the dirs are garbage whatever happens.
            self.db
                .write(|tx| dead.iter().try_for_each(|id| LAYERS.remove(tx, id)))?;
        }
        let layers_dir = self.root().join("layers");
        for entry in fs::read_dir(&layers_dir).at(&layers_dir)? {
            let entry = entry.at(&layers_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if live.contains(&name) && known.contains(&name) {
                continue;
            }
            report.bytes += self.remove(&entry.path(), options.dry_run)?;
            if known.contains(&name) {
                report.layers.push(name);
            } else {
                report.leftovers += 1;
            }
        }
        // Strays (what is not an object file in a fan-out directory) are left for
        // `fsck --repair` to report and quarantine.
        let (files, _strays) = self.object_files()?;
        for (name, path) in files {
            if !live_objects.contains(&name.short_name()) {
                report.bytes += self.remove(&path, options.dry_run)?;
                report.objects += 1;
            }
        }
        let checkouts = self.root().join("checkouts");
        for fan in fs::read_dir(&checkouts).at(&checkouts)? {
            let fan = fan.at(&checkouts)?.path();
            for entry in fs::read_dir(&fan).at(&fan)? {
                let path = entry.at(&fan)?.path();
                // A checkout only the checkouts dir links to is used by no tree.
                if fs::symlink_metadata(&path).at(&path)?.nlink() == 1 {
                    report.bytes += self.remove(&path, options.dry_run)?;
                    report.checkouts += 1;
                }
            }
        }
        for (path, _) in self.dead_kept_blobs(&metadata.images)? {
            report.bytes += self.remove(&path, options.dry_run)?;
            report.blobs += 1;
        }
        // Staging of live handles (of any process) is locked by its owner and stays.
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).at(&tmp)? {
            let path = entry.at(&tmp)?.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Its owner removed it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&path),
            };
            let claim = if meta.is_dir() {
                match crate::tmp::claim_abandoned(&path)? {
                    Some(lock) => Some(lock),
                    None => continue,
                }
            } else {
                None
            };
            report.bytes += self.remove(&path, options.dry_run)?;
            report.leftovers += 1;
            drop(claim);
        }
        Ok(report)
    }

    /// Removes `path` (a file or a tree) unless `dry_run`; returns its allocated bytes.
    fn remove(&self, path: &Path, dry_run: bool) -> Result<u64, StoreError> {
        let bytes = crate::du::allocated(path, &mut HashSet::new())?;
        if !dry_run {
            let meta = fs::symlink_metadata(path).at(path)?;
            if meta.is_dir() {
                make_writable(path)?;
                fs::remove_dir_all(path).at(path)?;
            } else {
                fs::remove_file(path).at(path)?;
            }
        }
        Ok(bytes)
    }
}

/// Layer trees hold read-only directories; removing their children needs write permission
/// (which root has anyway, but a rootless store needs it).
fn make_writable(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let meta = fs::symlink_metadata(path).at(path)?;
    if meta.is_dir() {
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700)).at(path)?;
        }
        for entry in fs::read_dir(path).at(path)? {
            make_writable(&entry.at(path)?.path())?;
        }
    }
    Ok(())
}

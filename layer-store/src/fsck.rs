//! Integrity check: rehash every object in parallel, check every record and every reference;
//! with repair, move corrupt objects to `quarantine/`.

use std::collections::HashSet;
use std::fs;

use rayon::prelude::*;
use serde::Serialize;

use crate::db;
use crate::durable::Written;
use crate::error::{IoContext, StoreError};
use crate::lock::LockMode;
use crate::object::{ObjectId, ObjectName, hash_file, is_fan};
use crate::record::{self, Kind};
use crate::store::Store;

/// How to check.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Move corrupt objects to `quarantine/` and give objects of stores written before short
    /// names their short names (under the exclusive store lock).
    pub repair: bool,
}

impl FsckOptions {
    /// With [`repair`](FsckOptions::repair) set to `repair`.
    pub fn with_repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// An object's bytes do not hash to its name.
    CorruptObject {
        /// The object's file name, fan-out and name run together: 22 base64url characters
        /// (the start of its id), or 64 hex digits in stores written before short names.
        id: String,
        /// What its bytes hash to (hex).
        actual: String,
    },
    /// An entry in `objects/` that is not an object file in its fan-out directory (a
    /// directory, a misnamed file, anything but a fan-out directory at the top level);
    /// `fsck --repair` moves it to `quarantine/stray.<path>`.
    StrayFile {
        /// Its path relative to `objects/`.
        path: String,
    },
    /// A layer's record cannot be read or decoded, or names another layer.
    BadLayer {
        /// Layer id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A layer references an object the store lacks (or that is corrupt).
    MissingObject {
        /// Layer id.
        layer: String,
        /// Object id.
        object: String,
    },
    /// A deduplicated tree's object (an object GC root, see
    /// [`Store::dedup_tree`](crate::Store::dedup_tree)) is missing or corrupt.
    MissingRootedObject {
        /// The root's owner (a snapshot).
        owner: String,
        /// Object id.
        object: String,
    },
    /// An image references a layer the store lacks, or its record is inconsistent.
    BadImage {
        /// Image id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A name (tag) names an image the store lacks.
    BadName {
        /// The name.
        name: String,
        /// The image id it names.
        image: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptObject { id, actual } => {
                write!(f, "corrupt object {id} (its bytes hash to {actual})")
            }
            Problem::StrayFile { path } => write!(f, "stray entry objects/{path}"),
            Problem::BadLayer { id, reason } => write!(f, "layer {id}: {reason}"),
            Problem::MissingObject { layer, object } => {
                write!(f, "layer {layer} needs missing or corrupt object {object}")
            }
            Problem::MissingRootedObject { owner, object } => {
                write!(f, "{owner} needs missing or corrupt object {object}")
            }
            Problem::BadImage { id, reason } => write!(f, "image {id}: {reason}"),
            Problem::BadName { name, image } => {
                write!(f, "name {name} names image {image}, which the store lacks")
            }
        }
    }
}

/// Object files under `objects/`, with their names.
pub(crate) type ObjectFiles = Vec<(ObjectName, std::path::PathBuf)>;

/// The metadata tables, decoded as far as they decode.
pub(crate) struct Metadata {
    /// Ids of the layer rows that decode.
    pub(crate) layers: Vec<String>,
    /// The image records that decode.
    pub(crate) images: Vec<crate::record::ImageRecord>,
    /// What is wrong with the rest, and with references between them.
    pub(crate) problems: Vec<Problem>,
}

/// What fsck found.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct FsckReport {
    /// Objects rehashed.
    pub objects_checked: u64,
    /// Layers checked.
    pub layers_checked: u64,
    /// Images checked.
    pub images_checked: u64,
    /// Problems, in the order found.
    pub problems: Vec<Problem>,
    /// Objects moved to `quarantine/` (with repair), by file name (fan-out and name run
    /// together), and stray entries, by path.
    pub quarantined: Vec<String>,
    /// Missing or corrupt objects put back (with repair) from a checkout holding the same
    /// bytes, by id (hex); the problems found stay listed above.
    pub restored: Vec<String>,
    /// Objects of a store written before short names that now have only their short names
    /// (with repair), by id (hex); the stubs that named them were rewritten.
    pub shortened: Vec<String>,
    /// Objects that got their short names but keep their long ones for now (with repair),
    /// because an overlay mount uses `objects/`: a repair with nothing mounted removes them.
    pub long_names_kept: u64,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks every object, layer record and image record.
    ///
    /// # Errors
    /// [`StoreError::DatabaseDamaged`] when the metadata database fails SQLite's
    /// check: nothing it names can be trusted then.
    pub fn fsck(&self, options: FsckOptions) -> Result<FsckReport, StoreError> {
        let mode = if options.repair {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        };
        let _lock = self.lock(mode)?;
        self.db.verify()?;
        let mut report = FsckReport::default();
        let (files, strays) = self.object_files()?;
        let objects = self.objects_dir().to_path_buf();
        for stray in strays {
            if options.repair {
                let from = objects.join(&stray);
                let to = self
                    .root()
                    .join("quarantine")
                    .join(format!("stray.{}", stray.replace('/', "_")));
                fs::rename(&from, &to).at(&to)?;
                report.quarantined.push(stray.clone());
            }
            report.problems.push(Problem::StrayFile { path: stray });
        }
        // A short name holds only part of the id: its object is checked by hashing it and
        // comparing the name with the hash's.
        let checked: Vec<Result<Option<(ObjectName, Problem)>, StoreError>> = files
            .par_iter()
            .map(|(name, path)| {
                let actual = hash_file(path)?;
                Ok((!name.matches(&actual)).then(|| {
                    let problem = Problem::CorruptObject {
                        id: name.to_string(),
                        actual: actual.hex(),
                    };
                    (*name, problem)
                }))
            })
            .collect();
        let mut bad_objects = HashSet::new();
        for problem in checked {
            if let Some((name, problem)) = problem? {
                bad_objects.insert(name);
                if options.repair {
                    let from = self.objects.path(&name);
                    let to = self.root().join("quarantine").join(name.to_string());
                    fs::rename(&from, &to).at(&to)?;
                    report.quarantined.push(name.to_string());
                }
                report.problems.push(problem);
            }
        }
        report.objects_checked = files.len() as u64;
        if options.repair {
            let good: ObjectFiles = files
                .into_iter()
                .filter(|(name, _)| !bad_objects.contains(name))
                .collect();
            let shortened = self.shorten_names(&good)?;
            report.shortened = shortened.renamed;
            report.long_names_kept = shortened.kept_long;
        }
        let metadata = self.check_metadata()?;
        report.layers_checked = metadata.layers.len() as u64;
        report.images_checked = metadata.images.len() as u64;
        report.problems.extend(metadata.problems);
        let mut missing = HashSet::new();
        for id in &metadata.layers {
            let record = match self.read_layer_record(id) {
                Ok(r) => r,
                Err(e) => {
                    report.problems.push(Problem::BadLayer {
                        id: id.clone(),
                        reason: crate::error::chain(&e),
                    });
                    continue;
                }
            };
            if record.id() != *id {
                report.problems.push(Problem::BadLayer {
                    id: id.clone(),
                    reason: format!("record is of layer {}", record.id()),
                });
            }
            let mut seen = HashSet::new();
            for (object, _) in record.objects() {
                if !seen.insert(object) {
                    continue;
                }
                let good = match self.objects.find(&object)? {
                    Some(name) => !bad_objects.contains(&name),
                    None => false,
                };
                if !good {
                    missing.insert(object);
                    report.problems.push(Problem::MissingObject {
                        layer: id.clone(),
                        object: object.hex(),
                    });
                }
            }
        }
        for (owner, object) in self.object_roots()? {
            let parsed = object.parse::<ObjectId>().ok();
            let good = match parsed.map(|id| self.objects.find(&id)).transpose()? {
                Some(Some(name)) => !bad_objects.contains(&name),
                _ => false,
            };
            if !good {
                missing.extend(parsed);
                report
                    .problems
                    .push(Problem::MissingRootedObject { owner, object });
            }
        }
        if options.repair && !missing.is_empty() {
            report.restored = self.restore_from_checkouts(&missing)?;
        }
        Ok(report)
    }

    /// Puts back `missing` objects from checkout files holding the same bytes (the hardlink
    /// strategy keeps one per object and inode metadata), staged, flushed and published as an
    /// import publishes. Returns the ids restored, sorted.
    fn restore_from_checkouts(
        &self,
        missing: &HashSet<ObjectId>,
    ) -> Result<Vec<String>, StoreError> {
        let checkouts = self.root().join("checkouts");
        let mut files = Vec::new();
        for fan in fs::read_dir(&checkouts).at(&checkouts)? {
            let fan = fan.at(&checkouts)?;
            if !fan.file_type().at(&fan.path())?.is_dir() {
                continue;
            }
            let fan = fan.path();
            for entry in fs::read_dir(&fan).at(&fan)? {
                let entry = entry.at(&fan)?;
                if entry.file_type().at(&entry.path())?.is_file() {
                    files.push(entry.path());
                }
            }
        }
        // A checkout that does not read or hash is no source; it is not this check's business.
        let mut found: Vec<(ObjectId, std::path::PathBuf)> = files
            .into_par_iter()
            .filter_map(|path| {
                let id = hash_file(&path).ok()?;
                missing.contains(&id).then_some((id, path))
            })
            .collect();
        found.sort_by_key(|(id, _)| id.hex());
        found.dedup_by_key(|(id, _)| *id);
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.new_tmp_dir("restore")?;
        let mut stage = self.objects.stage(dir.join("objects"))?;
        let mut restored = Vec::new();
        for (id, path) in &found {
            let mut file = fs::File::open(path).at(path)?;
            let size = file.metadata().at(path)?.len();
            let read_error = |e| StoreError::Io {
                path: path.clone(),
                source: e,
            };
            let (got, _) = self
                .objects
                .stage_stream(&mut stage, &mut file, size, &read_error)?;
            // A checkout rewritten since it was hashed is staged under its new id, harmlessly.
            if got == *id {
                restored.push(id.hex());
            }
        }
        let mut staged = Written::default();
        staged.add_tree(stage.dir())?;
        self.sync(staged)?;
        let mut written = Written::default();
        self.objects.publish(&stage, &mut written)?;
        self.sync(written)?;
        fs::remove_dir_all(&dir).at(&dir)?;
        Ok(restored)
    }

    /// Every object file under `objects/` with its name (short or long: both kinds share
    /// fan-out directories), and every entry there that is not one (a directory or special
    /// file, a misnamed file, anything at the top level that is not a fan-out directory),
    /// relative to `objects/`.
    pub(crate) fn object_files(&self) -> Result<(ObjectFiles, Vec<String>), StoreError> {
        let objects = self.objects_dir().to_path_buf();
        let mut files = Vec::new();
        let mut strays = Vec::new();
        for fan in fs::read_dir(&objects).at(&objects)? {
            let fan = fan.at(&objects)?;
            let prefix = fan.file_name().to_string_lossy().into_owned();
            if !(is_fan(&prefix) && fan.file_type().at(&fan.path())?.is_dir()) {
                strays.push(prefix);
                continue;
            }
            let fan = fan.path();
            for entry in fs::read_dir(&fan).at(&fan)? {
                let entry = entry.at(&fan)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                match ObjectName::parse(&prefix, &name) {
                    Some(object) if entry.file_type().at(&entry.path())?.is_file() => {
                        files.push((object, entry.path()));
                    }
                    _ => strays.push(format!("{prefix}/{name}")),
                }
            }
        }
        strays.sort();
        Ok((files, strays))
    }

    /// Decodes every layer row, image record and name, and checks that names and images
    /// point at what the store holds. Damage is returned as problems, not as an error.
    pub(crate) fn check_metadata(&self) -> Result<Metadata, StoreError> {
        let mut meta = self.db.read(|tx| {
            let mut meta = Metadata {
                layers: Vec::new(),
                images: Vec::new(),
                problems: Vec::new(),
            };
            for (id, value) in db::LAYERS.all(tx)? {
                match record::decode::<crate::record::LayerMeta>(Kind::LayerMeta, &value) {
                    Ok(_) => meta.layers.push(id),
                    Err(e) => meta.problems.push(Problem::BadLayer {
                        id,
                        reason: format!(
                            "its metadata row does not decode: {}",
                            crate::error::chain(&e)
                        ),
                    }),
                }
            }
            let mut image_ids = HashSet::new();
            for (id, value) in db::IMAGES.all(tx)? {
                image_ids.insert(id.clone());
                match record::decode::<crate::record::ImageRecord>(Kind::Image, &value) {
                    Ok(image) if image.id() != id => meta.problems.push(Problem::BadImage {
                        reason: format!("its record is of image {}", image.id()),
                        id,
                    }),
                    Ok(image) => meta.images.push(image),
                    Err(e) => meta.problems.push(Problem::BadImage {
                        id,
                        reason: format!("its record does not decode: {}", crate::error::chain(&e)),
                    }),
                }
            }
            for (name, image) in db::names::all(tx)? {
                if !image_ids.contains(&image) {
                    meta.problems.push(Problem::BadName { name, image });
                }
            }
            Ok(meta)
        })?;
        let known: HashSet<&str> = meta.layers.iter().map(String::as_str).collect();
        let mut problems = Vec::new();
        for image in &meta.images {
            if crate::digest::Sha256::of(&image.manifest) != image.manifest_digest {
                problems.push(Problem::BadImage {
                    id: image.id(),
                    reason: "manifest bytes do not match the image id".to_owned(),
                });
            }
            for layer in &image.layers {
                if !known.contains(layer.hex().as_str()) {
                    problems.push(Problem::BadImage {
                        id: image.id(),
                        reason: format!("layer {} is missing", layer.hex()),
                    });
                }
            }
        }
        meta.problems.extend(problems);
        Ok(meta)
    }
}

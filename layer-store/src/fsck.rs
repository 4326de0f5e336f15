//! Integrity check: rehash every object in parallel, check every record and every reference;
//! with repair, move corrupt objects to `quarantine/`.

use std::collections::HashSet;
use std::fs;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{IoContext, StoreError};
use crate::lock::LockMode;
use crate::object::{ObjectId, hash_file};
use crate::store::Store;

/// How to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Move corrupt objects to `quarantine/` (under the exclusive store lock).
    pub repair: bool,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// An object's bytes do not hash to its name.
    CorruptObject {
        /// The object's name.
        id: String,
        /// What its bytes hash to.
        actual: String,
    },
    /// A file in `objects/` that is not named like an object.
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
    /// An image references a layer the store lacks, or its record is inconsistent.
    BadImage {
        /// Image id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// What fsck found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    /// Objects rehashed.
    pub objects_checked: u64,
    /// Layers checked.
    pub layers_checked: u64,
    /// Images checked.
    pub images_checked: u64,
    /// Problems, in the order found.
    pub problems: Vec<Problem>,
    /// Objects moved to `quarantine/` (with repair).
    pub quarantined: Vec<String>,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks every object, layer record and image record.
    pub fn fsck(&self, options: FsckOptions) -> Result<FsckReport, StoreError> {
        let mode = if options.repair {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        };
        let _lock = self.lock(mode)?;
        let mut report = FsckReport::default();
        let mut files = Vec::new();
        let objects = self.objects_dir().to_path_buf();
        for fan in fs::read_dir(&objects).at(&objects)? {
            let fan = fan.at(&objects)?.path();
            let prefix = fan
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            for entry in fs::read_dir(&fan).at(&fan)? {
                let entry = entry.at(&fan)?;
                files.push((
                    format!("{prefix}{}", entry.file_name().to_string_lossy()),
                    entry.path(),
                ));
            }
        }
        let checked: Vec<Result<Option<Problem>, StoreError>> = files
            .par_iter()
            .map(|(name, path)| {
                let Ok(id) = name.parse::<ObjectId>() else {
                    return Ok(Some(Problem::StrayFile { path: name.clone() }));
                };
                let actual = hash_file(path)?;
                Ok((actual != id).then(|| Problem::CorruptObject {
                    id: name.clone(),
                    actual: actual.hex(),
                }))
            })
            .collect();
        let mut bad_objects = HashSet::new();
        for problem in checked {
            if let Some(problem) = problem? {
                if let Problem::CorruptObject { id, .. } = &problem {
                    bad_objects.insert(id.clone());
                    if options.repair {
                        let from = objects.join(&id[..2]).join(&id[2..]);
                        let to = self.root().join("quarantine").join(id);
                        fs::rename(&from, &to).at(&to)?;
                        report.quarantined.push(id.clone());
                    }
                }
                report.problems.push(problem);
            }
        }
        report.objects_checked = files.len() as u64;
        let layers = self.layers()?;
        let known: HashSet<&str> = layers.iter().map(|(id, _)| id.as_str()).collect();
        for (id, _) in &layers {
            report.layers_checked += 1;
            let record = match self.layer_record(id) {
                Ok(r) => r,
                Err(e) => {
                    report.problems.push(Problem::BadLayer {
                        id: id.clone(),
                        reason: e.to_string(),
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
                let hex = object.hex();
                if seen.insert(object)
                    && (bad_objects.contains(&hex) || !self.objects.contains(&object))
                {
                    report.problems.push(Problem::MissingObject {
                        layer: id.clone(),
                        object: hex,
                    });
                }
            }
        }
        for image in self.images()? {
            report.images_checked += 1;
            if crate::digest::Sha256::of(&image.manifest) != image.manifest_digest {
                report.problems.push(Problem::BadImage {
                    id: image.id(),
                    reason: "manifest bytes do not match the image id".to_owned(),
                });
            }
            for layer in &image.layers {
                if !known.contains(layer.hex().as_str()) {
                    report.problems.push(Problem::BadImage {
                        id: image.id(),
                        reason: format!("layer {} is missing", layer.hex()),
                    });
                }
            }
        }
        Ok(report)
    }
}

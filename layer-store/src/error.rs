//! The store's error type, and the narrow errors of each operation that lift into it.

use std::io;
use std::path::{Path, PathBuf};

use crate::dedup::DedupError;
use crate::export::ExportError;
use crate::gc::GcError;
use crate::import::ImportError;
use crate::materialize::MaterializeError;
use crate::record::RecordError;
use crate::tarstream::TarError;

/// Everything a [`Store`](crate::Store) operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation on `path` failed.
    #[error("{path}")]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The metadata database `strata.db` failed.
    #[error(transparent)]
    Database(DatabaseError),
    /// The metadata database `strata.db` is damaged: SQLite found it inconsistent. Nothing was
    /// changed.
    #[error(
        "metadata database {path} is damaged ({detail}); nothing was changed. Restore it from a \
         backup, or move it aside and import the images again"
    )]
    DatabaseDamaged {
        /// The database file.
        path: PathBuf,
        /// What was found wrong.
        detail: String,
    },
    /// The metadata database is missing from a store that holds layers or objects: opening a
    /// fresh one would forget them all (and GC would then delete them).
    #[error(
        "metadata database {path} is missing but the store holds layers or objects; restore \
         it from a backup (or remove the store to start over)"
    )]
    DatabaseMissing {
        /// Where the database should be.
        path: PathBuf,
    },
    /// A record (layer or image) could not be encoded or decoded.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// An import failed; nothing of it became visible.
    #[error(transparent)]
    Import(ImportError),
    /// An export failed.
    #[error(transparent)]
    Export(ExportError),
    /// GC refused to run or failed.
    #[error(transparent)]
    Gc(GcError),
    /// A layer tar could not be parsed.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// A layer could not be materialized.
    #[error(transparent)]
    Materialize(MaterializeError),
    /// A tree could not be deduplicated.
    #[error(transparent)]
    Dedup(DedupError),
    /// No image has this name or manifest digest.
    #[error(
        "no image named {name:?} (`strata images` lists them; give a name or at least 4 hex \
         digits of an id)"
    )]
    ImageNotFound {
        /// The name asked for.
        name: String,
    },
    /// An id prefix matches several images.
    #[error(
        "image id prefix {prefix} is ambiguous: it matches {}; give more digits",
        candidates.iter().map(|c| &c[..c.len().min(12)]).collect::<Vec<_>>().join(", ")
    )]
    AmbiguousImage {
        /// The prefix given (hex).
        prefix: String,
        /// The ids it matches.
        candidates: Vec<String>,
    },
    /// A name is not an image reference.
    #[error(transparent)]
    Name(#[from] crate::name::NameError),
    /// No layer has this id.
    #[error("no layer {id}")]
    LayerNotFound {
        /// The layer id (hex of its diff_id).
        id: String,
    },
    /// A record references an object the store does not hold.
    #[error("object {id} is missing from the store")]
    ObjectMissing {
        /// The object's id (blake3, hex).
        id: String,
    },
    /// Something on disk does not match what was written (found by a read, not by fsck).
    #[error("object {id} is corrupt: its bytes hash to {actual}")]
    ObjectCorrupt {
        /// The object's name.
        id: String,
        /// What its bytes hash to.
        actual: String,
    },
    /// The store root was made by a newer Strata that this one cannot read.
    #[error("store {path} has format version {found}, this build reads up to {supported}")]
    UnsupportedStoreVersion {
        /// The store root.
        path: PathBuf,
        /// The version found in the store.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The store root exists but is not a directory.
    #[error("store root {path} is not a directory")]
    RootNotADirectory {
        /// The store root.
        path: PathBuf,
    },
    /// A layer is still needed and cannot be removed.
    #[error("layer {id} is in use by {user}")]
    LayerInUse {
        /// The layer id.
        id: String,
        /// Who uses it (an image name or a GC root owner).
        user: String,
    },
}

/// Lifts narrow error `$narrow` into [`StoreError::$variant`], and a [`StoreError`] into
/// `$narrow` (its `Store` variant, unless it holds a `$narrow` already): neither direction
/// nests a narrow error in a broad one in a narrow one.
macro_rules! lift {
    ($narrow:ident, $variant:ident) => {
        impl From<StoreError> for $narrow {
            fn from(err: StoreError) -> Self {
                match err {
                    StoreError::$variant(narrow) => narrow,
                    other => $narrow::Store(Box::new(other)),
                }
            }
        }

        impl From<$narrow> for StoreError {
            fn from(err: $narrow) -> Self {
                match err {
                    $narrow::Store(broad) => *broad,
                    narrow => StoreError::$variant(narrow),
                }
            }
        }
    };
}

lift!(ImportError, Import);
lift!(ExportError, Export);
lift!(GcError, Gc);
lift!(MaterializeError, Materialize);
lift!(DedupError, Dedup);

/// A failure of the metadata database, named by its message and
/// [`source`](std::error::Error::source) chain; opaque, so that no database type is part of the
/// store's API.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseError(pub(crate) strata_metadb::Error);

impl From<strata_metadb::Error> for DatabaseError {
    fn from(err: strata_metadb::Error) -> Self {
        DatabaseError(err)
    }
}

impl DatabaseError {
    /// Whether SQLite found the database file damaged.
    pub fn is_damage(&self) -> bool {
        self.0.is_damage()
    }
}

/// `err` and each cause below it, joined by ": ": for a report that keeps an error as text
/// (an error's own message names only what failed).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    std::iter::successors(Some(err), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Attaches the path an I/O error happened at.
pub(crate) trait IoContext<T> {
    /// Turns an `io::Error` into [`StoreError::Io`] naming `path`.
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T, E: Into<io::Error>> IoContext<T> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|err| StoreError::Io {
            path: path.to_path_buf(),
            source: err.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> StoreError {
        StoreError::Io {
            path: PathBuf::from("/store/objects"),
            source: io::Error::from(io::ErrorKind::NotFound),
        }
    }

    #[test]
    fn lifting_never_nests_a_narrow_error_in_a_broad_one() {
        let narrow = ImportError::from(io_error());
        assert!(
            matches!(&narrow, ImportError::Store(e) if matches!(**e, StoreError::Io { .. })),
            "{narrow:?}"
        );
        assert!(matches!(StoreError::from(narrow), StoreError::Io { .. }));
        let broad = StoreError::from(ImportError::NoImage);
        assert!(matches!(&broad, StoreError::Import(ImportError::NoImage)));
        assert!(matches!(ImportError::from(broad), ImportError::NoImage));
        let broad = StoreError::from(GcError::Damaged { problems: vec![] });
        assert!(matches!(GcError::from(broad), GcError::Damaged { .. }));
        assert!(matches!(
            ExportError::from(io_error()),
            ExportError::Store(_)
        ));
    }

    #[test]
    fn a_lifted_error_says_its_cause_once() {
        let chain = strata_testkit::assert_chain_once(&ImportError::from(io_error()));
        assert_eq!(chain, "/store/objects: entity not found");
        let chain = strata_testkit::assert_chain_once(&ExportError::Output {
            output: crate::ExportOutput::Blob,
            source: io::Error::from(io::ErrorKind::WriteZero),
        });
        assert_eq!(chain, "writing the layer blob: write zero");
    }
}

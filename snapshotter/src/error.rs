//! The snapshotter's errors, each mapping to one of containerd's `errdefs` kinds.

use std::path::PathBuf;

use crate::filter::FilterError;

/// containerd's error classes (`errdefs`), which gRPC clients get back as status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `errdefs.ErrNotFound` (gRPC `NotFound`).
    NotFound,
    /// `errdefs.ErrAlreadyExists` (gRPC `AlreadyExists`).
    AlreadyExists,
    /// `errdefs.ErrFailedPrecondition` (gRPC `FailedPrecondition`).
    FailedPrecondition,
    /// `errdefs.ErrInvalidArgument` (gRPC `InvalidArgument`).
    InvalidArgument,
    /// Anything else: I/O, a damaged database (gRPC `Internal`).
    Internal,
}

/// Why an operation's precondition did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Precondition {
    /// Only an active snapshot can be committed.
    NotActive,
    /// A committed snapshot has no mounts; prepare or view a child instead.
    Committed,
    /// A snapshot with children cannot be removed.
    HasChildren,
    /// The snapshotter was closed.
    Closed,
}

impl std::fmt::Display for Precondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precondition::NotActive => "snapshot is not active",
            Precondition::Committed => "snapshot is committed",
            Precondition::HasChildren => "cannot remove snapshot with child",
            Precondition::Closed => "snapshotter is closed",
        })
    }
}

/// Errors of every snapshotter operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No snapshot has this key.
    #[error("snapshot {key:?} not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// The parent named by a Prepare or View does not exist.
    #[error("parent snapshot {parent:?} of {key:?} not found")]
    ParentNotFound {
        /// The snapshot being created.
        key: String,
        /// The missing parent.
        parent: String,
    },
    /// The key (or the commit name) is taken: keys of all kinds share one space.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The key that is taken.
        key: String,
    },
    /// The snapshot is in the wrong state for the operation.
    #[error("snapshot {key:?}: {reason}")]
    FailedPrecondition {
        /// The snapshot at fault.
        key: String,
        /// What did not hold.
        reason: Precondition,
    },
    /// The parent of a new snapshot must be committed.
    #[error("parent {parent:?} of {key:?} is not a committed snapshot")]
    ParentNotCommitted {
        /// The snapshot being created.
        key: String,
        /// The parent that is active or a view.
        parent: String,
    },
    /// Update may only change labels.
    #[error("cannot update field {field:?} of snapshot {key:?}")]
    ImmutableField {
        /// The snapshot being updated.
        key: String,
        /// The field path that was refused.
        field: String,
    },
    /// containerd limits a label's key plus value to 4096 bytes.
    #[error("label {label:?} of snapshot {key:?} is longer than {max} bytes", max = crate::info::MAX_LABEL_LEN)]
    LabelTooLong {
        /// The snapshot at fault.
        key: String,
        /// The label's key.
        label: String,
    },
    /// Keys must be non-empty.
    #[error("snapshot key must not be empty")]
    EmptyKey,
    /// containerd's remote snapshots: the layer chain a Prepare was to unpack is in the store,
    /// and committed as snapshot `name`; `key` was not made.
    #[error(
        "layer chain {target} is in the store, committed as snapshot {name:?}; {key:?} not prepared"
    )]
    RemoteSnapshot {
        /// The extraction snapshot containerd asked for.
        key: String,
        /// The chain ID (`containerd.io/snapshot.ref`).
        target: String,
        /// The committed snapshot of that chain.
        name: String,
    },
    /// A Walk filter did not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Mounting a snapshot failed.
    #[error("mount snapshot {key:?} at {target}")]
    Mount {
        /// The snapshot.
        key: String,
        /// Where it was to be mounted.
        target: PathBuf,
        /// What the kernel (or cow) said.
        source: strata_cow::MountError,
    },
    /// The layer store could not give or materialize an image's layers.
    #[error("image {image:?}")]
    Image {
        /// The image asked for.
        image: String,
        /// What the layer store said.
        source: Box<strata_layer_store::StoreError>,
    },
    /// The store root could not be used (e.g. another process keeps its database open).
    #[error(transparent)]
    Store(Box<strata_layer_store::StoreError>),
    /// Only a snapshot prepared on an image (without snapshot parents) can become an image.
    #[error("snapshot {key:?} was not prepared on an image")]
    NotOnImage {
        /// The snapshot.
        key: String,
    },
    /// The changes of a snapshot could not be read.
    #[error("diff of snapshot {key:?}")]
    Diff {
        /// The snapshot.
        key: String,
        /// What the differ said.
        source: Box<strata_diff::DiffError>,
    },
    /// The layer of a snapshot's changes could not be written.
    #[error("layer of snapshot {key:?}")]
    WriteLayer {
        /// The snapshot.
        key: String,
        /// What the layer writer said.
        source: Box<strata_diff::WriteError>,
    },
    /// An image's stored manifest or config is not what OCI describes.
    #[error("image {image}: {reason}")]
    ImageJson {
        /// The image id.
        image: String,
        /// What was wrong.
        reason: String,
    },
    /// A metadata record could not be decoded.
    #[error("metadata record of snapshot {key:?} is damaged: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The shared transaction this operation ran in failed (see the inner error).
    #[error("metadata transaction failed")]
    BatchAborted(#[source] std::sync::Arc<Error>),
    /// The transaction carrying this operation never ran (a bug or a panic in another job).
    #[error("metadata transaction lost")]
    BatchLost,
    /// The metadata database failed.
    #[error("snapshot metadata")]
    Database(#[source] strata_layer_store::DatabaseError),
}

impl Error {
    /// containerd's class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::ParentNotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } | Error::RemoteSnapshot { .. } => ErrorKind::AlreadyExists,
            Error::FailedPrecondition { .. } => ErrorKind::FailedPrecondition,
            Error::ParentNotCommitted { .. }
            | Error::ImmutableField { .. }
            | Error::LabelTooLong { .. }
            | Error::EmptyKey
            | Error::NotOnImage { .. }
            | Error::Filter(_) => ErrorKind::InvalidArgument,
            Error::Image { source, .. } => match **source {
                strata_layer_store::StoreError::ImageNotFound { .. } => ErrorKind::NotFound,
                _ => ErrorKind::Internal,
            },
            Error::Store(_) => ErrorKind::Internal,
            Error::BatchAborted(inner) => inner.kind(),
            Error::Io { .. }
            | Error::Diff { .. }
            | Error::WriteLayer { .. }
            | Error::ImageJson { .. }
            | Error::Mount { .. }
            | Error::Corrupt { .. }
            | Error::Database(_)
            | Error::BatchLost => ErrorKind::Internal,
        }
    }

    /// A job's own error comes back as itself when nothing else shares it.
    pub(crate) fn unwrap_batch(self) -> Error {
        match self {
            Error::BatchAborted(inner) => {
                std::sync::Arc::try_unwrap(inner).unwrap_or_else(Error::BatchAborted)
            }
            other => other,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

impl From<strata_metadb::Error> for Error {
    fn from(err: strata_metadb::Error) -> Self {
        Error::Database(err.into())
    }
}

impl From<strata_layer_store::StoreError> for Error {
    fn from(err: strata_layer_store::StoreError) -> Self {
        Error::Store(Box::new(err))
    }
}

/// The result of snapshotter operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

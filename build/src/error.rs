//! What can go wrong in a build.

use std::io;
use std::path::PathBuf;

/// A build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A file or directory operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// The Dockerfile does not parse.
    #[error("parse {file}: {message}")]
    Parse {
        /// The Dockerfile.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An instruction or option this builder does not implement.
    #[error("line {line}: {what} is not supported by strata build")]
    Unsupported {
        /// Its line in the Dockerfile.
        line: usize,
        /// The instruction or option.
        what: String,
    },
    /// An instruction is malformed.
    #[error("line {line}: {instruction}: {reason}")]
    Instruction {
        /// Its line in the Dockerfile.
        line: usize,
        /// The instruction's keyword.
        instruction: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `--target` or `COPY --from` names no stage (and, for `--from`, no image either).
    #[error("no build stage named {name:?}")]
    NoStage {
        /// The name.
        name: String,
    },
    /// The layer store failed on an image.
    #[error("image {image}")]
    Image {
        /// The image.
        image: String,
        /// The store's error.
        source: Box<strata_layer_store::StoreError>,
    },
    /// The layer store failed.
    #[error("{op}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The store's error.
        source: Box<strata_layer_store::StoreError>,
    },
    /// The snapshotter failed.
    #[error("{op} snapshot {key}")]
    Snapshot {
        /// What was being done.
        op: &'static str,
        /// The snapshot key.
        key: String,
        /// The snapshotter's error.
        source: Box<strata_snapshotter::Error>,
    },
    /// A base image is neither in the store nor could be pulled.
    #[error("pull {image}")]
    Pull {
        /// The reference.
        image: String,
        /// The registry client's error.
        source: Box<strata_registry::PullError>,
    },
    /// runc could not run a step's container.
    #[error("step {step}")]
    Runc {
        /// The step (`RUN …`).
        step: String,
        /// The launcher's error.
        source: strata_snapshotter::runc::RuncError,
    },
    /// A `RUN` command failed.
    #[error("step {step}: the command exited with {status}")]
    RunFailed {
        /// The step (`RUN …`).
        step: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// A `COPY`/`ADD` source is missing or not inside the context.
    #[error("{step}: source {source_path:?}: {reason}")]
    Source {
        /// The step (`COPY …`).
        step: String,
        /// The source as written.
        source_path: String,
        /// What is wrong.
        reason: String,
    },
    /// A user or group name does not resolve in the image.
    #[error("user {user:?}: {reason}")]
    User {
        /// The `USER` or `--chown` value.
        user: String,
        /// What is wrong.
        reason: String,
    },
    /// An image's config or manifest is not what an OCI image has.
    #[error("image {image}: {reason}")]
    ImageJson {
        /// The image.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A build-cache entry does not decode.
    #[error("build cache entry {path}: {reason}")]
    CacheEntry {
        /// The entry's file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl From<strata_layer_store::StoreError> for BuildError {
    fn from(source: strata_layer_store::StoreError) -> BuildError {
        BuildError::Store {
            op: "use the layer store",
            source: Box::new(source),
        }
    }
}

/// This crate's result.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;

impl BuildError {
    /// A closure that makes an [`BuildError::Io`] of an `io::Error`, for `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io { op, path, source }
    }

    /// A closure that makes a [`BuildError::Store`], for `map_err`.
    pub(crate) fn store(
        op: &'static str,
    ) -> impl FnOnce(strata_layer_store::StoreError) -> BuildError {
        move |source| BuildError::Store {
            op,
            source: Box::new(source),
        }
    }
}

//! What a diff produces: a sorted list of changes, and the options and errors of computing it.

use std::io;
use std::path::{Path, PathBuf};

use crate::meta::Meta;

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The entry is new.
    Added,
    /// The entry exists on both sides but its type, metadata or content differs.
    Modified,
    /// The entry is gone (a deleted directory is one deletion, its children are implied).
    Deleted,
}

impl ChangeKind {
    /// The one-letter code of `strata diff --format changes`: `A`, `M` or `D`.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Path relative to the tree roots, without a leading `/` or `./`.
    pub path: PathBuf,
    /// How it changed.
    pub kind: ChangeKind,
    /// The entry's metadata on the new side; `None` for [`ChangeKind::Deleted`].
    pub meta: Option<Meta>,
}

/// The changes between two trees, in walk order: depth first, names sorted bytewise inside each
/// directory, a directory before its children. The order and content do not depend on the
/// number of threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    /// The directory that holds the new content (the new tree, or the overlay upper dir); the
    /// layer writer reads file data and parent directories from it.
    pub source: PathBuf,
    /// The changes.
    pub changes: Vec<Change>,
}

/// How a diff runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DiffOptions {
    /// When to compare file contents.
    pub content: ContentCheck,
    /// Where the work runs.
    pub threads: Threads,
}

impl DiffOptions {
    /// With [`content`](DiffOptions::content) set to `content`.
    pub fn with_content(mut self, content: ContentCheck) -> Self {
        self.content = content;
        self
    }

    /// With [`threads`](DiffOptions::threads) set to `threads`.
    pub fn with_threads(mut self, threads: Threads) -> Self {
        self.threads = threads;
        self
    }
}

/// When two regular files with the same metadata get their bytes compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentCheck {
    /// Only when the mtime is ambiguous: same second and zero nanoseconds on either side.
    #[default]
    Ambiguous,
    /// Always (`strata diff --content`).
    Always,
}

/// Where a diff (or the layer writer, see [`WriteOptions::threads`](crate::WriteOptions)) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// On the current rayon pool: directories and entries are compared concurrently. Pick a
    /// pool with `pool.install(|| changes(..))`. The writer uses one helper thread instead.
    #[default]
    Rayon,
    /// On the calling thread only (the 1-thread baseline).
    Sequential,
}

/// Why a diff failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// Reading an entry failed.
    #[error("reading {path}")]
    Read {
        /// The entry at fault.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A root given to the diff is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The root at fault.
        path: PathBuf,
    },
    /// The upper dir uses an overlay feature the fast path cannot read alone (`redirect` for a
    /// renamed directory, `metacopy` for a metadata-only copy-up): diff the mounted trees with
    /// [`changes`](crate::changes) instead.
    #[error("{path} carries overlay attribute {attr}; diff the mounted trees instead")]
    NeedsTreeWalk {
        /// The upper-dir entry at fault.
        path: PathBuf,
        /// The overlay attribute found.
        attr: String,
    },
}

impl DiffError {
    pub(crate) fn read(path: &Path) -> impl FnOnce(io::Error) -> DiffError + '_ {
        move |source| DiffError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

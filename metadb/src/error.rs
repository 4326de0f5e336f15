//! What can go wrong with the metadata database.

use std::path::PathBuf;

/// A metadata database failure. Messages name what failed; the cause is in
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite failed.
    #[error("metadata database")]
    Sqlite(#[source] rusqlite::Error),
    /// SQLite found the file inconsistent: the caller must not act on what it holds.
    #[error("metadata database {path} is damaged: {detail}")]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// Another process kept a write transaction open longer than [`Database`](crate::Database)
    /// waits.
    #[error(
        "metadata database {path} stayed locked by another process's write transaction for \
         {seconds} s; is a strata process stopped (e.g. with SIGSTOP)?"
    )]
    Busy {
        /// The database file.
        path: PathBuf,
        /// How long we waited.
        seconds: u64,
    },
    /// A file of the root could not be used.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The redb database of an earlier release could not be converted; nothing changed.
    #[error(
        "converting {from} to {to}: {detail}; the root is unchanged, and still opens with the release that wrote it"
    )]
    Convert {
        /// `strata.redb`.
        from: PathBuf,
        /// `strata.db`.
        to: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The database was written by a newer release.
    #[error("metadata database {path} has schema version {found}; this build knows up to {known}")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Error::Sqlite(err)
    }
}

impl Error {
    /// Whether the file is damaged: SQLite called it corrupt or no database at all, its
    /// schema lacks what this build created (every statement here is fixed, so that can only
    /// be damage), or a value is not of the type its column holds (SQLite checks no value).
    pub fn is_damage(&self) -> bool {
        match self {
            Error::Damaged { .. } | Error::Sqlite(rusqlite::Error::SqlInputError { .. }) => true,
            Error::Sqlite(rusqlite::Error::SqliteFailure(_, Some(msg)))
                if [
                    "no such table",
                    "no such column",
                    "malformed database schema",
                ]
                .iter()
                .any(|m| msg.starts_with(m)) =>
            {
                true
            }
            Error::Sqlite(
                rusqlite::Error::Utf8Error(..)
                | rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..),
            ) => true,
            Error::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ),
            _ => false,
        }
    }

    /// Whether the database stayed locked by another writer.
    pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
        matches!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

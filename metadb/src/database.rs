//! [`Database`]: connections to `<root>/strata.db`, and the transactions run on them.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::Error;
use crate::schema::{DDL, SCHEMA_VERSION};
use crate::{FILE, LEGACY_FILE, convert};

/// A transaction on the database, read or write; dropping it unfinished rolls it back.
pub type Tx<'conn> = rusqlite::Transaction<'conn>;

/// How long a writer waits for another process's write transaction before giving up.
const BUSY_WAIT: Duration = Duration::from_secs(60);
/// Read connections kept for reuse; more are opened when threads read at once.
const SPARE_READERS: usize = 4;

/// The open metadata database of one root. `Send + Sync`: share it between threads.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Database {
    /// Opens `<root>/strata.db`, creating it (and its tables) when missing. A root of an
    /// earlier release, with `strata.redb` only, is converted first, once, in one crash-safe
    /// step (see `docs/format.md`).
    ///
    /// # Errors
    /// The file cannot be opened or converted, is damaged, or was written by a newer release.
    pub fn open(root: &Path) -> Result<Database, Error> {
        let path = root.join(FILE);
        // SQLite needs to write beside the file (its log); say so as the kernel would, rather
        // than as "attempt to write a readonly database".
        rustix::fs::access(
            root,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .map_err(|e| Error::io("open", &path)(e.into()))?;
        if !path.exists() && root.join(LEGACY_FILE).exists() {
            convert::convert(root)?;
        }
        convert::retire_legacy(root)?;
        let writer = connect(&path)?;
        let db = Database {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        };
        db.ensure_schema()?;
        Ok(db)
    }

    /// Whether `root` has a metadata database, of this release or of an earlier one.
    pub fn exists(root: &Path) -> bool {
        root.join(FILE).exists() || root.join(LEGACY_FILE).exists()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a commit of this handle waits for the log to reach the disk (`synchronous=FULL`,
    /// the default) or not (`OFF`: a power cut may lose the last commits; for tests and
    /// throwaway roots).
    pub fn set_durable(&self, durable: bool) -> Result<(), Error> {
        let level = if durable { "FULL" } else { "OFF" };
        lock(&self.writer)
            .pragma_update(None, "synchronous", level)
            .map_err(|e| self.error(e))
    }

    /// Runs `f` in a write transaction and commits it; an error from `f` rolls it back. Waits
    /// while another connection, of any process, writes.
    pub fn write<R, E: From<Error>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.error(e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// Runs `f` in a read transaction: it sees one consistent state, whatever commits meanwhile.
    pub fn read<R, E: From<Error>>(&self, f: impl FnOnce(&Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        let spare = lock(&self.readers).pop();
        let mut conn = match spare {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let out = {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .map_err(|e| self.error(e))?;
            f(&tx)
        };
        let mut readers = lock(&self.readers);
        if readers.len() < SPARE_READERS {
            readers.push(conn);
        }
        out
    }

    /// Checks the file's structure (SQLite's `quick_check`): a damaged file is
    /// [`Error::Damaged`], and nothing should be removed on the strength of what it says.
    pub fn check(&self) -> Result<(), Error> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare("PRAGMA quick_check")
                .map_err(|e| self.error(e))?;
            let found: Vec<String> = stmt
                .query_map([], |row| row.get(0))
                .and_then(Iterator::collect)
                .map_err(|e| self.error(e))?;
            if found.len() == 1 && found[0] == "ok" {
                Ok(())
            } else {
                Err(Error::Damaged {
                    path: self.path.clone(),
                    detail: found.join("; "),
                })
            }
        })
    }

    /// `err`, a failure of SQLite on this database, as an [`Error`] that names damage and a
    /// lock held too long.
    pub fn error(&self, err: rusqlite::Error) -> Error {
        classify(&self.path, err)
    }

    /// Creates the tables in a new database; refuses one of a newer release.
    fn ensure_schema(&self) -> Result<(), Error> {
        let version = |conn: &Connection| -> Result<i64, Error> {
            conn.pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(|e| self.error(e))
        };
        let found = version(&lock(&self.writer))?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        self.write(|tx| {
            let found = version(tx)?;
            if found > SCHEMA_VERSION {
                return Err(Error::NewerSchema {
                    path: self.path.clone(),
                    found,
                    known: SCHEMA_VERSION,
                });
            }
            tx.execute_batch(DDL).map_err(|e| self.error(e))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(|e| self.error(e))
        })
    }
}

/// A connection with the root's settings: write-ahead log, full sync at commit, and a wait
/// for other writers.
pub(crate) fn connect(path: &Path) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let damaged = |e| classify(path, e);
    let conn = Connection::open_with_flags(path, flags).map_err(damaged)?;
    conn.busy_timeout(BUSY_WAIT).map_err(damaged)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(damaged)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), %mode, "SQLite refused the write-ahead log");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(damaged)?;
    Ok(conn)
}

/// `err`, a failure of SQLite on the database at `path`, as an [`Error`] that names damage and
/// a lock held too long.
pub(crate) fn classify(path: &Path, err: rusqlite::Error) -> Error {
    if Error::is_busy(&err) {
        return Error::Busy {
            path: path.to_owned(),
            seconds: BUSY_WAIT.as_secs(),
        };
    }
    let detail = err.to_string();
    let err = Error::Sqlite(err);
    if err.is_damage() {
        return Error::Damaged {
            path: path.to_owned(),
            detail,
        };
    }
    err
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

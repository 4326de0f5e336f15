//! Group commit: concurrent writers share one durable database transaction.
//!
//! Each write is a job that validates and stages its change inside a transaction. A writer queues
//! its job and takes the leader lock; if a previous leader already ran the job, the writer just
//! collects its result. Otherwise it becomes the leader, drains the queue and runs every queued
//! job in one transaction: one directory fsync and one database fsync for the whole batch. Jobs
//! see the writes of the jobs before them, so colliding writes resolve exactly as if serial.
//!
//! A job that fails validation has written nothing and just fails itself; a job that fails with
//! an internal error (I/O, database) aborts the batch, and every job in it gets that error.

use std::sync::{Arc, Mutex, PoisonError};

use strata_metadb::{Database, Tx};

use crate::error::{Error, ErrorKind, Result};

/// What a job did inside the transaction.
pub(crate) struct Applied<R> {
    /// The job's result, released once the transaction is durable.
    pub value: R,
    /// The job renamed something in or out of `snapshots/`: fsync it before committing.
    pub sync_dirs: bool,
    /// Runs after a durable commit (e.g. removing a deleted snapshot's dir).
    pub on_commit: Option<Box<dyn FnOnce() + Send>>,
    /// Runs if the batch is aborted (e.g. removing a dir published for the aborted record).
    pub on_abort: Option<Box<dyn FnOnce() + Send>>,
}

impl<R> Applied<R> {
    pub fn value(value: R) -> Applied<R> {
        Applied {
            value,
            sync_dirs: false,
            on_commit: None,
            on_abort: None,
        }
    }
}

type Finish = Box<dyn FnOnce(Result<(), Arc<Error>>) + Send>;

struct Ran {
    sync_dirs: bool,
    finish: Option<Finish>,
    abort_batch: Option<Arc<Error>>,
}

type Job = Box<dyn FnOnce(&Tx<'_>) -> Ran + Send>;

type Slot<R> = Arc<Mutex<Option<Result<R>>>>;

/// The group committer of one database.
pub(crate) struct Batcher {
    db: Arc<Database>,
    queue: Mutex<Vec<Job>>,
    leader: Mutex<()>,
    sync_dirs: Box<dyn Fn() -> Result<()> + Send + Sync>,
    /// Told of each durable commit (see `SyncSeam::committed`).
    committed: Box<dyn Fn() + Send + Sync>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Batcher {
    pub fn new(
        db: Arc<Database>,
        sync_dirs: Box<dyn Fn() -> Result<()> + Send + Sync>,
        committed: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Batcher {
            db,
            queue: Mutex::new(Vec::new()),
            leader: Mutex::new(()),
            sync_dirs,
            committed,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Runs `job` in a durable transaction, possibly shared with concurrent writers.
    pub fn write<R, F>(&self, job: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<Applied<R>> + Send + 'static,
    {
        let slot: Slot<R> = Arc::default();
        let job_slot = slot.clone();
        let erased: Job = Box::new(move |txn| match job(txn) {
            Ok(applied) => Ran {
                sync_dirs: applied.sync_dirs,
                finish: Some(Box::new(move |outcome| {
                    let result = match outcome {
                        Ok(()) => {
                            if let Some(f) = applied.on_commit {
                                f();
                            }
                            Ok(applied.value)
                        }
                        Err(err) => {
                            if let Some(f) = applied.on_abort {
                                f();
                            }
                            Err(Error::BatchAborted(err))
                        }
                    };
                    *lock(&job_slot) = Some(result);
                })),
                abort_batch: None,
            },
            Err(err) => {
                let err = Arc::new(err);
                let internal = err.kind() == ErrorKind::Internal;
                *lock(&job_slot) = Some(Err(Error::BatchAborted(err.clone())));
                Ran {
                    sync_dirs: false,
                    finish: None,
                    abort_batch: internal.then_some(err),
                }
            }
        });
        lock(&self.queue).push(erased);

        let _leader = lock(&self.leader);
        if let Some(result) = lock(&slot).take() {
            return result.map_err(Error::unwrap_batch);
        }
        let jobs = std::mem::take(&mut *lock(&self.queue));
        let batch_error = self.run(jobs);
        lock(&slot)
            .take()
            .unwrap_or_else(|| Err(batch_error.map_or(Error::BatchLost, Error::BatchAborted)))
            .map_err(Error::unwrap_batch)
    }

    /// Runs `jobs` in one transaction. Jobs that did not run (the transaction could not start,
    /// or an earlier job aborted the batch) go back to the queue for the next leader.
    fn run(&self, jobs: Vec<Job>) -> Option<Arc<Error>> {
        let mut jobs = jobs.into_iter();
        let mut finishers = Vec::with_capacity(jobs.len());
        // Durable before any result is released (`synchronous=FULL`): a Commit that returned
        // survives power loss.
        let outcome = self
            .db
            .write(|tx| {
                let mut sync_dirs = false;
                for job in jobs.by_ref() {
                    let ran = job(tx);
                    sync_dirs |= ran.sync_dirs;
                    finishers.extend(ran.finish);
                    if let Some(err) = ran.abort_batch {
                        return Err(Aborted::Job(err));
                    }
                }
                if sync_dirs {
                    (self.sync_dirs)().map_err(|e| Aborted::Job(Arc::new(e)))?;
                }
                Ok(())
            })
            .map_err(|aborted| match aborted {
                Aborted::Job(err) => err,
                Aborted::Db(err) => Arc::new(Error::from(err)),
            });
        // Jobs that did not run (the transaction could not start, or an earlier job aborted
        // the batch) go back to the queue for the next leader.
        lock(&self.queue).splice(0..0, jobs);
        if outcome.is_ok() {
            (self.committed)();
        }
        for finish in finishers {
            finish(outcome.clone());
        }
        outcome.err()
    }
}

/// Why a batch's transaction did not commit.
enum Aborted {
    /// A job failed with an internal error, or the pre-commit directory flush failed.
    Job(Arc<Error>),
    /// The database failed.
    Db(strata_metadb::Error),
}

impl From<strata_metadb::Error> for Aborted {
    fn from(err: strata_metadb::Error) -> Self {
        Aborted::Db(err)
    }
}

//! Spare snapshot dirs, made durable ahead of time, so that Prepare and View need one fsync (the
//! metadata commit) instead of two.
//!
//! A refill builds [`REFILL`] empty dirs (`fs/` 0755 and `work/`) under `tmp/`, flushes them
//! in parallel (a dir renamed into place without its entries flushed may come back empty after
//! a power cut), and in one transaction allocates their ids, renames them to `snapshots/<id>`,
//! fsyncs `snapshots/` and records the ids in the `pool` table: the same
//! tmp-then-rename-at-the-commit-point rule as any snapshot dir. Prepare then takes an id from
//! the table inside its own transaction; with the pool empty it builds, flushes and publishes a
//! dir itself (and the batch fsyncs `snapshots/`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use strata_metadb::Tx;

use crate::batch::{Applied, Batcher};
use crate::error::Result;
use crate::layout::Layout;
use crate::tables;

/// Dirs made per refill.
const REFILL: usize = 32;
/// A refill starts when fewer spare dirs than this are left.
const LOW: usize = 8;

/// The in-memory view of the pool: roughly how many dirs are left, and whether a refill runs.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    available: AtomicUsize,
    refilling: AtomicBool,
}

/// Where a new snapshot's dir came from.
pub(crate) enum Taken {
    /// A spare, already durable.
    Spare(u64),
    /// Built and renamed into place inside this transaction: `snapshots/` needs an fsync.
    Published(u64),
}

impl Pool {
    pub fn new(spare: usize) -> Pool {
        Pool {
            available: AtomicUsize::new(spare),
            refilling: AtomicBool::new(false),
        }
    }

    /// Refills the pool if it runs low; one refill at a time, the others go on.
    pub fn refill_if_low(&self, batcher: &Batcher, layout: &std::sync::Arc<Layout>) -> Result<()> {
        if self.available.load(Ordering::Relaxed) >= LOW
            || self.refilling.swap(true, Ordering::Acquire)
        {
            return Ok(());
        }
        let result = self.refill(batcher, layout);
        self.refilling.store(false, Ordering::Release);
        result
    }

    fn refill(&self, batcher: &Batcher, layout: &std::sync::Arc<Layout>) -> Result<()> {
        let staged = layout.stage_many(REFILL, true)?;
        let job_layout = layout.clone();
        let job_staged = staged.clone();
        let result = batcher.write(move |tx| {
            let mut ids = Vec::with_capacity(job_staged.len());
            for dir in &job_staged {
                let id = tables::allocate_id(tx)?;
                tables::pool::add(tx, id)?;
                job_layout.publish(dir, id)?;
                ids.push(id);
            }
            let count = ids.len();
            Ok(Applied {
                sync_dirs: true,
                on_abort: Some(Box::new(move || {
                    ids.iter().for_each(|id| job_layout.remove(*id))
                })),
                ..Applied::value(count)
            })
        });
        match result {
            Ok(count) => {
                self.available.fetch_add(count, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                staged.iter().for_each(|d| layout.discard(d));
                Err(err)
            }
        }
    }

    /// Inside a job: a spare dir if there is one, else a dir built and published now.
    pub fn take(&self, tx: &Tx<'_>, layout: &Layout, with_work: bool) -> Result<Taken> {
        if let Some(id) = tables::pool::take(tx)? {
            let _ = self
                .available
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            return Ok(Taken::Spare(id));
        }
        let staged = layout.stage(with_work)?;
        let id = tables::allocate_id(tx)?;
        layout
            .publish(&staged, id)
            .inspect_err(|_| layout.discard(&staged))?;
        Ok(Taken::Published(id))
    }
}

/// How many spare dirs the pool holds.
pub(crate) fn count(batcher: &Batcher) -> Result<usize> {
    batcher.db().read(|tx| Ok(tables::pool::ids(tx)?.len()))
}

//! [`Snapshotter`]: the handle, and containerd's operations over it.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_cow::overlay::OverlayOptions;
use strata_layer_store::{DatabaseOwner, KernelSync, SyncSeam};

use redb::{Database, ReadableDatabase, ReadableMultimapTable, ReadableTable};

use crate::batch::{Applied, Batcher};
use crate::error::{Error, Precondition, Result};
use crate::filter::Filters;
use crate::info::{FieldPaths, Info, Kind, Labels, MAX_LABEL_LEN, Usage};
use crate::layout::{Layout, disk_usage};
use crate::pool::{self, Pool, Taken};
use crate::record::{Record, now_nanos};
use crate::tables::{self, CHILDREN, Lowers, SNAPSHOTS};

/// A snapshotter over one store root. `Send + Sync`: share it behind an `Arc`.
pub struct Snapshotter {
    layout: Arc<Layout>,
    overlay: OverlayOptions,
    batcher: Batcher,
    pool: Arc<Pool>,
    closed: AtomicBool,
    /// `db.lock`, held while this handle has the database open (see [`Snapshotter::open`]).
    _db_owner: Option<DatabaseOwner>,
}

/// Where a snapshot's dirs are, and those of its ancestors: what its mounts are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub id: u64,
    pub kind: Kind,
    pub lowers: Lowers,
}

/// Layer-store layers a parentless snapshot sits on (see `Snapshotter::prepare_on_image`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Base {
    /// Layer ids, topmost first.
    pub layers: Vec<String>,
    /// Whether the layers are stubs over `objects/`.
    pub data_lower: bool,
    /// The image (id) the layers came from.
    pub image: Option<String>,
}

/// The layer store's GC-root owner name for snapshot dir `id`: stable across Commit.
pub(crate) fn gc_owner(id: u64) -> String {
    format!("snapshotter:{id}")
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("root", &self.layout.root())
            .finish_non_exhaustive()
    }
}

impl Snapshotter {
    /// Opens (creating if needed) the snapshotter of store `root`, with its metadata in
    /// `<root>/strata.redb`, and removes what a crash left behind.
    ///
    /// The handle keeps the database open and holds `<root>/db.lock` until dropped, so other
    /// processes using the store (the layer store's CLI commands, another snapshotter) fail
    /// with an error naming this process rather than open the database beside it.
    pub fn open(root: impl AsRef<Path>) -> Result<Snapshotter> {
        Snapshotter::open_with_sync(root, Arc::new(KernelSync))
    }

    /// Like [`Snapshotter::open`], with every flush (and a notice of each database commit)
    /// going through `sync` instead of the kernel: a test seam, e.g. to model a power cut
    /// after any flush. Give a layer store on the same root the same seam
    /// (`strata_layer_store::Store::with_sync`).
    #[doc(hidden)]
    pub fn open_with_sync(root: impl AsRef<Path>, sync: Arc<dyn SyncSeam>) -> Result<Snapshotter> {
        let root = root.as_ref();
        let layout = Layout::create(root, sync)?;
        let owner = DatabaseOwner::acquire(root).map_err(|e| Error::Store(Box::new(e)))?;
        let db = Database::create(root.join("strata.redb"))?;
        let mut snapshotter = Snapshotter::with_layout(layout, Arc::new(db))?;
        snapshotter._db_owner = Some(owner);
        Ok(snapshotter)
    }

    /// The open metadata database, to share with the layer store
    /// (`strata_layer_store::Store::open_with_db`).
    pub fn database(&self) -> Arc<Database> {
        self.batcher.database()
    }

    /// Like [`Snapshotter::open`], on a database the caller already opened (redb allows one
    /// handle per file per process, so crates sharing `strata.redb` share the handle).
    pub fn open_with_database(root: impl AsRef<Path>, db: Arc<Database>) -> Result<Snapshotter> {
        Snapshotter::with_layout(Layout::create(root.as_ref(), Arc::new(KernelSync))?, db)
    }

    fn with_layout(layout: Layout, db: Arc<Database>) -> Result<Snapshotter> {
        let txn = db.begin_write()?;
        tables::create(&txn)?;
        txn.commit()?;
        let db_path = layout.root().join("strata.redb");
        layout.sync().committed(&db_path);
        let pool = Arc::new(Pool::new(pool::count(&db)?));
        let layout = Arc::new(layout);
        let sync_layout = layout.clone();
        let commit_layout = layout.clone();
        let snapshotter = Snapshotter {
            layout,
            // Without CAP_SYS_ADMIN overlay keeps its xattrs in user.overlay.* (rootless).
            overlay: OverlayOptions {
                userxattr: !rustix::process::geteuid().is_root(),
                ..OverlayOptions::default()
            },
            batcher: Batcher::new(
                db,
                Box::new(move || sync_layout.sync_snapshots()),
                Box::new(move || commit_layout.sync().committed(&db_path)),
            ),
            pool,
            closed: AtomicBool::new(false),
            _db_owner: None,
        };
        snapshotter.cleanup()?;
        Ok(snapshotter)
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub(crate) fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        base: Base,
        labels: Labels,
    ) -> Result<Placement> {
        self.check_open(key)?;
        check_key(key)?;
        check_labels(key, &labels)?;
        self.pool.refill_if_low(&self.batcher, &self.layout)?;
        let layout = self.layout.clone();
        let pool = self.pool.clone();
        let (key, parent) = (key.to_owned(), parent.map(str::to_owned));
        self.batcher.write(move |txn| {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            if snapshots.get(key.as_str())?.is_some() {
                return Err(Error::AlreadyExists { key });
            }
            if let Some(parent) = &parent {
                let Some(record) = tables::get(&snapshots, parent)? else {
                    return Err(Error::ParentNotFound {
                        key,
                        parent: parent.clone(),
                    });
                };
                if record.kind != Kind::Committed {
                    return Err(Error::ParentNotCommitted {
                        key,
                        parent: parent.clone(),
                    });
                }
            }
            let (id, published) = match pool.take(txn, &layout, true)? {
                Taken::Spare(id) => (id, false),
                Taken::Published(id) => (id, true),
            };
            let now = now_nanos();
            let record = Record {
                id,
                kind,
                parent: parent.clone(),
                labels,
                created_ns: now,
                updated_ns: now,
                usage: Usage::default(),
                layers: base.layers,
                data_lower: base.data_lower,
                image: base.image,
            };
            let lowers = tables::lowers(&snapshots, &record)?;
            // The layers live as long as the record: same transaction both ways.
            for layer in &record.layers {
                strata_layer_store::db::add_gc_root(txn, &gc_owner(id), layer)?;
            }
            snapshots.insert(key.as_str(), record.encode().as_slice())?;
            if let Some(parent) = &parent {
                txn.open_multimap_table(CHILDREN)?
                    .insert(parent.as_str(), key.as_str())?;
            }
            let abort_layout = layout.clone();
            Ok(Applied {
                value: Placement { id, kind, lowers },
                sync_dirs: published,
                on_commit: None,
                // A spare taken by an aborted batch stays in the (rolled back) pool table.
                on_abort: published.then(|| -> Box<dyn FnOnce() + Send> {
                    Box::new(move || abort_layout.remove(id))
                }),
            })
        })
    }

    /// Commits the active snapshot `key` as `name`: same id and directory, new labels, usage
    /// frozen. `key` disappears.
    pub fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        self.check_open(key)?;
        check_key(name)?;
        check_labels(name, &labels)?;
        let record = self.active(key)?;
        // Outside the transaction: walking a big upper must not stall other writers.
        let usage = disk_usage(&self.layout.upper(record.id))?;
        let (name, key) = (name.to_owned(), key.to_owned());
        self.batcher.write(move |txn| {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let current = tables::require(&snapshots, &key)?;
            if current.kind != Kind::Active {
                return Err(Error::FailedPrecondition {
                    key,
                    reason: Precondition::NotActive,
                });
            }
            if current.id != record.id {
                // Removed and prepared again while we measured it: the one we measured is gone.
                return Err(Error::NotFound { key });
            }
            if snapshots.get(name.as_str())?.is_some() {
                return Err(Error::AlreadyExists { key: name });
            }
            let now = now_nanos();
            let committed = Record {
                kind: Kind::Committed,
                labels,
                created_ns: now,
                updated_ns: now,
                usage,
                ..current
            };
            snapshots.remove(key.as_str())?;
            snapshots.insert(name.as_str(), committed.encode().as_slice())?;
            if let Some(parent) = &committed.parent {
                let mut children = txn.open_multimap_table(CHILDREN)?;
                children.remove(parent.as_str(), key.as_str())?;
                children.insert(parent.as_str(), name.as_str())?;
            }
            Ok(Applied::value(()))
        })
    }

    /// Removes snapshot `key` of any kind; fails while it has children.
    pub fn remove(&self, key: &str) -> Result<()> {
        self.check_open(key)?;
        let layout = self.layout.clone();
        let key = key.to_owned();
        self.batcher.write(move |txn| {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let record = tables::require(&snapshots, &key)?;
            let mut children = txn.open_multimap_table(CHILDREN)?;
            if !children.get(key.as_str())?.is_empty() {
                return Err(Error::FailedPrecondition {
                    key,
                    reason: Precondition::HasChildren,
                });
            }
            snapshots.remove(key.as_str())?;
            if let Some(parent) = &record.parent {
                children.remove(parent.as_str(), key.as_str())?;
            }
            for layer in &record.layers {
                strata_layer_store::db::remove_gc_root(txn, &gc_owner(record.id), layer)?;
            }
            Ok(Applied {
                on_commit: Some(Box::new(move || layout.remove(record.id))),
                ..Applied::value(())
            })
        })
    }

    /// containerd's Update: changes labels only (see [`FieldPaths`]); returns the new info.
    pub fn update(&self, key: &str, labels: Labels, fields: FieldPaths<'_>) -> Result<Info> {
        self.check_open(key)?;
        let fields: Option<Vec<String>> = match fields {
            FieldPaths::AllLabels => None,
            FieldPaths::Only(paths) => Some(paths.iter().map(|p| p.to_string()).collect()),
        };
        let key = key.to_owned();
        self.batcher.write(move |txn| {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let mut record = tables::require(&snapshots, &key)?;
            record.labels = updated_labels(&key, record.labels, labels, fields)?;
            check_labels(&key, &record.labels)?;
            record.updated_ns = now_nanos();
            snapshots.insert(key.as_str(), record.encode().as_slice())?;
            Ok(Applied::value(record.info(&key)))
        })
    }

    /// The info of snapshot `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        self.check_open(key)?;
        Ok(self.read(key)?.info(key))
    }

    /// Disk usage: measured now for an active snapshot (its upper only), as frozen at commit
    /// for a committed one, zero for a view.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        self.check_open(key)?;
        let record = self.read(key)?;
        match record.kind {
            Kind::Active => disk_usage(&self.layout.upper(record.id)),
            Kind::Committed | Kind::View => Ok(record.usage),
        }
    }

    /// Calls `visit` with every snapshot matching any of `filters` (containerd's syntax, see
    /// [`crate::filter`]), in key order. `visit` may call back into the snapshotter.
    pub fn walk<S: AsRef<str>>(
        &self,
        filters: &[S],
        mut visit: impl FnMut(Info) -> ControlFlow<()>,
    ) -> Result<()> {
        self.check_open("")?;
        let filters = Filters::parse(filters)?;
        let mut matched = Vec::new();
        {
            let txn = self.batcher.db().begin_read()?;
            let snapshots = txn.open_table(SNAPSHOTS)?;
            for entry in snapshots.iter()? {
                let (key, value) = entry?;
                let info = Record::decode(key.value(), value.value())?.info(key.value());
                if filters.matches(&info) {
                    matched.push(info);
                }
            }
        }
        for info in matched {
            if visit(info).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// All snapshots matching any of `filters`, in key order.
    pub fn list<S: AsRef<str>>(&self, filters: &[S]) -> Result<Vec<Info>> {
        let mut all = Vec::new();
        self.walk(filters, |info| {
            all.push(info);
            ControlFlow::Continue(())
        })?;
        Ok(all)
    }

    /// Removes directories no record names and this crate's leftovers under `tmp/`.
    pub fn cleanup(&self) -> Result<()> {
        let layout = self.layout.clone();
        self.batcher.write(move |txn| {
            // Inside the batch: no publish can be in flight while we decide what is garbage.
            let snapshots = txn.open_table(SNAPSHOTS)?;
            let mut named = HashSet::new();
            for entry in snapshots.iter()? {
                let (key, value) = entry?;
                named.insert(Record::decode(key.value(), value.value())?.id);
            }
            named.extend(pool::spare_ids(txn)?);
            if let Some(highest) = layout.remove_unnamed(&named)? {
                tables::reserve_ids_through(txn, highest)?;
            }
            Ok(Applied::value(()))
        })
    }

    /// How many spare (empty, pre-made) snapshot dirs are kept under `snapshots/`, which no
    /// snapshot names yet.
    pub fn spare_dirs(&self) -> Result<usize> {
        pool::count(self.batcher.db())
    }

    /// Marks the snapshotter closed: later calls fail. Closing twice is fine.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) fn placement(&self, key: &str) -> Result<Placement> {
        self.check_open(key)?;
        let txn = self.batcher.db().begin_read()?;
        let snapshots = txn.open_table(SNAPSHOTS)?;
        let record = tables::require(&snapshots, key)?;
        if record.kind == Kind::Committed {
            return Err(Error::FailedPrecondition {
                key: key.to_owned(),
                reason: Precondition::Committed,
            });
        }
        Ok(Placement {
            id: record.id,
            kind: record.kind,
            lowers: tables::lowers(&snapshots, &record)?,
        })
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn overlay_options(&self) -> &OverlayOptions {
        &self.overlay
    }

    pub(crate) fn read(&self, key: &str) -> Result<Record> {
        let txn = self.batcher.db().begin_read()?;
        tables::require(&txn.open_table(SNAPSHOTS)?, key)
    }

    fn active(&self, key: &str) -> Result<Record> {
        let record = self.read(key)?;
        if record.kind != Kind::Active {
            return Err(Error::FailedPrecondition {
                key: key.to_owned(),
                reason: Precondition::NotActive,
            });
        }
        Ok(record)
    }

    fn check_open(&self, key: &str) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::FailedPrecondition {
                key: key.to_owned(),
                reason: Precondition::Closed,
            });
        }
        Ok(())
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

fn check_labels(key: &str, labels: &Labels) -> Result<()> {
    match labels
        .iter()
        .find(|(k, v)| k.len() + v.len() > MAX_LABEL_LEN)
    {
        Some((label, _)) => Err(Error::LabelTooLong {
            key: key.to_owned(),
            label: label.clone(),
        }),
        None => Ok(()),
    }
}

/// containerd's label update rules: no paths or `labels` replace all; `labels.K` sets K from
/// `new` or deletes it when `new` lacks it; any other path is an invalid argument.
fn updated_labels(
    key: &str,
    mut current: Labels,
    mut new: Labels,
    fields: Option<Vec<String>>,
) -> Result<Labels> {
    let Some(fields) = fields.filter(|f| !f.is_empty()) else {
        return Ok(new);
    };
    for field in fields {
        if let Some(label) = field.strip_prefix("labels.") {
            match new.remove(label) {
                Some(value) => current.insert(label.to_owned(), value),
                None => current.remove(label),
            };
        } else if field == "labels" {
            current = std::mem::take(&mut new);
        } else {
            return Err(Error::ImmutableField {
                key: key.to_owned(),
                field,
            });
        }
    }
    Ok(current)
}

//! [`Snapshotter`]: the handle, and containerd's operations over it.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_cow::overlay::OverlayOptions;
use strata_layer_store::{KernelSync, Store, Strategy, SyncSeam};
use strata_metadb::Database;

use crate::batch::{Applied, Batcher};
use crate::error::{Error, Precondition, Result};
use crate::filter::Filters;
use crate::info::{FieldPaths, Info, Kind, Labels, MAX_LABEL_LEN, Usage};
use crate::layout::{Layout, disk_usage};
use crate::pool::{self, Pool, Taken};
use crate::record::{GC_OWNER_PREFIX, Record, now_nanos};
use crate::tables::{self, Lowers};

pub use strata_metadb::{CLI_NAMESPACE, CONTAINERD_NAMESPACE};

/// A snapshotter over one store root, in one namespace. `Send + Sync`: share it behind an
/// `Arc`. Any number of handles, in any number of processes, may use one root at once.
pub struct Snapshotter {
    store: Store,
    namespace: String,
    layout: Arc<Layout>,
    overlay: OverlayOptions,
    batcher: Batcher,
    pool: Arc<Pool>,
    /// Whether commits of extraction snapshots deduplicate (see `crate::dedup`).
    dedup_commits: bool,
    /// How they do, probed on first use.
    pub(crate) dedup_strategy: std::sync::OnceLock<Strategy>,
    closed: AtomicBool,
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
    /// The GC-root owner already keeping `layers` alive.
    pub gc_owner: Option<String>,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("root", &self.layout.root())
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Snapshotter {
    /// Opens (creating if needed) the snapshotter of store `root` in the command line's
    /// namespace ([`CLI_NAMESPACE`]), and removes what a crash left behind.
    pub fn open(root: impl AsRef<Path>) -> Result<Snapshotter> {
        Snapshotter::open_in(root, CLI_NAMESPACE)
    }

    /// Like [`Snapshotter::open`], in namespace `namespace`: its snapshots are the only ones
    /// this handle lists, reads, removes or cleans up, and keys of other namespaces never
    /// collide with its own. `strata serve` uses [`CONTAINERD_NAMESPACE`]; a runtime may use
    /// its own name.
    pub fn open_in(root: impl AsRef<Path>, namespace: &str) -> Result<Snapshotter> {
        Snapshotter::open_with_sync(root, namespace, Arc::new(KernelSync))
    }

    /// Like [`Snapshotter::open_in`], with every flush (and a notice of each database commit)
    /// going through `sync` instead of the kernel, for the snapshotter and its store: a test
    /// seam, e.g. to model a power cut after any flush.
    #[doc(hidden)]
    pub fn open_with_sync(
        root: impl AsRef<Path>,
        namespace: &str,
        sync: Arc<dyn SyncSeam>,
    ) -> Result<Snapshotter> {
        if namespace.is_empty() {
            return Err(Error::EmptyKey);
        }
        let root = root.as_ref();
        let store =
            Store::open_with_sync(root, sync.clone()).map_err(|e| Error::Store(Box::new(e)))?;
        let staging = store.staging_dir().map_err(|e| Error::Store(Box::new(e)))?;
        let layout = Arc::new(Layout::create(root, staging, sync)?);
        let db = Arc::new(Database::open(root)?);
        let db_path = db.path().to_owned();
        let sync_layout = layout.clone();
        let commit_layout = layout.clone();
        let batcher = Batcher::new(
            db,
            Box::new(move || sync_layout.sync_snapshots()),
            Box::new(move || commit_layout.sync().committed(&db_path)),
        );
        let pool = Arc::new(Pool::new(pool::count(&batcher)?));
        let snapshotter = Snapshotter {
            store,
            namespace: namespace.to_owned(),
            layout,
            // Without CAP_SYS_ADMIN overlay keeps its xattrs in user.overlay.* (rootless).
            overlay: OverlayOptions::default()
                .with_userxattr(!rustix::process::geteuid().is_root()),
            batcher,
            pool,
            dedup_commits: true,
            dedup_strategy: std::sync::OnceLock::new(),
            closed: AtomicBool::new(false),
        };
        snapshotter.cleanup()?;
        Ok(snapshotter)
    }

    /// The layer store of this root, which this handle owns.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This handle with its store committing with `durability` (see
    /// `strata_layer_store::Store::with_durability`); snapshot metadata stays durable.
    pub fn with_durability(mut self, durability: strata_layer_store::Durability) -> Snapshotter {
        self.store.set_durability(durability);
        self
    }

    /// This handle with deduplicating commits of containerd's extraction snapshots on (the
    /// default) or off.
    pub fn with_dedup_commits(mut self, on: bool) -> Snapshotter {
        self.dedup_commits = on;
        self
    }

    /// Whether commits of containerd's extraction snapshots (keys starting with
    /// [`EXTRACT_KEY_PREFIX`](crate::EXTRACT_KEY_PREFIX)) turn their files into the store's
    /// objects and stubs.
    pub fn dedup_commits(&self) -> bool {
        self.dedup_commits
    }

    /// The namespace this handle works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
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
        let ns = self.namespace.clone();
        let (key, parent) = (key.to_owned(), parent.map(str::to_owned));
        self.batcher.write(move |tx| {
            if tables::exists(tx, &ns, &key)? {
                return Err(Error::AlreadyExists { key });
            }
            if let Some(parent) = &parent {
                let Some(record) = tables::get(tx, &ns, parent)? else {
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
            let (id, published) = match pool.take(tx, &layout, true)? {
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
                gc_owner: base.gc_owner,
            };
            let lowers = tables::lowers(tx, &ns, &record)?;
            tables::put(tx, &ns, &key, &record)?;
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
        let mut record = self.active(key)?;
        if self.dedups(key) {
            record = self.dedup_upper(key, record)?;
        }
        // Outside the transaction: walking a big upper must not stall other writers.
        let usage = disk_usage(&self.layout.upper(record.id))?;
        let ns = self.namespace.clone();
        let (name, key) = (name.to_owned(), key.to_owned());
        self.batcher.write(move |tx| {
            let current = tables::require(tx, &ns, &key)?;
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
            if tables::exists(tx, &ns, &name)? {
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
            tables::remove(tx, &ns, &key)?;
            tables::put(tx, &ns, &name, &committed)?;
            Ok(Applied::value(()))
        })
    }

    /// Removes snapshot `key` of any kind; fails while it has children.
    pub fn remove(&self, key: &str) -> Result<()> {
        self.check_open(key)?;
        let layout = self.layout.clone();
        let ns = self.namespace.clone();
        let key = key.to_owned();
        let record = self.batcher.write(move |tx| {
            let record = tables::require(tx, &ns, &key)?;
            if tables::has_children(tx, &ns, &key)? {
                return Err(Error::FailedPrecondition {
                    key,
                    reason: Precondition::HasChildren,
                });
            }
            tables::remove(tx, &ns, &key)?;
            let id = record.id;
            Ok(Applied {
                on_commit: Some(Box::new(move || layout.remove(id))),
                ..Applied::value(record)
            })
        })?;
        if !record.layers.is_empty() || record.data_lower {
            // After the record is gone: a crash between leaves roots that `cleanup` drops.
            self.store
                .remove_gc_roots_of(&record.gc_owner())
                .map_err(|e| Error::Store(Box::new(e)))?;
        }
        Ok(())
    }

    /// containerd's Update: changes labels only (see [`FieldPaths`]); returns the new info.
    pub fn update(&self, key: &str, labels: Labels, fields: FieldPaths<'_>) -> Result<Info> {
        self.check_open(key)?;
        let fields: Option<Vec<String>> = match fields {
            FieldPaths::AllLabels => None,
            FieldPaths::Only(paths) => Some(paths.iter().map(|p| p.to_string()).collect()),
        };
        let ns = self.namespace.clone();
        let key = key.to_owned();
        self.batcher.write(move |tx| {
            let mut record = tables::require(tx, &ns, &key)?;
            record.labels = updated_labels(&key, record.labels, labels, fields)?;
            check_labels(&key, &record.labels)?;
            record.updated_ns = now_nanos();
            tables::put(tx, &ns, &key, &record)?;
            Ok(Applied::value(record.info(&ns, &key)))
        })
    }

    /// The info of snapshot `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        self.check_open(key)?;
        Ok(self.read(key)?.info(&self.namespace, key))
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
        let matched: Vec<Info> = self
            .infos(Some(&self.namespace))?
            .into_iter()
            .filter(|info| filters.matches(info))
            .collect();
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

    /// Every snapshot of every namespace matching any of `filters`, ordered by namespace and
    /// key: what `strata ls` shows.
    pub fn list_all_namespaces<S: AsRef<str>>(&self, filters: &[S]) -> Result<Vec<Info>> {
        let filters = Filters::parse(filters)?;
        Ok(self
            .infos(None)?
            .into_iter()
            .filter(|info| filters.matches(info))
            .collect())
    }

    fn infos(&self, namespace: Option<&str>) -> Result<Vec<Info>> {
        self.batcher.db().read(|tx| {
            Ok(tables::all(tx, namespace)?
                .into_iter()
                .map(|(ns, key, record)| record.info(&ns, &key))
                .collect())
        })
    }

    /// Removes snapshot directories that no record of any namespace names, and GC roots of
    /// snapshots that are gone (what a crash between a snapshot's removal and its roots'
    /// left behind).
    pub fn cleanup(&self) -> Result<()> {
        let layout = self.layout.clone();
        self.batcher.write(move |tx| {
            // Inside the batch: no publish can be in flight while we decide what is garbage.
            let mut named = tables::pool::ids(tx)?;
            named.extend(tables::all(tx, None)?.into_iter().map(|(_, _, r)| r.id));
            if let Some(highest) = layout.remove_unnamed(&named)? {
                tables::reserve_ids_through(tx, highest)?;
            }
            Ok(Applied::value(()))
        })?;
        let live_owners = || -> Result<_> {
            let records = self.batcher.db().read(|tx| tables::all(tx, None))?;
            Ok(records.into_iter().map(|(_, _, r)| r.gc_owner()).collect())
        };
        self.store.prune_gc_roots(GC_OWNER_PREFIX, live_owners)?;
        Ok(())
    }

    /// How many spare (empty, pre-made) snapshot dirs are kept under `snapshots/`, which no
    /// snapshot names yet.
    pub fn spare_dirs(&self) -> Result<usize> {
        pool::count(&self.batcher)
    }

    /// Marks the snapshotter closed: later calls fail. Closing twice is fine.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) fn placement(&self, key: &str) -> Result<Placement> {
        self.check_open(key)?;
        self.batcher.db().read(|tx| {
            let record = tables::require(tx, &self.namespace, key)?;
            if record.kind == Kind::Committed {
                return Err(Error::FailedPrecondition {
                    key: key.to_owned(),
                    reason: Precondition::Committed,
                });
            }
            Ok(Placement {
                id: record.id,
                kind: record.kind,
                lowers: tables::lowers(tx, &self.namespace, &record)?,
            })
        })
    }

    pub(crate) fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn overlay_options(&self) -> &OverlayOptions {
        &self.overlay
    }

    pub(crate) fn read(&self, key: &str) -> Result<Record> {
        self.batcher
            .db()
            .read(|tx| tables::require(tx, &self.namespace, key))
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

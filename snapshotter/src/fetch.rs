//! CRI-driven fetch: layers the store lacks, brought in by Strata's own importer when
//! containerd asks for them, then answered as remote snapshots.
//!
//! With snapshot annotations on (the CRI plugin's `disable_snapshot_annotations = false`),
//! containerd's unpacker labels each extraction snapshot it prepares with the image's reference
//! ([`IMAGE_REF_LABEL`]), the layer's blob digest ([`LAYER_DIGEST_LABEL`]) and the manifest's
//! digest ([`MANIFEST_DIGEST_LABEL`]), beside the chain ID ([`crate::TARGET_LABEL`]). When the
//! store lacks that chain, [`Snapshotter::prepare_fetching`] has an [`ImageFetcher`] bring the
//! whole image into the store (`strata serve` pulls it from its registry), then answers as
//! [`Snapshotter::prepare_remote`] does: AlreadyExists with the chain's snapshot committed.
//!
//! containerd prepares one layer after the other, so the first Prepare's fetch brings them all
//! and the next ones find their chains in the store. One fetch per image runs at a time: other
//! Prepares of the image wait for it rather than fetch it again. A failed fetch is logged (warn)
//! and the Prepare goes on as an ordinary one, so containerd fetches and unpacks the layer itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::MountSpec;
use crate::error::{Error, Result};
use crate::info::Labels;
use crate::remote::TARGET_LABEL;
use crate::snapshotter::Snapshotter;

/// The label containerd's unpacker puts on an extraction snapshot, with snapshot annotations
/// on: the reference of the image being pulled (`registry/repository:tag`).
pub const IMAGE_REF_LABEL: &str = "containerd.io/snapshot/cri.image-ref";
/// With [`IMAGE_REF_LABEL`]: the digest of the layer's blob.
pub const LAYER_DIGEST_LABEL: &str = "containerd.io/snapshot/cri.layer-digest";
/// With [`IMAGE_REF_LABEL`]: the digest of the image's manifest (for this platform).
pub const MANIFEST_DIGEST_LABEL: &str = "containerd.io/snapshot/cri.manifest-digest";

/// How long a finished fetch of an image answers for it: Prepares of the same image (reference
/// and manifest) within this time do not fetch it again, so the layers of a pull whose fetch
/// failed go to containerd's own fetch without a new try each.
const FETCH_STANDS_FOR: Duration = Duration::from_secs(60);

/// What a fetch brought into the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The image's layers.
    pub layers: usize,
    /// Those of them downloaded and imported (the others the store had already).
    pub layers_fetched: usize,
}

/// The error of an [`ImageFetcher`], whatever its kind: it is logged, never returned to
/// containerd.
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Brings images into the store of a [`Snapshotter`]; `strata serve` pulls them from their
/// registry with `strata-registry`.
pub trait ImageFetcher: Send + Sync {
    /// Fetches image `reference` (as containerd names it), every layer of it, into the store.
    ///
    /// # Errors
    /// Whatever kept the image from the store; the Prepare that asked then goes on without it.
    fn fetch(&self, reference: &str) -> std::result::Result<Fetched, FetchError>;
}

/// A shared fetcher, for a caller that keeps a handle on it.
impl<F: ImageFetcher + ?Sized> ImageFetcher for Arc<F> {
    fn fetch(&self, reference: &str) -> std::result::Result<Fetched, FetchError> {
        (**self).fetch(reference)
    }
}

/// An [`ImageFetcher`] with the bookkeeping of [`Snapshotter::prepare_fetching`]: one fetch per
/// image at a time, and a count of the layers fetched.
pub struct Fetch {
    fetcher: Box<dyn ImageFetcher>,
    /// Per image (reference and manifest digest): when its last fetch finished. The lock is held
    /// through a fetch, so other Prepares of the image wait for it.
    flights: Mutex<HashMap<String, Arc<Mutex<Option<Instant>>>>>,
    layers_fetched: AtomicU64,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("layers_fetched", &self.layers_fetched())
            .finish_non_exhaustive()
    }
}

impl Fetch {
    /// Fetches through `fetcher`.
    pub fn new(fetcher: impl ImageFetcher + 'static) -> Fetch {
        Fetch {
            fetcher: Box::new(fetcher),
            flights: Mutex::new(HashMap::new()),
            layers_fetched: AtomicU64::new(0),
        }
    }

    /// Layers downloaded and imported by this handle's fetches so far.
    pub fn layers_fetched(&self) -> u64 {
        self.layers_fetched.load(Ordering::Relaxed)
    }

    /// Fetches `reference` unless a fetch of `image` finished within [`FETCH_STANDS_FOR`];
    /// waits for one in flight. Returns what this call fetched, if it fetched.
    fn fetch_once(&self, image: &str, reference: &str) -> Option<Fetched> {
        let flight = {
            let mut flights = lock(&self.flights);
            // A flight nobody else holds cannot be locked meanwhile: the map's lock is ours.
            flights.retain(|_, flight| {
                Arc::strong_count(flight) > 1
                    || lock(flight).is_some_and(|at| at.elapsed() < FETCH_STANDS_FOR)
            });
            flights.entry(image.to_owned()).or_default().clone()
        };
        let mut finished = lock(&flight);
        if finished.is_some_and(|at| at.elapsed() < FETCH_STANDS_FOR) {
            return None;
        }
        let outcome = self.fetcher.fetch(reference);
        *finished = Some(Instant::now());
        match outcome {
            Ok(fetched) => {
                self.layers_fetched
                    .fetch_add(fetched.layers_fetched as u64, Ordering::Relaxed);
                tracing::info!(
                    %reference,
                    layers = fetched.layers,
                    layers_fetched = fetched.layers_fetched,
                    "fetched an image for containerd"
                );
                Some(fetched)
            }
            Err(err) => {
                tracing::warn!(
                    %reference,
                    error = %err,
                    "fetching an image for containerd failed; containerd fetches its layers itself"
                );
                None
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Snapshotter {
    /// containerd's Prepare with remote snapshots and CRI-driven fetch: as
    /// [`Snapshotter::prepare_remote`], except that when `labels` carry
    /// [`TARGET_LABEL`], [`IMAGE_REF_LABEL`] and [`LAYER_DIGEST_LABEL`] and the store lacks the
    /// chain, `fetch` first brings the image into the store (see the module docs). Without
    /// the chain after that (the fetch failed, or the tag now names another image), prepares
    /// `key` as [`Snapshotter::prepare`] does, for containerd to unpack into.
    pub fn prepare_fetching(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
        fetch: &Fetch,
    ) -> Result<Vec<MountSpec>> {
        let (Some(target), Some(reference), Some(_)) = (
            labels.get(TARGET_LABEL),
            labels.get(IMAGE_REF_LABEL),
            labels.get(LAYER_DIGEST_LABEL),
        ) else {
            return self.prepare_remote(key, parent, labels);
        };
        let name = match self.commit_remote(target, parent, &labels)? {
            Some(name) => name,
            None => {
                let manifest = labels.get(MANIFEST_DIGEST_LABEL).map_or("", String::as_str);
                let fetched = fetch.fetch_once(&format!("{reference}@{manifest}"), reference);
                match self.commit_remote(target, parent, &labels)? {
                    Some(name) => name,
                    None => {
                        if fetched.is_some() {
                            tracing::warn!(
                                %reference,
                                %target,
                                "the fetched image has no such layer chain; containerd unpacks it"
                            );
                        }
                        return self.prepare(key, parent, labels);
                    }
                }
            }
        };
        Err(Error::RemoteSnapshot {
            key: key.to_owned(),
            target: target.clone(),
            name,
        })
    }
}

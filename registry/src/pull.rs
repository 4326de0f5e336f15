//! A pull: resolve a reference to one image manifest (choosing a platform from an index),
//! fetch its config, fetch the layers the store lacks several at once, and commit.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::{Reference, RegistryOperation};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Serialize;

use strata_layer_store::digest::{BadDigest, Sha256};
use strata_layer_store::{ImportOptions, LayerBlob, Progress, StagedLayer, Store};
use tokio::task::JoinSet;

use crate::classify;
use crate::fetch::{self, Fetched};
use crate::session::{MAX_DOCUMENT, Session, check_digest};
use crate::task::{self, Stop};
use crate::{Connection, Platform, PullError, RegistryError};

/// How to pull.
#[derive(Clone)]
#[non_exhaustive]
pub struct PullOptions {
    /// Registry credentials and transport.
    pub connection: Connection,
    /// The platform to choose from an index (default: this machine's).
    pub platform: Option<Platform>,
    /// Layers fetched at once (at least 1).
    pub jobs: usize,
    /// Tag the image with this name instead of the reference.
    pub name: Option<String>,
    /// Where to report progress.
    pub progress: Option<Arc<dyn Progress>>,
    /// Set to stop the pull at the next chunk (e.g. from a signal handler); downloaded bytes
    /// stay for the next pull to resume from. Dropping the future of
    /// [`Client::pull`](crate::Client::pull) does the same.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl PullOptions {
    /// With [`connection`](PullOptions::connection) set to `connection`.
    pub fn with_connection(mut self, connection: Connection) -> Self {
        self.connection = connection;
        self
    }

    /// With [`platform`](PullOptions::platform) set to `platform`.
    pub fn with_platform(mut self, platform: Option<Platform>) -> Self {
        self.platform = platform;
        self
    }

    /// With [`jobs`](PullOptions::jobs) set to `jobs`.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs;
        self
    }

    /// With [`name`](PullOptions::name) set to `name`.
    pub fn with_name(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    /// With [`progress`](PullOptions::progress) set to `progress`.
    pub fn with_progress(mut self, progress: Option<Arc<dyn Progress>>) -> Self {
        self.progress = progress;
        self
    }

    /// With [`cancel`](PullOptions::cancel) set to `cancel`.
    pub fn with_cancel(mut self, cancel: Option<Arc<AtomicBool>>) -> Self {
        self.cancel = cancel;
        self
    }
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            connection: Connection::default(),
            platform: None,
            jobs: 4,
            name: None,
            progress: None,
            cancel: None,
        }
    }
}

/// What happened to one layer of a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerFetch {
    /// Downloaded (perhaps resuming an earlier download) and imported.
    Fetched,
    /// The store already had a layer with this diff_id; nothing moved.
    Present,
}

/// One layer of a pull.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PulledLayer {
    /// The blob's digest.
    pub digest: String,
    /// The layer's diff_id.
    pub diff_id: String,
    /// The blob's size.
    pub size: u64,
    /// What happened.
    pub fetch: LayerFetch,
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PullReport {
    /// The reference pulled.
    pub reference: String,
    /// The image id (manifest digest hex; `sha256:<hex>` in JSON).
    #[serde(serialize_with = "strata_layer_store::digest::serialize_id")]
    pub image: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its layers, bottom first.
    pub layers: Vec<PulledLayer>,
    /// Blob bytes downloaded by this pull.
    pub bytes_fetched: u64,
    /// Blob bytes an interrupted pull had left on disk, not downloaded again.
    pub bytes_resumed: u64,
    /// Blob bytes of layers the store already had, not downloaded.
    pub bytes_present: u64,
    /// Content objects written.
    pub objects_new: u64,
    /// Regular files of fetched layers whose content the store already had (deduplicated).
    pub objects_existing: u64,
}

const MANIFEST_TYPES: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// What the tasks of one pull share.
pub(crate) struct Pull {
    pub store: Arc<Store>,
    pub session: Session,
    /// The image's layers, bottom first.
    pub blobs: Vec<LayerBlob>,
    pub progress: Option<Arc<dyn Progress>>,
    pub stop: Stop,
}

/// Pulls `reference` into `store`: see [`Client::pull`](crate::Client::pull).
pub(crate) async fn pull(
    store: &Arc<Store>,
    reference: &str,
    options: &PullOptions,
) -> Result<PullReport, RegistryError> {
    let session = Session::new(reference, &options.connection)?;
    session.authenticate(RegistryOperation::Pull).await?;
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let manifest = resolve(&session, &platform).await?;
    let (config, blobs) = layers(&session, &manifest).await?;

    // Hold the store open for adding until the commit, so GC leaves tmp/pull alone.
    let held = store.clone();
    let _hold = task::blocking(move || held.hold()).await??;
    let lookup = (store.clone(), blobs.clone());
    let mut missing = task::blocking(move || {
        let (store, blobs) = lookup;
        let mut missing: Vec<usize> = Vec::new();
        for (i, blob) in blobs.iter().enumerate() {
            let repeated = missing.iter().any(|&j| blobs[j].diff_id == blob.diff_id);
            // A layer the store has from another blob is fetched again when the store keeps
            // blobs: that blob is what the image's export and push must write.
            if !repeated && !store.has_layer_blob(&blob.diff_id, &blob.digest)? {
                missing.push(i);
            }
        }
        Ok::<_, RegistryError>(missing)
    })
    .await??;
    if let Some(progress) = &options.progress {
        progress.start(missing.iter().map(|&i| blobs[i].size).sum());
    }
    // Largest first: with fewer jobs than layers, a big layer started last would be the
    // tail the whole pull waits for.
    missing.sort_by_key(|&i| std::cmp::Reverse(blobs[i].size));
    let stop = Stop::new(options.cancel.clone());
    let _stop_on_drop = stop.on_drop();
    let pull = Arc::new(Pull {
        store: store.clone(),
        session,
        blobs,
        progress: options.progress.clone(),
        stop,
    });
    let mut fetched = fetch_all(&pull, missing, options.jobs).await?;
    let (staged, partials): (Vec<StagedLayer>, Vec<_>) =
        fetched.iter_mut_staged().into_iter().unzip();
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| pull.session.name.clone());
    let committer = store.clone();
    let report = task::blocking(move || {
        // Every layer is verified and staged: the partial downloads have done their job, and
        // removing them before the commit's `syncfs` spares writing them to disk.
        for partial in partials {
            let _ = fs::remove_file(partial);
        }
        let import = ImportOptions::default().with_name(Some(name));
        committer.commit_staged(&manifest, &config, staged, &import)
    })
    .await??;
    let layers: Vec<PulledLayer> = pull
        .blobs
        .iter()
        .enumerate()
        .map(|(i, b)| PulledLayer {
            digest: b.digest.to_string(),
            diff_id: b.diff_id.to_string(),
            size: b.size,
            fetch: if fetched.fetched(i) {
                LayerFetch::Fetched
            } else {
                LayerFetch::Present
            },
        })
        .collect();
    Ok(PullReport {
        reference: pull.session.name.clone(),
        image: report.image,
        tags: report.tags,
        bytes_present: layers
            .iter()
            .filter(|l| l.fetch == LayerFetch::Present)
            .map(|l| l.size)
            .sum(),
        layers,
        bytes_fetched: fetched.network(),
        bytes_resumed: fetched.resumed(),
        objects_new: report.objects_new,
        objects_existing: report.objects_existing,
    })
}

/// Fetches the config `manifest` names; returns it with the layer blobs both describe.
async fn layers(
    session: &Session,
    manifest: &[u8],
) -> Result<(Vec<u8>, Vec<LayerBlob>), RegistryError> {
    let bad = |digest: &str, reason: String| RegistryError::BadDocument {
        reference: session.name.clone(),
        digest: digest.to_owned(),
        reason,
    };
    let manifest_digest = Sha256::of(manifest).to_string();
    let parsed =
        ImageManifest::from_reader(manifest).map_err(|e| bad(&manifest_digest, e.to_string()))?;
    let config_desc = parsed.config();
    let config = session
        .fetch_document(config_desc.digest().as_ref(), config_desc.size())
        .await?;
    let config_digest = config_desc.digest().to_string();
    let diff_ids = ImageConfiguration::from_reader(&config[..])
        .map_err(|e| bad(&config_digest, e.to_string()))?
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            d.parse::<Sha256>()
                .map_err(|e| bad(&config_digest, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != parsed.layers().len() {
        let reason = format!(
            "{} diff_ids for {} manifest layers",
            diff_ids.len(),
            parsed.layers().len()
        );
        return Err(bad(&config_digest, reason));
    }
    let mut blobs = Vec::with_capacity(diff_ids.len());
    for (desc, diff_id) in parsed.layers().iter().zip(diff_ids) {
        let media_type = desc.media_type().to_string();
        let digest = desc.digest().to_string();
        if !media_type.starts_with("application/vnd.oci.image.layer.")
            && !media_type.starts_with("application/vnd.docker.image.rootfs.")
        {
            return Err(PullError::UnsupportedMediaType {
                reference: session.name.clone(),
                digest,
                media_type,
            }
            .into());
        }
        let digest = digest
            .parse()
            .map_err(|e: BadDigest| bad(&manifest_digest, e.to_string()))?;
        blobs.push(LayerBlob {
            digest,
            size: desc.size(),
            diff_id,
        });
    }
    Ok((config, blobs))
}

/// Fetches and stages layers `missing` of the pull with up to `jobs` tasks; the first error
/// stops the others from starting more.
async fn fetch_all(
    pull: &Arc<Pull>,
    missing: Vec<usize>,
    jobs: usize,
) -> Result<FetchedSet, RegistryError> {
    let missing = Arc::new(missing);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut workers = JoinSet::new();
    for _ in 0..jobs.max(1).min(missing.len()) {
        let (pull, missing) = (pull.clone(), missing.clone());
        let (next, failed) = (next.clone(), failed.clone());
        workers.spawn(async move {
            let mut results = Vec::new();
            while !failed.load(Ordering::Relaxed) {
                let Some(&index) = missing.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let result = fetch::fetch_layer(&pull, index).await;
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                results.push((index, result));
            }
            results
        });
    }
    let mut results: Vec<(usize, FetchResult)> = crate::task::join_all(workers).await?;
    let mut set = FetchedSet(Vec::new());
    let mut first_err = None;
    results.sort_by_key(|(i, _)| *i);
    for (index, result) in results {
        match result {
            Ok(Some(f)) => set.0.push((index, f)),
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(set),
    }
}

type FetchResult = Result<Option<Fetched>, RegistryError>;

/// The layers a pull fetched, by index.
struct FetchedSet(Vec<(usize, Fetched)>);

impl FetchedSet {
    fn fetched(&self, index: usize) -> bool {
        self.0.iter().any(|(i, _)| *i == index)
    }

    fn network(&self) -> u64 {
        self.0.iter().map(|(_, f)| f.network).sum()
    }

    fn resumed(&self) -> u64 {
        self.0.iter().map(|(_, f)| f.resumed).sum()
    }

    /// Hands over the staged layers, with the partial download each came from.
    fn iter_mut_staged(&mut self) -> Vec<(StagedLayer, std::path::PathBuf)> {
        self.0
            .iter_mut()
            .filter_map(|(_, f)| f.staged.take().map(|s| (s, f.partial.clone())))
            .collect()
    }
}

/// Fetches the manifest `session` names, descending through an index to the one for
/// `platform`; returns its bytes, checked against the digest that named them.
async fn resolve(session: &Session, platform: &Platform) -> Result<Vec<u8>, RegistryError> {
    let mut reference = session.reference.clone();
    // An index may name another index; two levels are plenty.
    for _ in 0..3 {
        let (bytes, digest) = session
            .client
            .pull_manifest_raw(&reference, &session.auth, &MANIFEST_TYPES)
            .await
            .map_err(|e| missing_manifest(session, &reference, e))?;
        let bad = |reason: String| RegistryError::BadDocument {
            reference: session.name.clone(),
            digest: digest.clone(),
            reason,
        };
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(bad("too large for a manifest".to_owned()));
        }
        if let Some(want) = reference.digest() {
            check_digest(&bytes, want, bytes.len() as u64).map_err(bad)?;
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if value.get("manifests").is_none() {
            return Ok(bytes.to_vec());
        }
        let index = ImageIndex::from_reader(&bytes[..]).map_err(|e| bad(e.to_string()))?;
        let chosen = index
            .manifests()
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == platform.os
                        && p.architecture().to_string() == platform.architecture
                        && (platform.variant.is_none()
                            || p.variant().as_deref() == platform.variant.as_deref())
                })
            })
            .ok_or_else(|| PullError::NoPlatform {
                reference: session.name.clone(),
                platform: platform.to_string(),
            })?;
        reference = reference.clone_with_digest(chosen.digest().to_string());
    }
    Err(RegistryError::BadDocument {
        reference: session.name.clone(),
        digest: reference.digest().unwrap_or_default().to_owned(),
        reason: "indexes nested too deeply".to_owned(),
    })
}

/// The error for a manifest request of `reference` that failed with `source`: the registry's
/// "not found" names the tag (or digest) and repository, anything else what the client said.
fn missing_manifest(
    session: &Session,
    reference: &Reference,
    source: OciDistributionError,
) -> RegistryError {
    if !classify::is_not_found(&source) {
        return session.fail("manifest")(source);
    }
    let repository = format!("{}/{}", reference.registry(), reference.repository());
    match reference.digest() {
        Some(digest) => PullError::ManifestNotFound {
            digest: digest.to_owned(),
            repository,
        },
        None => PullError::TagNotFound {
            tag: reference.tag().unwrap_or("latest").to_owned(),
            repository,
        },
    }
    .into()
}

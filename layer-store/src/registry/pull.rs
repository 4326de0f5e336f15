//! `Store::pull`: resolve a reference to one image manifest (choosing a platform from an
//! index), fetch its config, fetch the layers the store lacks several at once, and commit.

use std::fs;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oci_client::RegistryOperation;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Serialize;

use crate::digest::Sha256;
use crate::import::{ImportOptions, LayerBlob, StagedLayer};
use crate::lock::LockMode;
use crate::registry::fetch::{self, Fetched};
use crate::registry::session::{MAX_DOCUMENT, Session, check_digest};
use crate::registry::{Connection, Platform, RegistryError};
use crate::store::Store;

/// Receives the progress of a pull, per layer, from several threads.
pub trait PullProgress: Sync {
    /// Layer `index` (bottom first) of blob `digest`, `size` bytes, starts; `resumed` of them
    /// are already on disk from an interrupted pull.
    fn layer_start(&self, index: usize, digest: &Sha256, size: u64, resumed: u64);
    /// `bytes` more of layer `index` were imported.
    fn layer_advance(&self, index: usize, bytes: u64);
    /// Layer `index` is imported and verified.
    fn layer_done(&self, index: usize);
}

/// How to pull.
pub struct PullOptions<'a> {
    /// Registry credentials and transport.
    pub connection: Connection,
    /// The platform to choose from an index (default: this machine's).
    pub platform: Option<Platform>,
    /// Layers fetched at once (at least 1).
    pub jobs: usize,
    /// Tag the image with this name instead of the reference.
    pub name: Option<String>,
    /// Where to report progress.
    pub progress: Option<&'a dyn PullProgress>,
    /// Set to stop the pull at the next chunk (e.g. from a signal handler); downloaded bytes
    /// stay for the next pull to resume from.
    pub cancel: Option<&'a AtomicBool>,
}

impl Default for PullOptions<'_> {
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
pub struct PullReport {
    /// The reference pulled.
    pub reference: String,
    /// The image id (manifest digest hex).
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

impl Store {
    /// Pulls `reference` (`registry/repository[:tag][@digest]`) into the store and tags the
    /// image with it (or [`PullOptions::name`]). Only layers whose diff_id the store lacks are
    /// downloaded; each is verified (digest, size, diff_id) while it streams into the import.
    pub fn pull(
        &self,
        reference: &str,
        options: &PullOptions<'_>,
    ) -> Result<PullReport, RegistryError> {
        let session = Session::new(reference, &options.connection)?;
        session.authenticate(RegistryOperation::Pull)?;
        let platform = options.platform.clone().unwrap_or_else(Platform::host);
        let manifest = resolve(&session, &platform)?;
        let bad = |digest: &str, reason: String| RegistryError::BadDocument {
            reference: session.name.clone(),
            digest: digest.to_owned(),
            reason,
        };
        let manifest_digest = Sha256::of(&manifest).to_string();
        let parsed = ImageManifest::from_reader(&manifest[..])
            .map_err(|e| bad(&manifest_digest, e.to_string()))?;
        let config_desc = parsed.config();
        let config = session.fetch_document(config_desc.digest().as_ref(), config_desc.size())?;
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
                return Err(RegistryError::UnsupportedMediaType {
                    reference: session.name.clone(),
                    digest,
                    media_type,
                });
            }
            let digest = digest
                .parse()
                .map_err(|e: crate::digest::BadDigest| bad(&manifest_digest, e.to_string()))?;
            blobs.push(LayerBlob {
                digest,
                size: desc.size(),
                diff_id,
            });
        }

        // Hold the store open for adding until the commit, so GC leaves tmp/pull alone.
        let _lock = self.lock(LockMode::Shared)?;
        let mut missing: Vec<usize> = Vec::new();
        for (i, blob) in blobs.iter().enumerate() {
            let repeated = missing.iter().any(|&j| blobs[j].diff_id == blob.diff_id);
            if !repeated && !self.has_layer(&blob.diff_id)? {
                missing.push(i);
            }
        }
        // Largest first: with fewer jobs than layers, a big layer started last would be the
        // tail the whole pull waits for.
        missing.sort_by_key(|&i| std::cmp::Reverse(blobs[i].size));
        let mut fetched = self.fetch_all(&session, &blobs, &missing, options)?;
        let (staged, partials): (Vec<StagedLayer>, Vec<_>) =
            fetched.iter_mut_staged().into_iter().unzip();
        let name = options.name.clone().unwrap_or_else(|| session.name.clone());
        let import = ImportOptions {
            name: Some(name),
            ..ImportOptions::default()
        };
        // Every layer is verified and staged: the partial downloads have done their job, and
        // removing them before the commit's `syncfs` spares writing them to disk.
        for partial in partials {
            let _ = fs::remove_file(partial);
        }
        let report = self.commit_image(&manifest, &config, staged, &import)?;
        let layers: Vec<PulledLayer> = blobs
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
            reference: session.name.clone(),
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

    /// Fetches and stages layers `missing` of `blobs` with up to `options.jobs` threads; the
    /// first error stops the others from starting more.
    fn fetch_all(
        &self,
        session: &Session,
        blobs: &[LayerBlob],
        missing: &[usize],
        options: &PullOptions<'_>,
    ) -> Result<FetchedSet, RegistryError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<(usize, FetchResult)>> = Mutex::new(Vec::new());
        let workers = options.jobs.max(1).min(missing.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let Some(&index) = missing.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let result =
                            fetch::fetch_layer(self, session, index, &blobs[index], options);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((index, result));
                    }
                });
            }
        });
        let mut set = FetchedSet(Vec::new());
        let mut first_err = None;
        let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
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
fn resolve(session: &Session, platform: &Platform) -> Result<Vec<u8>, RegistryError> {
    let mut reference = session.reference.clone();
    // An index may name another index; two levels are plenty.
    for _ in 0..3 {
        let (bytes, digest) = session
            .block_on(
                session
                    .client
                    .pull_manifest_raw(&reference, &session.auth, &MANIFEST_TYPES),
            )
            .map_err(session.fail("manifest"))?;
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
            .ok_or_else(|| RegistryError::NoPlatform {
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

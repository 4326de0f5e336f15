//! A push: upload the blobs the registry lacks (asking first, then mounting from another
//! repository of the registry that has them, see [`MountSources`]), several at once, then the
//! config and the manifest, unless the tag already names that manifest.
//! Blobs stream from the store's bit-exact export (see `upload`), so they hash to the digests
//! the image was pulled or imported with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oci_client::RegistryOperation;
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use serde::Serialize;
use strata_layer_store::digest::Sha256;
use strata_layer_store::{PartEnd, Progress, Store};
use tokio::task::JoinSet;

use crate::session::Session;
use crate::sources::MountSources;
use crate::task;
use crate::upload::{self, UploadedBlob};
use crate::{Connection, RegistryError};

/// How to push.
#[derive(Clone)]
#[non_exhaustive]
pub struct PushOptions {
    /// Registry credentials and transport.
    pub connection: Connection,
    /// Blobs uploaded at once (at least 1).
    pub jobs: usize,
    /// A repository of the same registry to mount missing blobs from before uploading them,
    /// tried before the repositories the store's image names point to.
    pub mount_from: Option<String>,
    /// Where to report progress: the layer blobs' bytes, counted as they are sent (a blob the
    /// registry has, or mounts, counts at once).
    pub progress: Option<Arc<dyn Progress>>,
}

impl PushOptions {
    /// With [`connection`](PushOptions::connection) set to `connection`.
    pub fn with_connection(mut self, connection: Connection) -> Self {
        self.connection = connection;
        self
    }

    /// With [`jobs`](PushOptions::jobs) set to `jobs`.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs;
        self
    }

    /// With [`mount_from`](PushOptions::mount_from) set to `mount_from`.
    pub fn with_mount_from(mut self, mount_from: Option<String>) -> Self {
        self.mount_from = mount_from;
        self
    }

    /// With [`progress`](PushOptions::progress) set to `progress`.
    pub fn with_progress(mut self, progress: Option<Arc<dyn Progress>>) -> Self {
        self.progress = progress;
        self
    }
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            connection: Connection::default(),
            jobs: 4,
            mount_from: None,
            progress: None,
        }
    }
}

/// What happened to one blob of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobOutcome {
    /// The registry already had it.
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// One blob of a push.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PushedBlob {
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// What happened.
    pub outcome: BlobOutcome,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PushReport {
    /// The reference pushed to.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The layer blobs, bottom first, then the config.
    pub blobs: Vec<PushedBlob>,
    /// Bytes uploaded (blobs and manifest).
    pub bytes_uploaded: u64,
    /// Whether the manifest was uploaded: not when the tag already named it.
    pub manifest_uploaded: bool,
}

/// Pushes image `name` of `store` to `reference`: see [`Client::push`](crate::Client::push).
pub(crate) async fn push(
    store: &Arc<Store>,
    name: &str,
    reference: &str,
    options: &PushOptions,
) -> Result<PushReport, RegistryError> {
    let (reader, owned) = (store.clone(), name.to_owned());
    let image = task::blocking(move || reader.image(&owned)).await??;
    let session = Arc::new(Session::new(reference, &options.connection)?);
    session.authenticate(RegistryOperation::Push).await?;
    let held = store.clone();
    let _hold = task::blocking(move || held.hold()).await??;
    let bad = |reason: String| RegistryError::BadDocument {
        reference: session.name.clone(),
        digest: image.manifest_digest.to_string(),
        reason,
    };
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&image.manifest).map_err(|e| bad(e.to_string()))?;
    let described: Vec<String> = (0..image.layers.len())
        .map(|i| manifest["layers"][i]["digest"].as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("a layer descriptor has no digest".to_owned()))?;
    let (reader, target, named) = (
        store.clone(),
        session.reference.clone(),
        options.mount_from.clone(),
    );
    let sources =
        task::blocking(move || MountSources::find(&reader, &target, named.as_deref())).await??;
    if let Some(progress) = &options.progress {
        let sizes = (0..image.layers.len()).filter_map(|i| manifest["layers"][i]["size"].as_u64());
        progress.start(sizes.sum());
    }
    let layers = Arc::new(Layers {
        store: store.clone(),
        session: session.clone(),
        diff_ids: image.layers.clone(),
        described: described.clone(),
        sources,
        progress: options.progress.clone(),
    });
    let pushed = push_layers(&layers, options.jobs).await?;
    let mut blobs = Vec::new();
    for (i, blob) in pushed.into_iter().enumerate() {
        // An export that could not reproduce the imported compression is a new blob.
        if blob.digest != described[i] {
            manifest["layers"][i]["digest"] = blob.digest.clone().into();
            manifest["layers"][i]["size"] = blob.size.into();
        }
        blobs.push(blob);
    }
    let config_digest = Sha256::of(&image.config).to_string();
    let outcome = match present_or_mounted(&session, &layers.sources, &config_digest).await? {
        Some(outcome) => outcome,
        None => {
            session
                .client
                .push_blob(&session.reference, image.config.clone(), &config_digest)
                .await
                .map_err(session.fail(format!("upload {config_digest}")))?;
            BlobOutcome::Uploaded
        }
    };
    blobs.push(PushedBlob {
        digest: config_digest,
        size: image.config.len() as u64,
        outcome,
    });
    let rewritten = blobs.iter().zip(&described).any(|(b, d)| b.digest != *d);
    let manifest_bytes = if rewritten {
        serde_json::to_vec(&manifest).map_err(|e| bad(e.to_string()))?
    } else {
        image.manifest.clone()
    };
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or(OCI_IMAGE_MEDIA_TYPE)
        .parse()
        .map_err(|_| bad("media type is not a header value".to_owned()))?;
    let manifest_digest = Sha256::of(&manifest_bytes).to_string();
    // A tag that names this manifest already: nothing to send (any failure to ask means send).
    let tagged = session
        .client
        .fetch_manifest_digest(&session.reference, &session.auth)
        .await
        .is_ok_and(|digest| digest == manifest_digest);
    let manifest_len = if tagged {
        0
    } else {
        manifest_bytes.len() as u64
    };
    if !tagged {
        session
            .client
            .push_manifest_raw(&session.reference, manifest_bytes, media_type)
            .await
            .map_err(session.fail("manifest upload"))?;
    }
    Ok(PushReport {
        reference: session.name.clone(),
        manifest: manifest_digest,
        manifest_uploaded: !tagged,
        bytes_uploaded: manifest_len
            + blobs
                .iter()
                .filter(|b| b.outcome == BlobOutcome::Uploaded)
                .map(|b| b.size)
                .sum::<u64>(),
        blobs,
    })
}

/// What the tasks pushing one image's layers share.
struct Layers {
    store: Arc<Store>,
    session: Arc<Session>,
    /// The image's layers, bottom first.
    diff_ids: Vec<Sha256>,
    /// The blob digest each layer's manifest descriptor names.
    described: Vec<String>,
    /// Where to mount missing blobs from.
    sources: MountSources,
    progress: Option<Arc<dyn Progress>>,
}

/// Whether the registry has blob `digest` in the session's repository.
async fn blob_present(session: &Session, digest: &str) -> Result<bool, RegistryError> {
    session
        .client
        .blob_exists(&session.reference, digest)
        .await
        .map_err(session.fail(format!("HEAD {digest}")))
}

/// Whether the target repository has blob `digest` already, or now by a mount from one of
/// `sources`; `None` when it must be uploaded.
async fn present_or_mounted(
    session: &Session,
    sources: &MountSources,
    digest: &str,
) -> Result<Option<BlobOutcome>, RegistryError> {
    if blob_present(session, digest).await? {
        return Ok(Some(BlobOutcome::Present));
    }
    for source in sources.of(digest) {
        let mounted = session
            .client
            .mount_blob(&session.reference, source, digest)
            .await;
        // A registry that cannot mount answers with an upload session instead: try the next.
        if mounted.is_ok() && blob_present(session, digest).await? {
            return Ok(Some(BlobOutcome::Mounted));
        }
    }
    Ok(None)
}

/// Pushes each layer with up to `jobs` tasks; returns each blob, in order. The first error
/// stops the others from starting more.
async fn push_layers(layers: &Arc<Layers>, jobs: usize) -> Result<Vec<PushedBlob>, RegistryError> {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut workers = JoinSet::new();
    for _ in 0..jobs.max(1).min(layers.diff_ids.len()) {
        let (layers, next, failed) = (layers.clone(), next.clone(), failed.clone());
        workers.spawn(async move {
            let mut results = Vec::new();
            while !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= layers.diff_ids.len() {
                    break;
                }
                let result = push_layer(&layers, i).await;
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                results.push((i, result));
            }
            results
        });
    }
    let mut results = crate::task::join_all(workers).await?;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Pushes layer `i`.
async fn push_layer(layers: &Layers, i: usize) -> Result<PushedBlob, RegistryError> {
    let session = &layers.session;
    let described = &layers.described[i];
    let (store, id) = (layers.store.clone(), layers.diff_ids[i].hex());
    let record = task::blocking(move || store.layer_record(&id)).await??;
    let done = |outcome| {
        if let Some(progress) = &layers.progress {
            progress.advance(i, record.blob_size);
            progress.part_finished(i, PartEnd::Reused);
        }
        Ok(PushedBlob {
            digest: described.clone(),
            size: record.blob_size,
            outcome,
        })
    };
    if let Some(outcome) = present_or_mounted(session, &layers.sources, described).await? {
        return done(outcome);
    }
    let blob = described.parse().map_err(|_| RegistryError::BadDocument {
        reference: session.name.clone(),
        digest: described.clone(),
        reason: "a layer descriptor's digest is not sha256".to_owned(),
    })?;
    let UploadedBlob { digest, size } = upload::upload_layer(
        &layers.store,
        session,
        record.clone(),
        blob,
        layers.progress.clone().map(|sink| {
            Arc::new(crate::fetch::LayerProgress { index: i, sink }) as Arc<dyn Progress>
        }),
    )
    .await?;
    if let Some(progress) = &layers.progress {
        progress.part_finished(i, PartEnd::Done);
    }
    Ok(PushedBlob {
        digest: digest.to_string(),
        size,
        outcome: BlobOutcome::Uploaded,
    })
}

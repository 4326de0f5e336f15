//! `Store::push`: upload the blobs the registry lacks (asking first, mounting from another
//! repository when told where to look), several at once, then the config and the manifest.
//! Blobs stream from the store's bit-exact export (see `upload`), so they hash to the digests
//! the image was pulled or imported with.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::{Reference, RegistryOperation};
use serde::Serialize;

use crate::digest::Sha256;
use crate::lock::LockMode;
use crate::registry::session::Session;
use crate::registry::upload::UploadedBlob;
use crate::registry::{Connection, RegistryError};
use crate::store::Store;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Registry credentials and transport.
    pub connection: Connection,
    /// Blobs uploaded at once (at least 1).
    pub jobs: usize,
    /// A repository of the same registry to mount missing blobs from before uploading them.
    pub mount_from: Option<String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            connection: Connection::default(),
            jobs: 4,
            mount_from: None,
        }
    }
}

/// What happened to one blob of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobOutcome {
    /// The registry already had it.
    Present,
    /// Mounted from [`PushOptions::mount_from`].
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// One blob of a push.
#[derive(Debug, Clone, Serialize)]
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
pub struct PushReport {
    /// The reference pushed to.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The layer blobs, bottom first, then the config.
    pub blobs: Vec<PushedBlob>,
    /// Bytes uploaded (blobs and manifest).
    pub bytes_uploaded: u64,
}

impl Store {
    /// Pushes image `name` to `reference`.
    pub fn push(
        &self,
        name: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<PushReport, RegistryError> {
        let image = self.image(name)?;
        let session = Session::new(reference, &options.connection)?;
        session.authenticate(RegistryOperation::Push)?;
        let _lock = self.lock(LockMode::Shared)?;
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
        let mount = options.mount_from.as_ref().map(|repo| {
            Reference::with_tag(
                session.reference.registry().to_owned(),
                repo.clone(),
                "latest".to_owned(),
            )
        });
        let layers = self.push_layers(
            &session,
            &image.layers,
            &described,
            mount.as_ref(),
            options.jobs,
        )?;
        let mut blobs = Vec::new();
        for (i, blob) in layers.into_iter().enumerate() {
            // An export that could not reproduce the imported compression is a new blob.
            if blob.digest != described[i] {
                manifest["layers"][i]["digest"] = blob.digest.clone().into();
                manifest["layers"][i]["size"] = blob.size.into();
            }
            blobs.push(blob);
        }
        let config_digest = Sha256::of(&image.config).to_string();
        let outcome = if self.blob_present(&session, &config_digest)? {
            BlobOutcome::Present
        } else {
            session
                .block_on(session.client.push_blob(
                    &session.reference,
                    image.config.clone(),
                    &config_digest,
                ))
                .map_err(session.fail(format!("upload {config_digest}")))?;
            BlobOutcome::Uploaded
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
        let manifest_len = manifest_bytes.len() as u64;
        let manifest_digest = Sha256::of(&manifest_bytes).to_string();
        session
            .block_on(session.client.push_manifest_raw(
                &session.reference,
                manifest_bytes,
                media_type,
            ))
            .map_err(session.fail("manifest upload"))?;
        Ok(PushReport {
            reference: session.name.clone(),
            manifest: manifest_digest,
            bytes_uploaded: manifest_len
                + blobs
                    .iter()
                    .filter(|b| b.outcome == BlobOutcome::Uploaded)
                    .map(|b| b.size)
                    .sum::<u64>(),
            blobs,
        })
    }

    fn blob_present(&self, session: &Session, digest: &str) -> Result<bool, RegistryError> {
        session
            .block_on(session.client.blob_exists(&session.reference, digest))
            .map_err(session.fail(format!("HEAD {digest}")))
    }

    /// Pushes each layer with up to `jobs` threads; returns each blob, in order.
    fn push_layers(
        &self,
        session: &Session,
        diff_ids: &[Sha256],
        described: &[String],
        mount: Option<&Reference>,
        jobs: usize,
    ) -> Result<Vec<PushedBlob>, RegistryError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1).min(diff_ids.len()) {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(diff_id) = diff_ids.get(i) else {
                            break;
                        };
                        let result = self.push_layer(session, diff_id, &described[i], mount);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((i, result));
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    /// Pushes one layer whose manifest descriptor names `described`.
    fn push_layer(
        &self,
        session: &Session,
        diff_id: &Sha256,
        described: &str,
        mount: Option<&Reference>,
    ) -> Result<PushedBlob, RegistryError> {
        let record = self.layer_record(&diff_id.hex())?;
        let done = |outcome| {
            Ok(PushedBlob {
                digest: described.to_owned(),
                size: record.blob_size,
                outcome,
            })
        };
        if self.blob_present(session, described)? {
            return done(BlobOutcome::Present);
        }
        if let Some(source) = mount {
            let mounted = session.block_on(session.client.mount_blob(
                &session.reference,
                source,
                described,
            ));
            // A registry that cannot mount answers with an upload session instead: upload.
            if mounted.is_ok() && self.blob_present(session, described)? {
                return done(BlobOutcome::Mounted);
            }
        }
        let UploadedBlob { digest, size } = self.upload_layer(session, &record)?;
        let digest = digest.to_string();
        Ok(PushedBlob {
            digest,
            size,
            outcome: BlobOutcome::Uploaded,
        })
    }
}

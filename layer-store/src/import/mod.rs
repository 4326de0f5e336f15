//! Import of images and layers: OCI image layouts (directories or archives), `docker save`
//! archives, and single layer tars; plain, gzip or zstd, detected by magic.
//!
//! Every blob is verified while it streams (digest and size of the blob, diff_id of the tar,
//! manifest and config digests). Objects and records are staged under `tmp/`; only when every
//! layer of the image verified are they renamed into place, synced once (syncfs), and named by a
//! single database transaction, the commit point. A failed import leaves nothing behind.

mod layer;
mod pipe;
mod remote;
mod source;

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use oci_spec::image::{
    Arch, Descriptor, ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os, RootFs,
};
use rayon::prelude::*;
use serde::Serialize;

use crate::blobs::BlobPolicy;
use crate::compress::Format;
use crate::db::{IMAGES, LAYERS, names};
use crate::digest::{Digest, Sha256};
use crate::durable::Written;
use crate::error::{IoContext, StoreError};
use crate::lock::LockMode;
use crate::materialize::{MaterializeError, build_tree, probe_strategy};
use crate::progress::{PartOf, Progress};
use crate::record::{self, Compression, ImageRecord, Kind, LayerMeta, Strategy, chain_ids};
use crate::store::Store;
use layer::Staged;
use source::{Blobs, Plan};
use strata_codec::Limits;
use strata_metadb::Tx;

pub use remote::{LayerBlob, StagedLayer};
pub(crate) use source::parse_json;

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The source is none of the supported formats.
    #[error("{path}: not an OCI image layout, OCI archive, docker archive or layer tar")]
    UnknownSource {
        /// The source path.
        path: std::path::PathBuf,
    },
    /// A blob the source refers to is not there.
    #[error("blob {blob} is missing from the source")]
    MissingBlob {
        /// The blob's name in the source.
        blob: String,
    },
    /// Reading a blob failed (truncated, corrupt compression, I/O).
    #[error("reading blob {blob}")]
    Read {
        /// The blob's name in the source.
        blob: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A layer's tar cannot be taken apart, or goes over a limit.
    #[error("layer {blob}")]
    Layer {
        /// The blob's name in the source.
        blob: String,
        /// What is wrong, where.
        #[source]
        source: crate::tarstream::TarError,
    },
    /// A source, or a blob in it, is not a regular file (a FIFO, a device, a socket).
    #[error("{path}: not a regular file or directory")]
    NotRegularFile {
        /// The path, or the blob's name in the source.
        path: std::path::PathBuf,
    },
    /// The source's indexes go over one of the import's limits.
    #[error(
        "{limit} would be {value}, over the limit of {max} (raise it only for a trusted source)"
    )]
    OverLimit {
        /// Which limit.
        limit: strata_codec::Limit,
        /// What the source would need.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// A blob does not hash (or measure) to what its descriptor says.
    #[error("blob {blob}: {check} is {actual}, expected {expected}")]
    Mismatch {
        /// The blob's name in the source.
        blob: String,
        /// Which of the blob's checks failed.
        check: BlobCheck,
        /// What the manifest or config says.
        expected: String,
        /// What the bytes say.
        actual: String,
    },
    /// A digest string is malformed.
    #[error("malformed digest {digest:?}")]
    BadDigest {
        /// The string.
        digest: String,
    },
    /// A JSON document does not parse as what it should be.
    #[error("{blob} is not {expected}")]
    BadJson {
        /// The blob's name in the source.
        blob: String,
        /// What it should be.
        expected: Document,
        /// Where and why the parser stopped.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON document is unreasonably large.
    #[error("{blob} is too large for a JSON document")]
    TooLarge {
        /// The blob's name.
        blob: String,
    },
    /// A manifest lists a layer of a media type that is not a layer tar.
    #[error("layer {blob} has unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The blob's digest.
        blob: String,
        /// The media type.
        media_type: String,
    },
    /// Manifest and config disagree on the number of layers.
    #[error("manifest lists {manifest} layers, config {config} diff_ids")]
    LayerCount {
        /// Layers in the manifest.
        manifest: usize,
        /// diff_ids in the config.
        config: usize,
    },
    /// The source holds no image.
    #[error("the source holds no image for this platform")]
    NoImage,
    /// The source holds several images and nothing chose one.
    #[error("the source holds {count} images; choose one with --name")]
    AmbiguousImage {
        /// How many.
        count: usize,
    },
    /// The store failed underneath the import (I/O, database, a layer that does not
    /// materialize); nothing of the import became visible.
    #[error(transparent)]
    Store(Box<StoreError>),
}

/// A JSON document of an image, named in [`ImportError::BadJson`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Document {
    /// An OCI image index (`index.json`, or one it names).
    Index,
    /// An OCI image manifest.
    Manifest,
    /// An OCI image config.
    Config,
    /// The `manifest.json` of a `docker save` archive.
    DockerManifest,
}

impl std::fmt::Display for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Document::Index => "an OCI image index",
            Document::Manifest => "an OCI image manifest",
            Document::Config => "an OCI image config",
            Document::DockerManifest => "a docker save manifest list",
        })
    }
}

/// What a blob is checked for while it streams in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlobCheck {
    /// The sha256 (or sha512) of the blob as stored, which its descriptor names.
    Digest,
    /// The length of the blob, which its descriptor gives.
    Size,
    /// The sha256 of the uncompressed tar, which the image config lists.
    DiffId,
}

impl std::fmt::Display for BlobCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobCheck::Digest => "digest",
            BlobCheck::Size => "size",
            BlobCheck::DiffId => "diff_id",
        })
    }
}

/// Whether an import also builds the stub trees of the layers it stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StagedTree {
    /// Only objects and records; materialize later.
    None,
    /// Also a tree of metadata-only stubs, `tree/` beside `manifest`, built at the commit while
    /// the objects sync and move into place: stubs name objects by id only.
    Stubs,
}

/// How to import.
#[derive(Default)]
#[non_exhaustive]
pub struct ImportOptions<'a> {
    /// Tag the image with this name (otherwise the names the source gives, if any).
    pub name: Option<String>,
    /// Where to report progress.
    pub progress: Option<&'a dyn Progress>,
    /// What the source may make the import spend.
    pub limits: Limits,
    /// Overrides the store's [`BlobPolicy`] for this import: `Reproducible` for layers the
    /// caller compressed itself with Strata's writer, which export rebuilds byte for byte.
    pub blob_policy: Option<BlobPolicy>,
}

impl<'a> ImportOptions<'a> {
    /// With [`name`](ImportOptions::name) set to `name`.
    pub fn with_name(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    /// With [`progress`](ImportOptions::progress) set to `progress`.
    pub fn with_progress(mut self, progress: Option<&'a dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// With [`limits`](ImportOptions::limits) set to `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// With [`blob_policy`](ImportOptions::blob_policy) set to `blob_policy`.
    pub fn with_blob_policy(mut self, blob_policy: Option<BlobPolicy>) -> Self {
        self.blob_policy = blob_policy;
        self
    }
}

/// One layer of an import.
#[derive(Debug, Clone, Serialize)]
pub struct LayerOutcome {
    /// Layer id (diff_id hex; `sha256:<hex>` in JSON).
    #[serde(serialize_with = "crate::digest::serialize_id")]
    pub id: String,
    /// Whether it was imported now (`false`: the store had it).
    pub imported: bool,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ImportReport {
    /// The image id (manifest digest hex; `sha256:<hex>` in JSON).
    #[serde(serialize_with = "crate::digest::serialize_id")]
    pub image: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its layers, bottom first.
    pub layers: Vec<LayerOutcome>,
    /// Content objects written.
    pub objects_new: u64,
    /// Regular files whose content the store already had.
    pub objects_existing: u64,
    /// Compressed bytes read.
    pub blob_bytes: u64,
}

/// Decides what kind of source `path` is and plans its import.
fn plan(path: &Path, want: Option<&str>, limits: &Limits) -> Result<Plan, StoreError> {
    let meta = fs::metadata(path).at(path)?;
    if !meta.is_dir() && !meta.is_file() {
        // A FIFO or device would block the import or feed it forever.
        return Err(ImportError::NotRegularFile {
            path: path.to_path_buf(),
        }
        .into());
    }
    if meta.is_dir() {
        if path.join("oci-layout").is_file() {
            return source::plan_oci(Blobs::Dir(path.to_path_buf()), want, limits);
        }
        return Err(ImportError::UnknownSource {
            path: path.to_path_buf(),
        }
        .into());
    }
    let mut magic = [0u8; 4];
    let n = fs::File::open(path).at(path)?.read(&mut magic).at(path)?;
    if Format::sniff(&magic[..n]) != Format::Plain {
        return source::plan_layer(path);
    }
    let blobs = Blobs::index_tar(path).map_err(|_| ImportError::UnknownSource {
        path: path.to_path_buf(),
    })?;
    if blobs.has("oci-layout") && blobs.has("index.json") {
        source::plan_oci(blobs, want, limits)
    } else if blobs.has("manifest.json") {
        source::plan_docker(blobs, want)
    } else {
        source::plan_layer(path)
    }
}

fn layer_media_type(compression: &Compression) -> MediaType {
    match compression {
        Compression::None => MediaType::ImageLayer,
        Compression::Gzip { .. } => MediaType::ImageLayerGzip,
        Compression::Zstd { .. } => MediaType::ImageLayerZstd,
    }
}

/// `digest` as oci-spec's type (a digest of ours always parses).
fn oci_digest(digest: Sha256) -> oci_spec::image::Digest {
    digest
        .to_string()
        .parse()
        .expect("sha256:<64 lowercase hex> is a valid OCI digest")
}

impl Store {
    /// Imports the image or layer at `source` (format detected), verifying every digest.
    /// Layers the store already has (same diff_id) are not read again.
    ///
    /// # Errors
    /// [`ImportError::Mismatch`] when a blob is not what its descriptor or the config says
    /// ([`BlobCheck`] names which check failed), [`ImportError::Layer`] when a layer's tar
    /// cannot be taken apart, [`ImportError::UnknownSource`] for a source of no known format,
    /// and [`ImportError::Store`] when the store itself fails; nothing of the import is
    /// visible after an error.
    pub fn import(
        &self,
        source: &Path,
        options: &ImportOptions<'_>,
    ) -> Result<ImportReport, ImportError> {
        Ok(self.import_with(source, options, StagedTree::None)?)
    }

    /// [`import`](Store::import)s and then [`materialize`](Store::materialize)s every layer
    /// of the image with `strategy` (probed when `None`). Stub trees are built while the
    /// imported objects are flushed and moved into place, and commit with them: no second
    /// pass, no second sync.
    pub fn import_materialized(
        &self,
        source: &Path,
        options: &ImportOptions<'_>,
        strategy: Option<Strategy>,
    ) -> Result<ImportReport, ImportError> {
        let strategy = strategy.unwrap_or_else(probe_strategy);
        let tree = match strategy {
            Strategy::Stub if !rustix::process::geteuid().is_root() => {
                return Err(StoreError::from(MaterializeError::NeedsRoot {
                    strategy: Strategy::Stub,
                })
                .into());
            }
            Strategy::Stub => StagedTree::Stubs,
            _ => StagedTree::None,
        };
        let report = self.import_with(source, options, tree)?;
        let ids: Vec<String> = report.layers.iter().map(|l| l.id.clone()).collect();
        // Layers the store already had, or trees of other strategies.
        self.materialize_all(&ids, Some(strategy))?;
        Ok(report)
    }

    fn import_with(
        &self,
        source: &Path,
        options: &ImportOptions<'_>,
        tree: StagedTree,
    ) -> Result<ImportReport, StoreError> {
        if let Some(name) = &options.name {
            crate::name::normalize(name)?;
        }
        let _lock = self.lock(LockMode::Shared)?;
        let plan = plan(source, options.name.as_deref(), &options.limits)?;
        let policy = options.blob_policy.unwrap_or(self.blob_policy());
        let present = self.present_layers(&plan, policy)?;
        if let Some(progress) = options.progress {
            let total = plan
                .layers
                .iter()
                .zip(&present)
                .filter(|(_, p)| !**p)
                .filter_map(|(l, _)| l.size)
                .sum();
            progress.start(total);
        }
        let results: Vec<Result<Option<Staged>, StoreError>> = plan
            .layers
            .par_iter()
            .zip(&present)
            .enumerate()
            .map(|(index, (expected, &present))| {
                if present {
                    return Ok(None);
                }
                let reader = plan.blobs.open(&expected.blob)?;
                let part = options.progress.map(|inner| PartOf { index, inner });
                let part = part.as_ref().map(|p| p as &dyn Progress);
                self.stage_layer(reader, expected, &options.limits, policy, part)
                    .map(Some)
            })
            .collect();
        tracing::debug!("layers staged");
        let mut staged = Vec::with_capacity(results.len());
        let mut first_err = None;
        for result in results {
            match result {
                Ok(s) => staged.push(s),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let result = match first_err {
            Some(err) => Err(err),
            None => self.commit_import(&plan, &staged, options, tree),
        };
        for s in staged.iter().flatten() {
            let _ = fs::remove_dir_all(&s.dir);
        }
        result
    }

    /// Which of the plan's layers the store has, in one read transaction (each opening of the
    /// database costs fsyncs).
    ///
    /// A layer counts only if it holds all its objects: `fsck --repair` quarantines corrupt
    /// objects, and importing the image again is how they come back. Objects leave the store
    /// otherwise only with their layer (GC), so the objects are checked only while
    /// `quarantine/` holds something.
    fn present_layers(&self, plan: &Plan, policy: BlobPolicy) -> Result<Vec<bool>, StoreError> {
        let recorded = self.recorded_layers(plan, policy)?;
        let quarantine = self.root().join("quarantine");
        let repaired = fs::read_dir(&quarantine).at(&quarantine)?.next().is_some();
        if !repaired {
            return Ok(recorded);
        }
        plan.layers
            .iter()
            .zip(recorded)
            .map(|(layer, recorded)| match layer.diff_id {
                // A record that does not read is for fsck to report; the layer is read again.
                Some(d) if recorded => self
                    .read_layer_record(&d.hex())
                    .is_ok_and(|r| r.objects().all(|(o, _)| self.objects.contains(&o))),
                _ => false,
            })
            .map(Ok)
            .collect()
    }

    /// Which of the plan's layers the database has a row for, from the plan's very blob when
    /// `policy` keeps blobs (see [`Store::has_layer_blob`]).
    fn recorded_layers(&self, plan: &Plan, policy: BlobPolicy) -> Result<Vec<bool>, StoreError> {
        let recorded: Vec<bool> = self.db.read(|tx| {
            plan.layers
                .iter()
                .map(|l| match l.diff_id {
                    Some(d) => Ok(LAYERS.get(tx, &d.hex())?.is_some()),
                    None => Ok(false),
                })
                .collect()
        })?;
        plan.layers
            .iter()
            .zip(recorded)
            .map(|(layer, recorded)| match (layer.diff_id, &layer.digest) {
                (Some(diff_id), Some(Digest::Sha256(digest))) if recorded => {
                    self.has_blob_of_held_layer(&diff_id, digest, policy)
                }
                _ => Ok(recorded),
            })
            .collect()
    }

    /// Publishes staged layers (with their stub trees when `tree` asks) and names the image:
    /// the commit half of [`Store::import`].
    fn commit_import(
        &self,
        plan: &Plan,
        staged: &[Option<Staged>],
        options: &ImportOptions<'_>,
        tree: StagedTree,
    ) -> Result<ImportReport, StoreError> {
        let diff_ids: Vec<Sha256> = plan
            .layers
            .iter()
            .zip(staged)
            .map(|(expected, staged)| match staged {
                Some(s) => s.record.diff_id,
                None => expected.diff_id.unwrap_or(Sha256([0; 32])),
            })
            .collect();
        let config = if plan.config.is_empty() {
            synthesize_config(&diff_ids)
        } else {
            plan.config.clone()
        };
        let manifest = match &plan.manifest {
            Some(m) => m.clone(),
            None => self.synthesize_manifest(&config, staged, &diff_ids)?,
        };
        // Objects wait for syncfs, then move into place one rename at a time (cross-directory
        // renames serialize in the kernel): on a thread of their own, so that both of the
        // pool's threads build the trees meanwhile.
        let (published, trees) = std::thread::scope(|scope| {
            let publisher = scope.spawn(|| self.publish_staged(staged));
            let trees = staged
                .par_iter()
                .flatten()
                .try_for_each(|s| self.build_staged_tree(s, tree));
            if tree == StagedTree::Stubs {
                tracing::debug!("stub trees built");
            }
            let published = publisher.join().unwrap_or_else(|_| {
                Err(io::Error::other("publishing thread panicked")).at(self.root())
            });
            (published, trees)
        });
        let (published, mut written) = published?;
        trees?;
        let mut objects_new = 0;
        let mut objects_existing = 0;
        let mut blob_bytes = 0;
        for (s, published) in staged.iter().flatten().zip(published) {
            objects_new += published;
            objects_existing += s.objects_existing + (s.objects_new - published);
            blob_bytes += s.record.blob_size;
            for path in self.publish_kept_blob(&s.dir, &s.record.blob_digest)? {
                written.add(path);
            }
            let dest = self.layer_dir(&s.record.id());
            if dest.exists() {
                if self.layer_meta(&s.record.id())?.is_some() {
                    continue;
                }
                // Left by a crash before its commit: garbage, replace it.
                fs::remove_dir_all(&dest).at(&dest)?;
            }
            fs::rename(&s.dir, &dest).at(&dest)?;
            written.add_tree(&dest)?;
        }
        written.add(self.root().join("layers"));
        self.sync(written)?;
        let manifest_digest = Sha256::of(&manifest);
        // Names the caller gives must be references; names an archive carries are kept as
        // they are when they are not (an OCI layout may name its image anything).
        let names: Vec<String> = match &options.name {
            Some(name) => vec![crate::name::normalize(name)?],
            None => plan
                .names
                .iter()
                .map(|n| crate::name::normalize(n).unwrap_or_else(|_| n.clone()))
                .collect(),
        };
        let id = manifest_digest.hex();
        let image = self.db.write(|tx| {
            for s in staged.iter().flatten() {
                let id = s.record.id();
                if LAYERS.get(tx, &id)?.is_none() {
                    let meta = LayerMeta {
                        materialized: (tree == StagedTree::Stubs).then_some(Strategy::Stub),
                        ..s.meta.clone()
                    };
                    LAYERS.put(tx, &id, &record::encode(Kind::LayerMeta, &meta)?)?;
                }
            }
            let mut tags: Vec<String> = match IMAGES.get(tx, &id)? {
                Some(v) => record::decode::<ImageRecord>(Kind::Image, &v)?.tags,
                None => Vec::new(),
            };
            for name in &names {
                // A name moves to the new image, as `docker tag` does.
                let previous = names::set(tx, name, &id)?;
                if let Some(previous) = previous.filter(|p| *p != id) {
                    untag(tx, &previous, name)?;
                }
                if !tags.contains(name) {
                    tags.push(name.clone());
                }
            }
            let image = ImageRecord {
                manifest: manifest.clone(),
                manifest_digest,
                config: config.clone(),
                tags,
                layers: diff_ids.clone(),
                chain_ids: chain_ids(&diff_ids),
            };
            IMAGES.put(tx, &id, &record::encode(Kind::Image, &image)?)?;
            Ok(image)
        })?;
        Ok(ImportReport {
            image: id,
            tags: image.tags,
            layers: diff_ids
                .iter()
                .zip(staged)
                .map(|(d, s)| LayerOutcome {
                    id: d.hex(),
                    imported: s.is_some(),
                })
                .collect(),
            objects_new,
            objects_existing,
            blob_bytes,
        })
    }

    /// Makes the staged objects durable and moves them into place; returns how many objects
    /// each layer placed (the rest another writer placed first) and the directories that
    /// gained entries.
    fn publish_staged(&self, staged: &[Option<Staged>]) -> Result<(Vec<u64>, Written), StoreError> {
        let mut data = Written::default();
        for s in staged.iter().flatten() {
            data.add_tree(s.objects.dir())?;
        }
        self.sync(data)?;
        tracing::debug!("staged objects durable");
        let mut written = Written::default();
        let published = staged
            .iter()
            .flatten()
            .map(|s| self.objects.publish(&s.objects, &mut written))
            .collect::<Result<_, _>>()?;
        tracing::debug!("staged objects published");
        Ok((published, written))
    }

    /// Builds the tree `tree` asks for in `staged`'s directory.
    fn build_staged_tree(&self, staged: &Staged, tree: StagedTree) -> Result<(), StoreError> {
        match tree {
            StagedTree::None => Ok(()),
            StagedTree::Stubs => build_tree(
                self,
                Strategy::Stub,
                &staged.dir.join("tree"),
                &staged.record.entries,
            ),
        }
    }

    /// An OCI manifest for a source without one: the config and each layer blob as imported.
    fn synthesize_manifest(
        &self,
        config: &[u8],
        staged: &[Option<Staged>],
        diff_ids: &[Sha256],
    ) -> Result<Vec<u8>, StoreError> {
        let mut layers = Vec::new();
        for (staged, diff_id) in staged.iter().zip(diff_ids) {
            // Only three fields: a layer's record may be hundreds of MB, never cloned.
            let had;
            let record = match staged {
                Some(s) => &s.record,
                None => {
                    had = self.layer_record(&diff_id.hex())?;
                    &had
                }
            };
            layers.push(Descriptor::new(
                layer_media_type(&record.compression),
                record.blob_size,
                oci_digest(record.blob_digest),
            ));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config.len() as u64,
                oci_digest(Sha256::of(config)),
            ))
            .layers(layers)
            .build()
            .expect("every required manifest field is set");
        Ok(serde_json::to_vec(&manifest).unwrap_or_default())
    }
}

/// Removes `name` from image `id`'s tags (the image stays, perhaps untagged).
pub(crate) fn untag(tx: &Tx<'_>, id: &str, name: &str) -> Result<(), StoreError> {
    let Some(value) = IMAGES.get(tx, id)? else {
        return Ok(());
    };
    let mut image: ImageRecord = record::decode(Kind::Image, &value)?;
    image.tags.retain(|t| t != name);
    IMAGES.put(tx, id, &record::encode(Kind::Image, &image)?)
}

/// A minimal OCI config for a bare layer: this machine's platform and the layer's diff_id.
fn synthesize_config(diff_ids: &[Sha256]) -> Vec<u8> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(diff_ids.iter().map(ToString::to_string).collect());
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::from(arch))
        .os(Os::Linux)
        .rootfs(rootfs)
        .build()
        .expect("every required config field is set");
    serde_json::to_vec(&config).unwrap_or_default()
}

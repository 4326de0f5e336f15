//! What a build is asked to do and what it reports.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use strata_layer_store::{Part, PartEnd};
use strata_registry::Connection;
use strata_snapshotter::runc::Network;

/// How to build (see [`Builder::build`](crate::Builder::build)).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The Dockerfile (default: `Dockerfile` in the context).
    pub dockerfile: Option<PathBuf>,
    /// Names for the result (`-t`); without any, the image is known by its id only.
    pub tags: Vec<String>,
    /// The stage to build (`--target`); default the last.
    pub target: Option<String>,
    /// `--build-arg NAME=VALUE`s.
    pub build_args: BTreeMap<String, String>,
    /// Run every step, using no cache entry (the results still refresh the cache).
    pub no_cache: bool,
    /// The network of `RUN` steps without `--network` (default none).
    pub network: Network,
    /// How to reach registries for base images the store lacks.
    pub connection: Connection,
    /// The runc program (default `runc` from `PATH`).
    pub runc: Option<PathBuf>,
}

/// How a step was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// From the build cache: nothing ran.
    Cached,
    /// Run.
    Ran,
}

/// One step of a build.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StepReport {
    /// The stage's name or number.
    pub stage: String,
    /// Step number in the build (1-based, `FROM` lines included).
    pub number: usize,
    /// Steps in the build.
    pub total: usize,
    /// The instruction as written (`RUN echo hi`).
    pub instruction: String,
    /// Cached or run.
    pub outcome: Outcome,
    /// Wall-clock time of the step, in milliseconds.
    pub millis: u64,
    /// The layer it made (layer store id), if any.
    pub layer: Option<String>,
}

/// What a build made.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BuildReport {
    /// The image id (manifest digest hex; `sha256:<hex>` in JSON).
    #[serde(serialize_with = "strata_layer_store::digest::serialize_id")]
    pub image: String,
    /// Its tags, normalized.
    pub tags: Vec<String>,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
}

/// A build reports through [`strata_layer_store::Progress`], one part per step: a part's
/// index is the step's number less one, its name the instruction; a step served from the cache
/// ends as [`PartEnd::Reused`].
pub use strata_layer_store::Progress;

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}

/// Tells `progress` that step `number` (from 1) of `total`, `instruction`, starts.
pub(crate) fn step_started(
    progress: &dyn Progress,
    number: usize,
    total: usize,
    instruction: &str,
) {
    progress.part_started(&Part::new(number - 1, total, instruction, 0));
}

/// Tells `progress` how `step` ended.
pub(crate) fn step_finished(progress: &dyn Progress, step: &StepReport) {
    let end = match step.outcome {
        Outcome::Cached => PartEnd::Reused,
        Outcome::Ran => PartEnd::Done,
    };
    progress.part_finished(step.number - 1, end);
}

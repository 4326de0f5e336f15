//! The build loop: parse, run the stages up to the target in order, store the target's state
//! as the result image.

use std::fs;
use std::path::Path;
use std::time::Instant;

use strata_layer_store::Durability;

use crate::backend::Backend;
use crate::cache::Cache;
use crate::dockerfile::{Dockerfile, Stage};
use crate::error::{BuildError, Result};
use crate::ignore::Ignore;
use crate::image::ImageState;
use crate::options::{
    BuildOptions, BuildReport, Outcome, Progress, StepReport, step_finished, step_started,
};
use crate::snapshot::Workspace;
use crate::step::StageRun;
use crate::tree::SourceTree;
use crate::words::{self, Vars};

/// Builds Dockerfiles into the store at one root (see the [crate docs](crate)).
#[derive(Debug)]
pub struct Builder {
    pub(crate) backend: Backend,
    pub(crate) cache: Cache,
}

/// What the stages of one build share.
pub(crate) struct Build<'a> {
    pub builder: &'a Builder,
    pub options: &'a BuildOptions,
    pub progress: &'a dyn Progress,
    pub ws: Workspace,
    pub context: SourceTree,
    pub dockerfile: &'a Dockerfile,
    /// States of the stages built so far.
    pub stages: Vec<ImageState>,
    pub total: usize,
    pub number: usize,
    /// `ARG`s before the first `FROM`, with their values.
    pub global: Vars,
    pub reports: Vec<StepReport>,
}

impl Builder {
    /// Opens the store at `root` (creating it if needed) for building, and removes what a
    /// build that died left behind (mounts, transient snapshots and images); the build cache
    /// lives in `<root>/build-cache/`.
    pub fn open(root: &Path, durability: Durability) -> Result<Builder> {
        let backend = Backend::open(root, durability)?;
        crate::snapshot::recover(&backend)?;
        let cache = Cache::open(backend.root())?;
        Ok(Builder { backend, cache })
    }

    /// Builds the Dockerfile of `context` as `options` say, reporting each step to `progress`.
    pub fn build(
        &self,
        context: &Path,
        options: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<BuildReport> {
        let file = options
            .dockerfile
            .clone()
            .unwrap_or_else(|| context.join("Dockerfile"));
        // GC in any process waits for the build: the cache entries it hits, the layers they
        // name and its scratch dir under `tmp/` must stay until the image references them.
        let _hold = self.backend.hold()?;
        let text = fs::read_to_string(&file).map_err(BuildError::io("read", &file))?;
        let dockerfile = Dockerfile::parse(&file, &text)?;
        let ignore_path = context.join(".dockerignore");
        let ignore = match fs::read_to_string(&ignore_path) {
            Ok(text) => Ignore::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(BuildError::io("read", &ignore_path)(e)),
        };
        let context_tree = SourceTree::open(context, ignore)
            .map_err(BuildError::io("open the context", context))?;
        let target = match &options.target {
            Some(name) => stage_index(&dockerfile.stages, name)
                .ok_or_else(|| BuildError::NoStage { name: name.clone() })?,
            None => dockerfile.stages.len() - 1,
        };
        let mut global = Vars::new();
        for arg in &dockerfile.global_args {
            for (name, default) in words::pairs(arg, &global) {
                let value = options.build_args.get(&name).cloned().or(default);
                global.insert(name, value.unwrap_or_default());
            }
        }
        let mut build = Build {
            builder: self,
            options,
            progress,
            ws: Workspace::new(&self.backend)?,
            context: context_tree,
            dockerfile: &dockerfile,
            stages: Vec::new(),
            total: dockerfile.stages[..=target]
                .iter()
                .map(|s| s.steps.len() + 1)
                .sum(),
            number: 0,
            global: global.clone(),
            reports: Vec::new(),
        };
        for (index, stage) in dockerfile.stages[..=target].iter().enumerate() {
            let state = build.from(index, stage, &global)?;
            let mut run = StageRun::new(&mut build, index, state);
            for step in &stage.steps {
                run.step(step)?;
            }
            let state = run.into_state();
            build.stages.push(state);
        }
        let state = build.stages.pop().unwrap_or_else(ImageState::scratch);
        let (image, tags) = self.store_result(&build.ws, &state, &options.tags)?;
        Ok(BuildReport {
            image,
            tags,
            steps: build.reports,
        })
    }

    /// Stores `state` as the result image, tagged with `tags` (or by id only).
    fn store_result(
        &self,
        ws: &Workspace,
        state: &ImageState,
        tags: &[String],
    ) -> Result<(String, Vec<String>)> {
        // A rebuild with nothing changed makes the image the first tag already names: no import.
        if let Some(first) = tags.first() {
            let id = state.id();
            if self.backend.image(first)?.is_some_and(|r| r.id() == id) {
                let mut out = vec![normalize(first)?];
                for tag in &tags[1..] {
                    out.push(self.backend.tag(&id, tag)?);
                }
                return Ok((id, out));
            }
        }
        let (dir, transient) = ws.result_dir()?;
        let name = tags.first().cloned().unwrap_or_else(|| transient.clone());
        state.write_layout(&dir, &name)?;
        let report = self.backend.import(&dir, &name)?;
        let mut out = Vec::new();
        if tags.is_empty() {
            self.backend.untag(&transient)?;
        } else {
            out.extend(report.tags.iter().cloned());
            for tag in &tags[1..] {
                out.push(self.backend.tag(&report.image, tag)?);
            }
        }
        Ok((report.image, out))
    }
}

/// `tag` as the store names it.
fn normalize(tag: &str) -> Result<String> {
    strata_layer_store::name::normalize(tag).map_err(|e| BuildError::Store {
        op: "name the image",
        source: Box::new(e.into()),
    })
}

/// The index of the stage `name` (its `AS` name, or its number).
pub(crate) fn stage_index(stages: &[Stage], name: &str) -> Option<usize> {
    let lower = name.to_lowercase();
    stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse().ok().filter(|i| *i < stages.len()))
}

impl Build<'_> {
    /// The base state of stage `index`: scratch, an earlier stage, or a stored (or pulled)
    /// image.
    fn from(&mut self, index: usize, stage: &Stage, global: &Vars) -> Result<ImageState> {
        self.number += 1;
        let instruction = format!("FROM {}", stage.from_text);
        step_started(self.progress, self.number, self.total, &instruction);
        let start = Instant::now();
        let base = words::expand(&stage.base, global);
        let earlier = stage_index(&self.dockerfile.stages[..index], &base)
            .filter(|_| base.parse::<usize>().is_err());
        let (state, outcome) = if base.eq_ignore_ascii_case("scratch") {
            (ImageState::scratch(), Outcome::Cached)
        } else if let Some(i) = earlier {
            (self.stages[i].clone(), Outcome::Cached)
        } else {
            let (record, outcome) = self.image(&base)?;
            (ImageState::of_record(&record)?, outcome)
        };
        let report = StepReport {
            stage: stage_label(stage, index),
            number: self.number,
            total: self.total,
            instruction,
            outcome,
            millis: start.elapsed().as_millis() as u64,
            layer: None,
        };
        step_finished(self.progress, &report);
        self.reports.push(report);
        Ok(state)
    }

    /// Image `name` from the store, pulled first when missing.
    pub fn image(&self, name: &str) -> Result<(strata_layer_store::ImageRecord, Outcome)> {
        let backend = &self.builder.backend;
        match backend.image(name)? {
            Some(record) => Ok((record, Outcome::Cached)),
            None => Ok((backend.pull(name, &self.options.connection)?, Outcome::Ran)),
        }
    }
}

/// The stage's name, or its number.
pub(crate) fn stage_label(stage: &Stage, index: usize) -> String {
    stage.name.clone().unwrap_or_else(|| index.to_string())
}

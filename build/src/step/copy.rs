//! `COPY` and `ADD` of local files: from the build context, an earlier stage or an image, into
//! the stage's writable rootfs.

use std::path::Path;

use strata_diff::confined::Root;

use super::{Action, Plan, StageRun, archive};
use crate::dockerfile::CopyOp;
use crate::engine::{Build, stage_index};
use crate::error::{BuildError, Result};
use crate::ignore::Ignore;
use crate::image::ImageState;
use crate::snapshot;
use crate::tree::{SourceTree, Target, clean};
use crate::user;
use crate::words::{self, Vars};

/// Where a copy reads from.
enum Origin {
    /// The build context.
    Context,
    /// An earlier stage or an image.
    State(Box<ImageState>),
}

/// A `COPY` or `ADD`, evaluated.
pub(crate) struct CopyPlan {
    add: bool,
    sources: Vec<String>,
    dest: String,
    origin: Origin,
    chown: Option<String>,
    mode: Option<u32>,
    shown: String,
}

/// Evaluates a `COPY`/`ADD`: paths expanded, the origin found, and the sources' checksum (for
/// the context) or the origin's state digest in its key.
pub(super) fn plan(
    stage: &StageRun<'_, '_>,
    line: usize,
    op: &CopyOp,
    vars: &Vars,
) -> Result<Plan> {
    let keyword = if op.add { "ADD" } else { "COPY" };
    let sources: Vec<String> = op.sources.iter().map(|s| words::expand(s, vars)).collect();
    let mut dest = words::expand(&op.dest, vars);
    if !dest.starts_with('/') {
        let base = stage.state.field("WorkingDir").unwrap_or("/");
        dest = format!("{}/{dest}", base.trim_end_matches('/'));
    }
    let chown = op.chown.as_ref().map(|c| words::expand(c, vars));
    let mode = match &op.chmod {
        Some(m) => Some(
            u32::from_str_radix(m, 8).map_err(|_| BuildError::Instruction {
                line,
                instruction: keyword,
                reason: format!("--chmod={m}: not an octal mode"),
            })?,
        ),
        None => None,
    };
    let mut flags = String::new();
    let (origin, extra) = match &op.from {
        None => {
            let shown = format!("{keyword} {}", sources.join(" "));
            let tree = &stage.build.context;
            let mut resolved = Vec::new();
            for source in &sources {
                let found = tree
                    .resolve(source)
                    .map_err(|e| source_error(&shown, source, &e.to_string()))?;
                if found.is_empty() {
                    return Err(source_error(
                        &shown,
                        source,
                        "not found in the build context",
                    ));
                }
                resolved.extend(found);
            }
            let sum = tree
                .checksum(&resolved)
                .map_err(|e| source_error(&shown, &sources.join(" "), &e.to_string()))?;
            (Origin::Context, sum)
        }
        Some(from) => {
            let from = words::expand(from, vars);
            flags.push_str(&format!("--from={from} "));
            let state = match stage_index(&stage.build.dockerfile.stages[..stage.index], &from) {
                Some(i) => stage.build.stages[i].clone(),
                None => ImageState::of_record(&stage.build.image(&from)?.0)?,
            };
            let digest = state.digest();
            (Origin::State(Box::new(state)), digest)
        }
    };
    if let Some(chown) = &chown {
        flags.push_str(&format!("--chown={chown} "));
    }
    if let Some(mode) = mode {
        flags.push_str(&format!("--chmod={mode:o} "));
    }
    let shown = format!("{keyword} {flags}{} {dest}", sources.join(" "));
    Ok(Plan {
        created_by: format!("{shown} # buildkit"),
        extra: vec![extra],
        action: Action::Copy(CopyPlan {
            add: op.add,
            sources,
            dest,
            origin,
            chown,
            mode,
            shown,
        }),
    })
}

fn source_error(step: &str, source: &str, reason: &str) -> BuildError {
    BuildError::Source {
        step: step.to_owned(),
        source_path: source.to_owned(),
        reason: reason.to_owned(),
    }
}

impl CopyPlan {
    /// Copies the sources into `rootfs`.
    pub(super) fn copy(self, build: &Build<'_>, rootfs: &Path) -> Result<()> {
        let io = |what: &str| {
            let step = self.shown.clone();
            let what = what.to_owned();
            move |e: std::io::Error| source_error(&step, &what, &e.to_string())
        };
        let mounted;
        let from_tree;
        let (tree, default_owner) = match &self.origin {
            Origin::Context => (&build.context, Some((0, 0))),
            Origin::State(state) => {
                mounted = snapshot::mount(&build.builder.backend, &build.ws, state)?;
                from_tree =
                    SourceTree::open(&mounted.rootfs, Ignore::default()).map_err(io("--from"))?;
                (&from_tree, None)
            }
        };
        let owner = match &self.chown {
            Some(spec) => Some(user::resolve(rootfs, spec)?),
            None => default_owner,
        };
        let mut target = Target {
            root: Root::open(rootfs).map_err(io("/"))?,
            owner,
            mode: self.mode,
        };
        let mut resolved = Vec::new();
        for source in &self.sources {
            let found = tree.resolve(source).map_err(io(source))?;
            if found.is_empty() {
                return Err(source_error(&self.shown, source, "not found"));
            }
            resolved.extend(found);
        }
        let dest = clean(&self.dest);
        let into_dir = self.dest.ends_with('/') || resolved.len() > 1 || target.is_dir(&dest);
        for source in &resolved {
            let what = source.rel.display().to_string();
            if self.add {
                if let Some(archive) = archive::open(source).map_err(io(&what))? {
                    let dir = target.dir(&dest).map_err(io(&what))?;
                    archive::unpack(archive, &dir)
                        .map_err(|e| source_error(&self.shown, &what, &e))?;
                    continue;
                }
            }
            if source.is_dir() || into_dir {
                let dir = target.dir(&dest).map_err(io(&what))?;
                tree.copy(source, &dir, None, &target).map_err(io(&what))?;
            } else {
                let parent = target
                    .dir(dest.parent().unwrap_or(Path::new("")))
                    .map_err(io(&what))?;
                tree.copy(source, &parent, dest.file_name(), &target)
                    .map_err(io(&what))?;
            }
        }
        Ok(())
    }
}

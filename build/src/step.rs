//! One stage's steps: each is evaluated (variables expanded with the build args and the
//! environment of that moment), keyed, and either served from the cache or run.

use std::collections::BTreeMap;
use std::time::Instant;

use strata_snapshotter::runc::Network;

use crate::cache::{self, Entry};
use crate::dockerfile::{CommandForm, Op, Step};
use crate::engine::{Build, stage_label};
use crate::error::{BuildError, Result};
use crate::image::ImageState;
use crate::options::{Outcome, StepReport, step_finished, step_started};
use crate::snapshot;
use crate::words::Vars;

mod archive;
mod copy;
mod meta;
mod run;

/// What a step does once it misses the cache.
pub(crate) enum Action {
    /// Change the config only.
    Meta(Box<dyn FnOnce(&mut ImageState)>),
    /// Run a command.
    Run(run::RunPlan),
    /// Copy files in.
    Copy(copy::CopyPlan),
}

/// A step, evaluated.
pub(crate) struct Plan {
    /// The history's `created_by`.
    created_by: String,
    /// What else its key covers.
    extra: Vec<String>,
    action: Action,
}

/// The stage being built.
pub(crate) struct StageRun<'b, 'a> {
    build: &'b mut Build<'a>,
    index: usize,
    state: ImageState,
    /// `ARG`s declared in this stage, with their values.
    args: BTreeMap<String, String>,
    shell: Vec<String>,
    /// Whether this stage set `CMD` (an `ENTRYPOINT` then keeps it).
    cmd_set: bool,
}

impl<'b, 'a> StageRun<'b, 'a> {
    pub fn new(build: &'b mut Build<'a>, index: usize, state: ImageState) -> StageRun<'b, 'a> {
        let shell = state.config["config"]["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()]);
        StageRun {
            build,
            index,
            state,
            args: BTreeMap::new(),
            shell,
            cmd_set: false,
        }
    }

    pub fn into_state(self) -> ImageState {
        self.state
    }

    /// Variables for expansion: the args, overridden by the environment.
    fn vars(&self) -> Vars {
        let mut vars = self.args.clone();
        for var in self.state.env() {
            if let Some((k, v)) = var.split_once('=') {
                vars.insert(k.to_owned(), v.to_owned());
            }
        }
        vars
    }

    /// Runs (or serves from the cache) one step.
    pub fn step(&mut self, step: &Step) -> Result<()> {
        self.build.number += 1;
        let number = self.build.number;
        let instruction = display(&step.op);
        step_started(self.build.progress, number, self.build.total, &instruction);
        let start = Instant::now();
        let plan = self.plan(step)?;
        let extra: Vec<&str> = plan.extra.iter().map(String::as_str).collect();
        let key = cache::key(&self.state, &plan.created_by, &extra);
        let (outcome, layer) = match self.lookup(&key)? {
            Some(entry) => {
                self.state = entry.state.clone();
                (Outcome::Cached, entry.layer)
            }
            None => (Outcome::Ran, self.execute(&key, plan)?),
        };
        let report = StepReport {
            stage: stage_label(&self.build.dockerfile.stages[self.index], self.index),
            number,
            total: self.build.total,
            instruction,
            outcome,
            millis: start.elapsed().as_millis() as u64,
            layer,
        };
        step_finished(self.build.progress, &report);
        self.build.reports.push(report);
        Ok(())
    }

    /// The cache entry of `key`, refreshed, unless the cache is off or its layer is gone.
    fn lookup(&self, key: &str) -> Result<Option<Entry>> {
        if self.build.options.no_cache {
            return Ok(None);
        }
        let builder = self.build.builder;
        let Some(mut entry) = builder.cache.get(key)? else {
            return Ok(None);
        };
        if let Some(layer) = &entry.layer {
            if !builder.backend.has_layer(layer)? {
                return Ok(None);
            }
        }
        entry.last_used = cache::now();
        builder.cache.put(&entry)?;
        Ok(Some(entry))
    }

    /// Runs the step and records its result under `key`; returns the layer it made.
    fn execute(&mut self, key: &str, plan: Plan) -> Result<Option<String>> {
        let owner = cache::owner(key);
        let mut next = self.state.clone();
        let made = match plan.action {
            Action::Meta(apply) => {
                apply(&mut next);
                None
            }
            Action::Run(run) => {
                let b = &*self.build;
                snapshot::with_rootfs(
                    &b.builder.backend,
                    &b.ws,
                    &self.state,
                    &owner,
                    |rootfs, scratch| run.run(b, key, rootfs, scratch),
                )?
            }
            Action::Copy(copy) => {
                let b = &*self.build;
                snapshot::with_rootfs(
                    &b.builder.backend,
                    &b.ws,
                    &self.state,
                    &owner,
                    |rootfs, _| copy.copy(b, rootfs),
                )?
            }
        };
        if let Some(new) = &made {
            next.push_layer(new.layer.clone(), &new.diff_id);
        }
        next.push_history(&plan.created_by, made.is_none());
        let builder = self.build.builder;
        // A step run again (`--no-cache`) may make another layer: the old one's root goes.
        if let Some(old) = builder.cache.get(key)?.and_then(|e| e.layer) {
            if made.as_ref().is_none_or(|m| m.id != old) {
                crate::backend::remove_gc_root(builder.backend.store(), &owner, &old)?;
            }
        }
        let now = cache::now();
        builder.cache.put(&Entry {
            version: cache::VERSION,
            key: key.to_owned(),
            created_by: plan.created_by,
            state: next.clone(),
            layer: made.as_ref().map(|m| m.id.clone()),
            created: now,
            last_used: now,
        })?;
        self.state = next;
        Ok(made.map(|m| m.id))
    }

    /// Evaluates `step`.
    fn plan(&mut self, step: &Step) -> Result<Plan> {
        let vars = self.vars();
        Ok(match &step.op {
            Op::Run { command, network } => {
                let network = self.network(step.line, network.as_deref())?;
                run::plan(self, command, network)
            }
            Op::Copy(op) => copy::plan(self, step.line, op, &vars)?,
            op => meta::plan(self, step.line, op, &vars)?,
        })
    }

    /// The argv of a command: exec form as written, shell form through the stage's shell.
    fn argv(&self, command: &CommandForm) -> Vec<String> {
        match command {
            CommandForm::Exec(args) => args.clone(),
            CommandForm::Shell(text) => {
                let mut argv = self.shell.clone();
                argv.push(text.clone());
                argv
            }
        }
    }

    fn network(&self, line: usize, flag: Option<&str>) -> Result<Network> {
        match flag {
            None | Some("default") => Ok(self.build.options.network),
            Some("none") => Ok(Network::None),
            Some("host") => Ok(Network::Host),
            Some(other) => Err(BuildError::Instruction {
                line,
                instruction: "RUN",
                reason: format!("--network={other}: use none, host or default"),
            }),
        }
    }
}

/// The instruction as the progress shows it.
fn display(op: &Op) -> String {
    let form = |c: &CommandForm| match c {
        CommandForm::Exec(a) => serde_json::to_string(a).unwrap_or_default(),
        CommandForm::Shell(s) => s.clone(),
    };
    match op {
        Op::Run { command, .. } => format!("RUN {}", form(command)),
        Op::Copy(c) => {
            let mut parts = vec![if c.add { "ADD" } else { "COPY" }.to_owned()];
            if let Some(from) = &c.from {
                parts.push(format!("--from={from}"));
            }
            if let Some(chown) = &c.chown {
                parts.push(format!("--chown={chown}"));
            }
            parts.extend(c.sources.iter().cloned());
            parts.push(c.dest.clone());
            parts.join(" ")
        }
        Op::Env(t) => format!("ENV {t}"),
        Op::Arg(t) => format!("ARG {t}"),
        Op::Workdir(t) => format!("WORKDIR {t}"),
        Op::User(t) => format!("USER {t}"),
        Op::Label(t) => format!("LABEL {t}"),
        Op::Expose(p) => format!("EXPOSE {}", p.join(" ")),
        Op::Entrypoint(c) => format!("ENTRYPOINT {}", form(c)),
        Op::Cmd(c) => format!("CMD {}", form(c)),
        Op::Volume(p) => format!("VOLUME {}", p.join(" ")),
        Op::Shell(s) => format!("SHELL {}", serde_json::to_string(s).unwrap_or_default()),
        Op::Stopsignal(s) => format!("STOPSIGNAL {s}"),
        Op::Maintainer(m) => format!("MAINTAINER {m}"),
    }
}

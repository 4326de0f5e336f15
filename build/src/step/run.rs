//! `RUN`: the command in a runc container on the stage's writable rootfs.

use std::path::Path;

use strata_snapshotter::runc::{Container, Network};

use super::{Action, Plan, StageRun};
use crate::dockerfile::CommandForm;
use crate::engine::Build;
use crate::error::{BuildError, Result};
use crate::user;

/// A `RUN`, evaluated.
pub(crate) struct RunPlan {
    argv: Vec<String>,
    env: Vec<String>,
    cwd: String,
    user: Option<String>,
    network: Network,
    shown: String,
}

/// Evaluates a `RUN`: its argv, and its environment of image env plus build args.
pub(super) fn plan(stage: &StageRun<'_, '_>, command: &CommandForm, network: Network) -> Plan {
    let argv = stage.argv(command);
    let mut env = stage.state.env();
    // Build args reach the command unless the environment sets the same name.
    let args: Vec<String> = stage
        .args
        .iter()
        .filter(|(k, _)| !env.iter().any(|e| e.split('=').next() == Some(k.as_str())))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(args.iter().cloned());
    // docker's history names the build args a RUN saw: `|2 A=1 B=2 /bin/sh -c …`.
    let prefix = if args.is_empty() {
        String::new()
    } else {
        format!("|{} {} ", args.len(), args.join(" "))
    };
    let created_by = format!("RUN {prefix}{} # buildkit", argv.join(" "));
    let cwd = stage.state.field("WorkingDir").unwrap_or("/").to_owned();
    let user = stage.state.field("User").map(str::to_owned);
    let extra = vec![
        env.join("\0"),
        format!("{network:?}"),
        cwd.clone(),
        user.clone().unwrap_or_default(),
    ];
    Plan {
        created_by,
        extra,
        action: Action::Run(RunPlan {
            shown: format!("RUN {}", argv.join(" ")),
            argv,
            env,
            cwd,
            user,
            network,
        }),
    }
}

impl RunPlan {
    /// Runs the command on `rootfs` (bundle in `scratch`) as container `strata-build-<key>`.
    pub(super) fn run(
        self,
        build: &Build<'_>,
        key: &str,
        rootfs: &Path,
        scratch: &Path,
    ) -> Result<()> {
        let (uid, gid) = match &self.user {
            Some(spec) => user::resolve(rootfs, spec)?,
            None => (0, 0),
        };
        let mut container = Container::new(rootfs, self.argv)
            .cwd(self.cwd)
            .network(self.network)
            .user(uid, gid)
            // stdout is the build's report (`--json`): the command's output goes to stderr.
            .stdout(std::io::stderr());
        for var in self.env {
            container = container.env(var);
        }
        if let Some(runc) = &build.options.runc {
            container = container.runc(runc);
        }
        let id = format!("strata-build-{}-{}", std::process::id(), &key[..16]);
        let status = container
            .run(scratch, &id)
            .map_err(|source| BuildError::Runc {
                step: self.shown.clone(),
                source,
            })?;
        if !status.success() {
            return Err(BuildError::RunFailed {
                step: self.shown,
                status,
            });
        }
        Ok(())
    }
}

//! The instructions that change the image config only: `ENV`, `ARG`, `WORKDIR`, `USER`,
//! `LABEL`, `EXPOSE`, `VOLUME`, `CMD`, `ENTRYPOINT`, `SHELL`, `STOPSIGNAL`, `MAINTAINER`.

use serde_json::json;

use super::{Action, Plan, StageRun};
use crate::dockerfile::Op;
use crate::error::{BuildError, Result};
use crate::image::ImageState;
use crate::words::{self, Vars};

/// Evaluates a metadata instruction (`RUN`, `COPY` and `ADD` are planned elsewhere).
pub(super) fn plan(
    stage: &mut StageRun<'_, '_>,
    line: usize,
    op: &Op,
    vars: &Vars,
) -> Result<Plan> {
    let meta = |created_by: String, apply: Box<dyn FnOnce(&mut ImageState)>| Plan {
        created_by,
        extra: Vec::new(),
        action: Action::Meta(apply),
    };
    Ok(match op {
        Op::Env(text) => {
            let pairs = words::pairs(text, vars);
            let mut shown = Vec::new();
            let mut set = Vec::new();
            for (k, v) in pairs {
                let v = v.ok_or_else(|| instruction_error(line, "ENV", &k))?;
                shown.push(format!("{k}={v}"));
                set.push((k, v));
            }
            meta(
                format!("ENV {}", shown.join(" ")),
                Box::new(move |s| set.iter().for_each(|(k, v)| s.set_env(k, v))),
            )
        }
        Op::Arg(text) => {
            let mut shown = Vec::new();
            for (k, default) in words::pairs(text, vars) {
                let value = stage
                    .build
                    .options
                    .build_args
                    .get(&k)
                    .cloned()
                    .or(default.clone())
                    .or_else(|| stage.build.global.get(&k).cloned());
                shown.push(match default {
                    Some(d) => format!("{k}={d}"),
                    None => k.clone(),
                });
                stage.args.insert(k, value.unwrap_or_default());
            }
            meta(format!("ARG {}", shown.join(" ")), Box::new(|_| {}))
        }
        Op::Workdir(text) => {
            let dir = words::expand(text, vars);
            let base = stage.state.field("WorkingDir").unwrap_or("/").to_owned();
            let dir = if dir.starts_with('/') {
                dir
            } else {
                format!("{}/{dir}", base.trim_end_matches('/'))
            };
            meta(
                format!("WORKDIR {dir}"),
                Box::new(move |s| {
                    s.runtime().insert("WorkingDir".into(), json!(dir));
                }),
            )
        }
        Op::User(text) => {
            let user = words::expand(text, vars);
            meta(
                format!("USER {user}"),
                Box::new(move |s| {
                    s.runtime().insert("User".into(), json!(user));
                }),
            )
        }
        Op::Label(text) => {
            let pairs: Vec<(String, String)> = words::pairs(text, vars)
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect();
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            meta(
                format!("LABEL {}", shown.join(" ")),
                Box::new(move |s| {
                    let labels = s.runtime().entry("Labels").or_insert_with(|| json!({}));
                    if !labels.is_object() {
                        *labels = json!({});
                    }
                    for (k, v) in pairs {
                        labels[k] = json!(v);
                    }
                }),
            )
        }
        Op::Expose(ports) => {
            let ports: Vec<String> = ports
                .iter()
                .flat_map(|p| words::split(p, vars))
                .map(|p| {
                    if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    }
                })
                .collect();
            meta(
                format!(
                    "EXPOSE map[{}]",
                    ports
                        .iter()
                        .map(|p| format!("{p}:{{}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Box::new(move |s| ports.iter().for_each(|p| s.add_to_set("ExposedPorts", p))),
            )
        }
        Op::Volume(paths) => {
            let paths: Vec<String> = paths.iter().map(|p| words::expand(p, vars)).collect();
            meta(
                format!("VOLUME [{}]", paths.join(" ")),
                Box::new(move |s| paths.iter().for_each(|p| s.add_to_set("Volumes", p))),
            )
        }
        Op::Cmd(command) => {
            stage.cmd_set = true;
            let argv = stage.argv(command);
            meta(
                format!("CMD {}", go_list(&argv)),
                Box::new(move |s| {
                    s.runtime().insert("Cmd".into(), json!(argv));
                }),
            )
        }
        Op::Entrypoint(command) => {
            let argv = stage.argv(command);
            let keep_cmd = stage.cmd_set;
            meta(
                format!("ENTRYPOINT {}", go_list(&argv)),
                Box::new(move |s| {
                    let runtime = s.runtime();
                    runtime.insert("Entrypoint".into(), json!(argv));
                    // As docker: an inherited CMD does not outlive a new ENTRYPOINT.
                    if !keep_cmd {
                        runtime.insert("Cmd".into(), serde_json::Value::Null);
                    }
                }),
            )
        }
        Op::Shell(shell) => {
            stage.shell = shell.clone();
            let shell = shell.clone();
            meta(
                format!("SHELL {}", go_list(&shell)),
                Box::new(move |s| {
                    s.runtime().insert("Shell".into(), json!(shell));
                }),
            )
        }
        Op::Stopsignal(text) => {
            let signal = words::expand(text, vars);
            meta(
                format!("STOPSIGNAL {signal}"),
                Box::new(move |s| {
                    s.runtime().insert("StopSignal".into(), json!(signal));
                }),
            )
        }
        Op::Maintainer(name) => {
            let name = name.clone();
            meta(
                format!("MAINTAINER {name}"),
                Box::new(move |s| s.config["author"] = json!(name)),
            )
        }
        Op::Run { .. } | Op::Copy(_) => {
            return Err(BuildError::Instruction {
                line,
                instruction: "RUN",
                reason: "not a metadata instruction".into(),
            });
        }
    })
}

fn instruction_error(line: usize, instruction: &'static str, name: &str) -> BuildError {
    BuildError::Instruction {
        line,
        instruction,
        reason: format!("{name} has no value (write {name}=VALUE)"),
    }
}

/// A list as Go's `%q` of a string slice prints it, as docker's history shows commands:
/// `["/bin/sh" "-c" "echo hi"]`.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| serde_json::to_string(i).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(" "))
}

//! The Dockerfile, parsed with the `parse-dockerfile` crate into stages of owned steps whose
//! text is still unexpanded: variables are expanded as each step runs, with the build args and
//! environment of that moment.

use std::path::Path;

use parse_dockerfile::{Command, Flag, Instruction, JsonOrStringArray, Source};

use crate::error::{BuildError, Result};

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM` (raw text), usable in `FROM` lines.
    pub global_args: Vec<String>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// One `FROM` and what follows it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The base image as written (`scratch`, a reference, or an earlier stage's name).
    pub base: String,
    /// The `AS` name.
    pub name: Option<String>,
    /// The `FROM` line as written, after the keyword.
    pub from_text: String,
    /// The steps after `FROM`.
    pub steps: Vec<Step>,
}

/// One instruction of a stage, with its line number.
#[derive(Debug, Clone)]
pub struct Step {
    /// Line in the Dockerfile (1-based).
    pub line: usize,
    /// The instruction.
    pub op: Op,
}

/// A command in shell or exec form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// `["prog", "arg"]`.
    Exec(Vec<String>),
    /// `prog arg`, run by the stage's shell.
    Shell(String),
}

/// `COPY` or `ADD`.
#[derive(Debug, Clone)]
pub struct CopyOp {
    /// `ADD` rather than `COPY`.
    pub add: bool,
    /// `--from=stage|image`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=octal`.
    pub chmod: Option<String>,
    /// Sources (unexpanded).
    pub sources: Vec<String>,
    /// Destination (unexpanded).
    pub dest: String,
}

/// An instruction this builder runs.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Op {
    Run {
        command: CommandForm,
        /// `--network=none|host|default`.
        network: Option<String>,
    },
    Copy(CopyOp),
    Env(String),
    Arg(String),
    Workdir(String),
    User(String),
    Label(String),
    Expose(Vec<String>),
    Entrypoint(CommandForm),
    Cmd(CommandForm),
    Volume(Vec<String>),
    Shell(Vec<String>),
    Stopsignal(String),
    Maintainer(String),
}

impl Dockerfile {
    /// Parses `text`, the contents of the Dockerfile at `file` (named in errors).
    pub fn parse(file: &Path, text: &str) -> Result<Dockerfile> {
        let parsed = parse_dockerfile::parse(text).map_err(|e| BuildError::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for instruction in &parsed.instructions {
            if let Instruction::From(from) = instruction {
                let at = line(from.from.span.start);
                if let Some(flag) = from.options.first() {
                    return Err(unsupported(at, &format!("FROM --{}", flag.name.value)));
                }
                stages.push(Stage {
                    base: from.image.value.to_string(),
                    name: from.as_.as_ref().map(|(_, n)| n.value.to_lowercase()),
                    from_text: text[from.image.span.start..from_end(from)].to_owned(),
                    steps: Vec::new(),
                });
                continue;
            }
            let Some(stage) = stages.last_mut() else {
                match instruction {
                    Instruction::Arg(arg) => global_args.push(arg.arguments.value.to_string()),
                    _ => {
                        return Err(BuildError::Instruction {
                            line: 1,
                            instruction: "FROM",
                            reason: "the Dockerfile must start with FROM (or ARG)".into(),
                        });
                    }
                }
                continue;
            };
            stage.steps.push(step(text, instruction, &line)?);
        }
        if stages.is_empty() {
            return Err(BuildError::Instruction {
                line: 1,
                instruction: "FROM",
                reason: "the Dockerfile has no FROM".into(),
            });
        }
        Ok(Dockerfile {
            global_args,
            stages,
        })
    }
}

fn from_end(from: &parse_dockerfile::FromInstruction<'_>) -> usize {
    match &from.as_ {
        Some((_, name)) => name.span.end,
        None => from.image.span.end,
    }
}

fn unsupported(line: usize, what: &str) -> BuildError {
    BuildError::Unsupported {
        line,
        what: what.to_owned(),
    }
}

fn step(text: &str, instruction: &Instruction<'_>, line: &dyn Fn(usize) -> usize) -> Result<Step> {
    let s = |u: &parse_dockerfile::UnescapedString<'_>| u.value.to_string();
    let (at, op) = match instruction {
        Instruction::Run(run) => {
            let at = line(run.run.span.start);
            let mut network = None;
            for flag in &run.options {
                match &*flag.name.value {
                    "network" => network = flag_value(flag),
                    other => return Err(unsupported(at, &format!("RUN --{other}"))),
                }
            }
            if !run.here_docs.is_empty() {
                return Err(unsupported(at, "RUN with a here-document"));
            }
            let command = command(text, &run.arguments);
            (at, Op::Run { command, network })
        }
        Instruction::Copy(copy) => {
            let at = line(copy.copy.span.start);
            let op = copy_op(at, false, &copy.options, &copy.src, s(&copy.dest))?;
            (at, Op::Copy(op))
        }
        Instruction::Add(add) => {
            let at = line(add.add.span.start);
            let op = copy_op(at, true, &add.options, &add.src, s(&add.dest))?;
            (at, Op::Copy(op))
        }
        Instruction::Env(i) => (line(i.env.span.start), Op::Env(s(&i.arguments))),
        Instruction::Arg(i) => (line(i.arg.span.start), Op::Arg(s(&i.arguments))),
        Instruction::Workdir(i) => (line(i.workdir.span.start), Op::Workdir(s(&i.arguments))),
        Instruction::User(i) => (line(i.user.span.start), Op::User(s(&i.arguments))),
        Instruction::Label(i) => (line(i.label.span.start), Op::Label(s(&i.arguments))),
        Instruction::Expose(i) => (
            line(i.expose.span.start),
            Op::Expose(i.arguments.iter().map(s).collect()),
        ),
        Instruction::Entrypoint(i) => (
            line(i.entrypoint.span.start),
            Op::Entrypoint(command(text, &i.arguments)),
        ),
        Instruction::Cmd(i) => (line(i.cmd.span.start), Op::Cmd(command(text, &i.arguments))),
        Instruction::Volume(i) => {
            let paths = match &i.arguments {
                JsonOrStringArray::Json(a) => a.value.iter().map(s).collect(),
                JsonOrStringArray::String(a) => a.iter().map(s).collect(),
            };
            (line(i.volume.span.start), Op::Volume(paths))
        }
        Instruction::Shell(i) => (
            line(i.shell.span.start),
            Op::Shell(i.arguments.iter().map(s).collect()),
        ),
        Instruction::Stopsignal(i) => (
            line(i.stopsignal.span.start),
            Op::Stopsignal(s(&i.arguments)),
        ),
        Instruction::Maintainer(i) => (line(i.maintainer.span.start), Op::Maintainer(s(&i.name))),
        Instruction::Healthcheck(i) => {
            return Err(unsupported(line(i.healthcheck.span.start), "HEALTHCHECK"));
        }
        Instruction::Onbuild(i) => {
            return Err(unsupported(line(i.onbuild.span.start), "ONBUILD"));
        }
        // `parse` starts a stage at each FROM and never passes one here.
        _ => return Err(unsupported(0, "an instruction unknown to this version")),
    };
    Ok(Step { line: at, op })
}

fn flag_value(flag: &Flag<'_>) -> Option<String> {
    flag.value.as_ref().map(|v| v.value.to_string())
}

fn copy_op(
    at: usize,
    add: bool,
    options: &[Flag<'_>],
    sources: &[Source<'_>],
    dest: String,
) -> Result<CopyOp> {
    let keyword = if add { "ADD" } else { "COPY" };
    let mut op = CopyOp {
        add,
        from: None,
        chown: None,
        chmod: None,
        sources: Vec::new(),
        dest,
    };
    for flag in options {
        let slot = match &*flag.name.value {
            "from" if !add => &mut op.from,
            "chown" => &mut op.chown,
            "chmod" => &mut op.chmod,
            other => return Err(unsupported(at, &format!("{keyword} --{other}"))),
        };
        *slot = flag_value(flag);
    }
    for source in sources {
        match source {
            Source::Path(p) => {
                let path = p.value.to_string();
                if add && (path.contains("://") || path.starts_with("git@")) {
                    return Err(unsupported(at, "ADD of a URL (local files only)"));
                }
                op.sources.push(path);
            }
            _ => return Err(unsupported(at, &format!("{keyword} with a here-document"))),
        }
    }
    Ok(op)
}

/// The command of `RUN`, `CMD` or `ENTRYPOINT`; shell form with its line continuations joined.
fn command(text: &str, command: &Command<'_>) -> CommandForm {
    match command {
        Command::Exec(args) => {
            CommandForm::Exec(args.value.iter().map(|a| a.value.to_string()).collect())
        }
        Command::Shell(shell) => {
            let raw = &text[shell.span.clone()];
            CommandForm::Shell(join_continuations(raw))
        }
        // A form newer versions of the parser may add: nothing this builder can run.
        _ => CommandForm::Exec(Vec::new()),
    }
}

/// Removes backslash-newline pairs and the comment lines between continued lines, as docker
/// does before handing a shell-form command to the shell.
fn join_continuations(raw: &str) -> String {
    let mut out = String::new();
    let mut lines = raw.split('\n').peekable();
    let mut first = true;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if !first && trimmed.starts_with('#') {
            continue;
        }
        first = false;
        let line = line.strip_suffix('\r').unwrap_or(line);
        match line.strip_suffix('\\') {
            Some(head) if lines.peek().is_some() => out.push_str(head),
            _ => out.push_str(line),
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"ARG BASE=busybox
FROM $BASE AS build
ENV A=1 B="two words"
WORKDIR /src
RUN echo one \
    && echo two
COPY --chown=1:2 a.txt b/ /dst/
RUN ["sh", "-c", "true"]
CMD ["sh"]

FROM scratch
COPY --from=build /dst /
"#;

    #[test]
    fn stages_steps_and_forms() {
        let df = Dockerfile::parse(Path::new("Dockerfile"), TEXT).unwrap();
        assert_eq!(df.global_args, ["BASE=busybox"]);
        assert_eq!(df.stages.len(), 2);
        let build = &df.stages[0];
        assert_eq!(
            (build.base.as_str(), build.name.as_deref()),
            ("$BASE", Some("build"))
        );
        assert_eq!(build.from_text, "$BASE AS build");
        assert_eq!(build.steps.len(), 6);
        match &build.steps[2].op {
            Op::Run { command, network } => {
                assert_eq!(
                    *command,
                    CommandForm::Shell("echo one     && echo two".into())
                );
                assert_eq!(*network, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(build.steps[2].line, 5);
        match &build.steps[3].op {
            Op::Copy(c) => {
                assert_eq!(c.sources, ["a.txt", "b/"]);
                assert_eq!(c.dest, "/dst/");
                assert_eq!(c.chown.as_deref(), Some("1:2"));
            }
            other => panic!("{other:?}"),
        }
        match &df.stages[1].steps[0].op {
            Op::Copy(c) => assert_eq!(c.from.as_deref(), Some("build")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsupported_instructions_name_their_line() {
        let err = Dockerfile::parse(Path::new("D"), "FROM a\nHEALTHCHECK NONE\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: HEALTHCHECK is not supported by strata build"
        );
        let err = Dockerfile::parse(Path::new("D"), "FROM a\nADD https://x/y /\n").unwrap_err();
        assert!(err.to_string().contains("URL"), "{err}");
    }
}

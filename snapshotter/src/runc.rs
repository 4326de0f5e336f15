//! Runs a command in a container on a rootfs with Debian's `runc` (feature `runc`): writes the
//! bundle's `config.json` with [`oci_spec::runtime`] types, runs `runc run`, and deletes the
//! container afterwards, whatever happened.
//!
//! The rootfs is any directory, typically a snapshot mounted with
//! [`Snapshotter::mount`](crate::Snapshotter::mount). runc keeps its state under
//! `BUNDLE/runc-state` (`runc --root`), so runs never touch the system's runc state. Running
//! containers needs root.
//!
//! ```no_run
//! use std::path::Path;
//! use strata_snapshotter::runc::{Container, Network};
//! # fn main() -> Result<(), strata_snapshotter::runc::RuncError> {
//! let status = Container::new(Path::new("/tmp/rootfs"), ["sh", "-c", "echo hi"])
//!     .env("HOME=/root")
//!     .network(Network::None)
//!     .run(Path::new("/tmp/bundle"), "demo")?;
//! assert!(status.success());
//! # Ok(()) }
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxNamespace, LinuxNamespaceType, Mount, Process, Root, Spec, User, get_default_mounts,
};

/// The mounts every container gets; `/sys` is read-only.
const MOUNTS: [&str; 5] = ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"];

/// What went wrong launching a container (not the command's own failure: that is its
/// [`ExitStatus`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuncError {
    /// The bundle dir could not be prepared.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// `config.json` could not be written.
    #[error("write runtime config {path}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// Why it failed.
        source: OciSpecError,
    },
    /// runc could not be started or waited for.
    #[error("run {runc} {args:?}")]
    Spawn {
        /// The runc program.
        runc: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// Why it failed.
        source: io::Error,
    },
    /// `runc delete -f` failed: the container may still exist in `state`.
    #[error("runc delete -f {id} (state {state}): {stderr}")]
    Delete {
        /// The container id.
        id: String,
        /// runc's state dir.
        state: PathBuf,
        /// What runc said.
        stderr: String,
    },
}

/// The container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A network namespace of its own with only a loopback device.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// One command to run in a container (see the [module docs](self)).
#[derive(Debug)]
pub struct Container {
    rootfs: PathBuf,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    network: Network,
    hostname: String,
    runc: PathBuf,
    stdout: Option<Stdio>,
    user: (u32, u32),
}

impl Container {
    /// Runs `args` (program first, looked up in the container's `PATH`) as root (see
    /// [`Container::user`]) in `/` of
    /// `rootfs`, which stays writable, with the default `PATH`, no network and stdin empty.
    pub fn new<S: Into<String>>(rootfs: &Path, args: impl IntoIterator<Item = S>) -> Container {
        Container {
            rootfs: rootfs.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cwd: "/".to_owned(),
            network: Network::None,
            hostname: "strata".to_owned(),
            runc: PathBuf::from("runc"),
            stdout: None,
            user: (0, 0),
        }
    }

    /// Adds `NAME=value` to the environment (a later `PATH=` replaces the default).
    pub fn env(mut self, var: impl Into<String>) -> Container {
        let var = var.into();
        let name = var.split('=').next().unwrap_or_default();
        self.env.retain(|v| v.split('=').next() != Some(name));
        self.env.push(var);
        self
    }

    /// Runs in `cwd` (absolute, inside the container) instead of `/`.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Container {
        self.cwd = cwd.into();
        self
    }

    /// Runs the command as `uid` and `gid` instead of root.
    pub fn user(mut self, uid: u32, gid: u32) -> Container {
        self.user = (uid, gid);
        self
    }

    /// Which network the container gets.
    pub fn network(mut self, network: Network) -> Container {
        self.network = network;
        self
    }

    /// The container's hostname (default `strata`).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Container {
        self.hostname = hostname.into();
        self
    }

    /// Runs this runc program instead of `runc` from `PATH`.
    pub fn runc(mut self, runc: impl Into<PathBuf>) -> Container {
        self.runc = runc.into();
        self
    }

    /// Where [`Container::run`] sends the command's stdout (default: this process's stdout).
    pub fn stdout(mut self, stdout: impl Into<Stdio>) -> Container {
        self.stdout = Some(stdout.into());
        self
    }

    /// The runtime config [`Container::run`] writes: the command, namespaces (pid, mount, ipc,
    /// uts, and network unless [`Network::Host`]), the standard mounts, a writable root.
    pub fn spec(&self) -> Spec {
        let mut user = User::default();
        user.set_uid(self.user.0).set_gid(self.user.1);
        let mut process = Process::default();
        process
            .set_args(Some(self.args.clone()))
            .set_env(Some(self.env.clone()))
            .set_cwd(PathBuf::from(&self.cwd))
            .set_terminal(Some(false))
            .set_user(user);
        let mut root = Root::default();
        root.set_path(self.rootfs.clone()).set_readonly(Some(false));
        let mounts: Vec<Mount> = get_default_mounts()
            .into_iter()
            .filter(|m| MOUNTS.iter().any(|d| m.destination() == Path::new(d)))
            .collect();
        let mut kinds = vec![
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
        ];
        if self.network == Network::None {
            kinds.push(LinuxNamespaceType::Network);
        }
        let namespaces = kinds
            .into_iter()
            .map(|typ| {
                let mut ns = LinuxNamespace::default();
                ns.set_typ(typ);
                ns
            })
            .collect();
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_namespaces(Some(namespaces));
        spec.set_process(Some(process))
            .set_root(Some(root))
            .set_hostname(Some(self.hostname.clone()))
            .set_mounts(Some(mounts))
            .set_linux(Some(linux));
        spec
    }

    /// Writes `bundle/config.json` and runs the command as container `id` (`runc run`), its
    /// stderr and (unless redirected with [`Container::stdout`]) stdout passed through; then
    /// deletes the container. Returns the command's exit status.
    pub fn run(mut self, bundle: &Path, id: &str) -> Result<ExitStatus, RuncError> {
        let stdout = self.stdout.take().unwrap_or_else(Stdio::inherit);
        let mut command = self.command(bundle, id)?;
        command.stdout(stdout).stderr(Stdio::inherit());
        let status = command.status();
        let deleted = self.delete(bundle, id);
        let status = status.map_err(|source| self.spawn_error(bundle, id, source))?;
        deleted?;
        Ok(status)
    }

    /// Like [`Container::run`], with the command's stdout and stderr captured.
    pub fn output(self, bundle: &Path, id: &str) -> Result<Output, RuncError> {
        let mut command = self.command(bundle, id)?;
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = command.output();
        let deleted = self.delete(bundle, id);
        let output = output.map_err(|source| self.spawn_error(bundle, id, source))?;
        deleted?;
        Ok(output)
    }

    /// Writes the config and returns the `runc run` command, stdin empty.
    fn command(&self, bundle: &Path, id: &str) -> Result<Command, RuncError> {
        fs::create_dir_all(bundle).map_err(|source| RuncError::Io {
            op: "create bundle dir",
            path: bundle.to_owned(),
            source,
        })?;
        let config = bundle.join("config.json");
        self.spec()
            .save(&config)
            .map_err(|source| RuncError::Config {
                path: config,
                source,
            })?;
        let mut command = Command::new(&self.runc);
        command
            .arg("--root")
            .arg(state_dir(bundle))
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null());
        Ok(command)
    }

    /// `runc delete -f`: a no-op when `runc run` already removed the container, the cleanup
    /// when it was interrupted half-way.
    fn delete(&self, bundle: &Path, id: &str) -> Result<(), RuncError> {
        let state = state_dir(bundle);
        if !state.join(id).exists() {
            return Ok(());
        }
        let out = Command::new(&self.runc)
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", id])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuncError::Spawn {
                runc: self.runc.clone(),
                args: vec!["delete".into(), "-f".into(), id.into()],
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(RuncError::Delete {
            id: id.to_owned(),
            state,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }

    fn spawn_error(&self, bundle: &Path, id: &str, source: io::Error) -> RuncError {
        RuncError::Spawn {
            runc: self.runc.clone(),
            args: vec![
                "run".into(),
                "--bundle".into(),
                bundle.display().to_string(),
                id.into(),
            ],
            source,
        }
    }
}

/// runc's private state dir for containers of `bundle`.
fn state_dir(bundle: &Path) -> PathBuf {
    bundle.join("runc-state")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaces(spec: &Spec) -> Vec<LinuxNamespaceType> {
        let linux = spec.linux().as_ref().unwrap();
        linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    #[test]
    fn the_spec_runs_the_command_as_root_on_a_writable_rootfs() {
        let spec = Container::new(Path::new("/r"), ["sh", "-c", "true"])
            .env("PATH=/bin")
            .env("A=1")
            .cwd("/tmp")
            .spec();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_deref().unwrap(), ["sh", "-c", "true"]);
        assert_eq!(process.env().as_deref().unwrap(), ["PATH=/bin", "A=1"]);
        assert_eq!(process.cwd(), Path::new("/tmp"));
        assert_eq!(process.terminal(), Some(false));
        assert_eq!((process.user().uid(), process.user().gid()), (0, 0));
        let root = spec.root().as_ref().unwrap();
        assert_eq!(
            (root.path().as_path(), root.readonly()),
            (Path::new("/r"), Some(false))
        );
        let mounts: Vec<&Path> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().as_path())
            .collect();
        assert_eq!(mounts, MOUNTS.map(Path::new));
        assert!(namespaces(&spec).contains(&LinuxNamespaceType::Network));
    }

    #[test]
    fn user_sets_the_process_ids() {
        let spec = Container::new(Path::new("/r"), ["id"])
            .user(1000, 50)
            .spec();
        let user = spec.process().as_ref().unwrap().user();
        assert_eq!((user.uid(), user.gid()), (1000, 50));
    }

    #[test]
    fn host_network_shares_the_hosts_namespace() {
        let spec = Container::new(Path::new("/r"), ["true"])
            .network(Network::Host)
            .spec();
        assert_eq!(
            namespaces(&spec),
            [
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Uts
            ]
        );
    }
}

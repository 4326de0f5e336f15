//! A private containerd for tests: root, state and sockets under a temp dir, `strata serve` as
//! its `strata` proxy snapshotter, stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::daemon::Daemon;

/// The namespace the tests' ctr calls use.
const NAMESPACE: &str = "strata-test";

/// Whether containerd, ctr and runc are installed: each missing one skips the test, saying so
/// (or fails it under `STRATA_REQUIRE_PEERS=1`, see [`crate::peer`]).
pub fn peers() -> bool {
    crate::peer("containerd", "containerd")
        && crate::peer("ctr", "containerd")
        && crate::peer("runc", "runc")
}

/// Which of containerd's plugins a private containerd runs beyond the basics.
pub enum Plugins<'a> {
    /// No CRI plugin: nothing needs Kubernetes.
    Basic,
    /// Kubernetes' CRI plugin (namespace `k8s.io`), unpacking images onto `strata`; a
    /// registry on 127.0.0.1 is plain HTTP to it, as to docker. Registry hosts are configured
    /// in `DIR/certs.d` (containerd's `hosts.toml`).
    Cri,
    /// [`Plugins::Cri`] with snapshot annotations on (`disable_snapshot_annotations = false`):
    /// its Prepares name the image and layer, so that `strata serve` fetches what it lacks.
    CriAnnotated {
        /// The pods' sandbox ("pause") image, instead of containerd's default.
        sandbox_image: Option<&'a str>,
    },
}

/// The namespace of the CRI plugin's images and containers.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A running private containerd.
pub struct Containerd {
    sock: PathBuf,
    _daemon: Daemon,
}

impl Containerd {
    /// Starts containerd with everything under `dir` (its socket `dir/containerd.sock`), using
    /// the snapshotter serving on `strata_sock` as `strata`; returns once it booted.
    pub fn start(dir: &Path, strata_sock: &Path) -> Containerd {
        Containerd::start_with(dir, strata_sock, Plugins::Basic)
    }

    /// Like [`Containerd::start`], with `plugins`.
    pub fn start_with(dir: &Path, strata_sock: &Path, plugins: Plugins<'_>) -> Containerd {
        let config = dir.join("config.toml");
        let d = dir.display();
        let s = strata_sock.display();
        let annotations_off = !matches!(plugins, Plugins::CriAnnotated { .. });
        let sandbox_image = match &plugins {
            Plugins::CriAnnotated {
                sandbox_image: Some(image),
            } => format!("\n  sandbox_image = \"{image}\""),
            _ => String::new(),
        };
        let plugins = match plugins {
            Plugins::Basic => r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#.to_owned(),
            Plugins::Cri | Plugins::CriAnnotated { .. } => format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]{sandbox_image}
  # Pods' sandboxes keep the test's own OOM score: runc may not lower it (in a VM's
  # sandbox, say), and the pod fails to start.
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "strata"
    disable_snapshot_annotations = {annotations_off}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d""#
            ),
        };
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
{plugins}
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[proxy_plugins]
  [proxy_plugins.strata]
    type = "snapshot"
    address = "{s}"
"#
            ),
        )
        .unwrap();
        let mut containerd = Command::new("containerd");
        containerd.arg("--config").arg(&config);
        Containerd {
            sock: dir.join("containerd.sock"),
            _daemon: Daemon::start("containerd", containerd, "containerd successfully booted"),
        }
    }

    /// Runs `ctr ARGS…` against it: stdout on success, stderr otherwise.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        ctr(&self.sock, args)
    }

    /// Like [`Containerd::ctr`], in namespace `namespace`.
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> Result<String, String> {
        ctr_in(&self.sock, namespace, args)
    }

    /// Its socket.
    pub fn socket(&self) -> &Path {
        &self.sock
    }
}

/// Runs `ctr ARGS…` against the containerd listening on `sock`, in the tests' namespace: stdout
/// on success, stderr otherwise.
pub fn ctr(sock: &Path, args: &[&str]) -> Result<String, String> {
    ctr_in(sock, NAMESPACE, args)
}

/// Like [`ctr`], in namespace `namespace`.
pub fn ctr_in(sock: &Path, namespace: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(sock)
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

//! `strata serve`: containerd's snapshots gRPC service on a unix socket, fetching the images
//! containerd's CRI plugin pulls with Strata's registry client.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use strata_snapshotter::Fetch;
use strata_snapshotter::grpc::SnapshotService;

use super::fetch::RegistryFetcher;
use crate::global::Global;

/// Serve containerd's snapshots API (for `[proxy_plugins.NAME] type = "snapshot"`).
#[derive(Debug, clap::Args)]
pub struct Serve {
    /// The unix socket to listen on; a stale socket there is replaced.
    #[arg(long, value_name = "SOCKET")]
    address: PathBuf,
    /// Do not fetch images for containerd's CRI plugin: layers the store lacks are left to
    /// containerd to fetch and unpack, even when its Prepares name their image.
    #[arg(long)]
    no_fetch: bool,
}

impl Serve {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        // containerd sees, removes and cleans up only its own namespace: the command line's
        // snapshots on the same root are out of its reach.
        let snapshotter = Arc::new(super::open_in(
            global,
            crate::global::Access::Create,
            strata_snapshotter::CONTAINERD_NAMESPACE,
        )?);
        let mut service = SnapshotService::new(snapshotter);
        if !self.no_fetch {
            // A store handle of its own: the snapshotter's is not shared.
            let store = Arc::new(global.open_store(crate::global::Access::Create)?);
            service = service.with_fetch(Arc::new(Fetch::new(RegistryFetcher::new(store))));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        runtime.block_on(async move {
            if let Ok(meta) = std::fs::symlink_metadata(&self.address) {
                anyhow::ensure!(
                    meta.file_type().is_socket(),
                    "{} exists and is not a socket",
                    self.address.display()
                );
                std::fs::remove_file(&self.address)
                    .with_context(|| format!("removing stale {}", self.address.display()))?;
            }
            let listener = tokio::net::UnixListener::bind(&self.address)
                .with_context(|| format!("listening on {}", self.address.display()))?;
            // Snapshot mounts are root's business: only root may talk to the socket.
            std::fs::set_permissions(&self.address, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("chmod {}", self.address.display()))?;
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let shutdown = async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            };
            tracing::info!(address = %self.address.display(), "serving containerd snapshots");
            eprintln!("strata: serving snapshots on {}", self.address.display());
            service
                .serve(listener, shutdown)
                .await
                .context("serving gRPC")?;
            let _ = std::fs::remove_file(&self.address);
            Ok(())
        })
    }
}

//! containerd's snapshots gRPC service (`containerd.services.snapshots.v1`) over a
//! [`Snapshotter`](crate::Snapshotter), for containerd's `[proxy_plugins]` (feature `grpc`).
//!
//! The code for the messages and the service is generated at build time from the vendored
//! `.proto` files (`proto/`) by tonic-prost-build, with protox as the pure-Rust compiler.
//! Operations run on tokio's blocking pool: they fsync, and must not stall the reactor.
//! Prepare answers with remote snapshots ([`crate::Snapshotter::prepare_remote`]) for layers the
//! store already holds, and with a [`crate::Fetch`] ([`SnapshotService::with_fetch`]) fetches
//! those of the images containerd's CRI plugin pulls that it lacks.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use strata_snapshotter::{Snapshotter, grpc};
//!
//! let snapshotter = Arc::new(Snapshotter::open("/var/lib/strata")?);
//! let listener = tokio::net::UnixListener::bind("/run/strata.sock")?;
//! grpc::serve(snapshotter, listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod client;
mod service;

pub use client::{channel, connect};
pub use service::{SnapshotService, serve, status};

/// The generated protobuf types and service, one module per protobuf package.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// `containerd.types`.
    pub mod types {
        tonic::include_proto!("containerd.types");
    }
    /// `containerd.services.*`.
    pub mod services {
        /// `containerd.services.snapshots`.
        pub mod snapshots {
            /// `containerd.services.snapshots.v1`: the service and its messages.
            pub mod v1 {
                tonic::include_proto!("containerd.services.snapshots.v1");
            }
        }
    }
}

//! A client of the snapshots service over a unix socket, for tests, benchmarks and tools
//! that talk to `strata serve` (or to containerd's own snapshots service) directly.

use std::path::PathBuf;

use tonic::transport::{Channel, Endpoint};

use super::proto::services::snapshots::v1::snapshots_client::SnapshotsClient;

/// Connects to the snapshots service listening on the unix socket `socket`.
///
/// # Errors
/// The socket cannot be connected to.
pub async fn connect(
    socket: impl Into<PathBuf>,
) -> Result<SnapshotsClient<Channel>, tonic::transport::Error> {
    Ok(SnapshotsClient::new(channel(socket).await?))
}

/// A gRPC channel to the unix socket `socket`, for a client of any service there (containerd's
/// own services on its socket, say).
///
/// # Errors
/// The socket cannot be connected to.
pub async fn channel(socket: impl Into<PathBuf>) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.into();
    // The URI is required by tonic but unused: the connector below always dials the socket.
    Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}

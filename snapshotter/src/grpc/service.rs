//! The service implementation: request decoding, the blocking call, error mapping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use strata_cow::MountSpec;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use super::proto::services::snapshots::v1 as pb;
use super::proto::types::Mount;
use crate::{Error, ErrorKind, Fetch, FieldPaths, Info, Kind, Labels, Snapshotter};
use pb::snapshots_server::{Snapshots, SnapshotsServer};

/// containerd's snapshots service over one [`Snapshotter`].
#[derive(Debug, Clone)]
pub struct SnapshotService {
    snapshotter: Arc<Snapshotter>,
    fetch: Option<Arc<Fetch>>,
}

impl SnapshotService {
    /// The service over `snapshotter`.
    pub fn new(snapshotter: Arc<Snapshotter>) -> SnapshotService {
        SnapshotService {
            snapshotter,
            fetch: None,
        }
    }

    /// Prepares with CRI-driven fetch through `fetch`
    /// ([`Snapshotter::prepare_fetching`]) rather than from the store's images alone.
    pub fn with_fetch(mut self, fetch: Arc<Fetch>) -> SnapshotService {
        self.fetch = Some(fetch);
        self
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .add_service(self.into_server())
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await
    }

    /// Wrapped for tonic's router.
    pub fn into_server(self) -> SnapshotsServer<SnapshotService> {
        SnapshotsServer::new(self)
    }

    /// Runs `op` on the blocking pool, mapping its error to containerd's status code.
    async fn call<T, F>(&self, op: F) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshotter) -> Result<T, Error> + Send + 'static,
    {
        let snapshotter = self.snapshotter.clone();
        let result = tokio::task::spawn_blocking(move || op(&snapshotter))
            .await
            .map_err(|e| Status::internal(format!("snapshot operation panicked: {e}")))?;
        result.map(Response::new).map_err(|e| status(&e))
    }
}

/// The gRPC status containerd's `errdefs.FromGRPC` turns back into the same error class.
pub fn status(err: &Error) -> Status {
    // The whole chain: each message names only what failed, its cause is the next one.
    let message = std::iter::successors(Some(err as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    match err.kind() {
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::AlreadyExists => Status::already_exists(message),
        ErrorKind::FailedPrecondition => Status::failed_precondition(message),
        ErrorKind::InvalidArgument => Status::invalid_argument(message),
        _ => Status::internal(message),
    }
}

/// Serves the snapshots service over `snapshotter` on `listener` until `shutdown` completes
/// (see [`SnapshotService::serve`] for more options).
pub async fn serve(
    snapshotter: Arc<Snapshotter>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    SnapshotService::new(snapshotter)
        .serve(listener, shutdown)
        .await
}

fn mounts(specs: Vec<MountSpec>) -> Vec<Mount> {
    specs
        .into_iter()
        .map(|spec| Mount {
            r#type: spec.fs_type,
            source: spec.source,
            target: String::new(),
            options: spec.options,
        })
        .collect()
}

fn parent(parent: String) -> Option<String> {
    (!parent.is_empty()).then_some(parent)
}

fn labels(labels: std::collections::HashMap<String, String>) -> Labels {
    labels.into_iter().collect()
}

fn info(info: Info) -> pb::Info {
    let kind = match info.kind {
        Kind::View => pb::Kind::View,
        Kind::Active => pb::Kind::Active,
        Kind::Committed => pb::Kind::Committed,
    };
    pb::Info {
        name: info.name,
        parent: info.parent.unwrap_or_default(),
        kind: kind as i32,
        created_at: Some(info.created.into()),
        updated_at: Some(info.updated.into()),
        labels: info.labels.into_iter().collect(),
    }
}

/// The List stream: containerd's own service also sends infos in batches.
type ListStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ListSnapshotsResponse, Status>> + Send>>;

const LIST_BATCH: usize = 100;

#[tonic::async_trait]
impl Snapshots for SnapshotService {
    async fn prepare(
        &self,
        request: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let r = request.into_inner();
        let fetch = self.fetch.clone();
        self.call(move |sn| {
            let (key, parent, labels) = (&r.key, parent(r.parent), labels(r.labels));
            let specs = match &fetch {
                Some(fetch) => sn.prepare_fetching(key, parent.as_deref(), labels, fetch)?,
                None => sn.prepare_remote(key, parent.as_deref(), labels)?,
            };
            Ok(pb::PrepareSnapshotResponse {
                mounts: mounts(specs),
            })
        })
        .await
    }

    async fn view(
        &self,
        request: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let r = request.into_inner();
        self.call(move |sn| {
            let specs = sn.view(&r.key, parent(r.parent).as_deref(), labels(r.labels))?;
            Ok(pb::ViewSnapshotResponse {
                mounts: mounts(specs),
            })
        })
        .await
    }

    async fn mounts(
        &self,
        request: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let r = request.into_inner();
        self.call(move |sn| {
            Ok(pb::MountsResponse {
                mounts: mounts(sn.mounts(&r.key)?),
            })
        })
        .await
    }

    async fn commit(
        &self,
        request: Request<pb::CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        self.call(move |sn| sn.commit(&r.name, &r.key, labels(r.labels)))
            .await
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        self.call(move |sn| sn.remove(&r.key)).await
    }

    async fn stat(
        &self,
        request: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let r = request.into_inner();
        self.call(move |sn| {
            Ok(pb::StatSnapshotResponse {
                info: Some(info(sn.stat(&r.key)?)),
            })
        })
        .await
    }

    async fn update(
        &self,
        request: Request<pb::UpdateSnapshotRequest>,
    ) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let r = request.into_inner();
        let Some(new) = r.info else {
            return Err(Status::invalid_argument("update without snapshot info"));
        };
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        self.call(move |sn| {
            let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            let fields = if refs.is_empty() {
                FieldPaths::AllLabels
            } else {
                FieldPaths::Only(&refs)
            };
            let updated = sn.update(&new.name, labels(new.labels), fields)?;
            Ok(pb::UpdateSnapshotResponse {
                info: Some(info(updated)),
            })
        })
        .await
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<ListStream>, Status> {
        let r = request.into_inner();
        let all = self.call(move |sn| sn.list(&r.filters)).await?.into_inner();
        let batches: Vec<Result<pb::ListSnapshotsResponse, Status>> = all
            .chunks(LIST_BATCH)
            .map(|chunk| {
                Ok(pb::ListSnapshotsResponse {
                    info: chunk.iter().cloned().map(info).collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(
        &self,
        request: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let r = request.into_inner();
        self.call(move |sn| {
            let usage = sn.usage(&r.key)?;
            Ok(pb::UsageResponse {
                size: i64::try_from(usage.size).unwrap_or(i64::MAX),
                inodes: i64::try_from(usage.inodes).unwrap_or(i64::MAX),
            })
        })
        .await
    }

    async fn cleanup(&self, _: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        self.call(|sn| sn.cleanup()).await
    }
}

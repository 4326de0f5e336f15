//! The few calls of Kubernetes' CRI image service (`runtime.v1.ImageService`) the tests and the
//! remote-pull benchmark make to containerd's CRI plugin: what kubelet does to pull an image.
//!
//! containerd 1.6's `ctr images pull` downloads every layer before it unpacks, and never offers
//! a layer to the snapshotter as a remote snapshot; the CRI plugin's pull (containerd's
//! unpacker) does. The messages are declared here by hand, with the field numbers of CRI's
//! `api.proto`, for these calls only.

use std::path::Path;

use strata_snapshotter::grpc::channel;
use tonic::codegen::http::uri::PathAndQuery;

/// `runtime.v1.ImageSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    /// The image reference.
    #[prost(string, tag = "1")]
    pub image: String,
}

/// `runtime.v1.PullImageRequest` (without auth and sandbox config).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageRequest {
    /// What to pull.
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
}

/// `runtime.v1.PullImageResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageResponse {
    /// The pulled image's id (its config digest, with containerd).
    #[prost(string, tag = "1")]
    pub image_ref: String,
}

/// `runtime.v1.VersionRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionRequest {
    /// The client's CRI version.
    #[prost(string, tag = "1")]
    pub version: String,
}

/// `runtime.v1.VersionResponse` (the runtime's name only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    /// The runtime's name (`containerd`).
    #[prost(string, tag = "2")]
    pub runtime_name: String,
}

/// How many times a call is made while the CRI plugin says it is not initialized yet (it
/// initializes in the background after containerd says it booted).
const INIT_TRIES: usize = 100_000;

/// Calls `method` of the image service on containerd's socket `socket`.
async fn call<Req, Resp>(socket: &Path, method: &'static str, request: Req) -> Result<Resp, String>
where
    Req: prost::Message + Clone + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let channel = channel(socket).await.map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    let mut last = String::new();
    for _ in 0..INIT_TRIES {
        grpc.ready().await.map_err(|e| e.to_string())?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = PathAndQuery::from_static(method);
        match grpc
            .unary(tonic::Request::new(request.clone()), path, codec)
            .await
        {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if status.message().contains("not initialized") => {
                last = status.message().to_owned();
                tokio::task::yield_now().await;
            }
            Err(status) => return Err(format!("{method}: {status}")),
        }
    }
    Err(format!("{method}: {last}"))
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// `PullImage(image)` through the CRI plugin of the containerd on `socket`: fetches and unpacks
/// `image` onto the plugin's snapshotter as kubelet would. Returns the image id.
pub fn pull_image(socket: &Path, image: &str) -> Result<String, String> {
    let request = PullImageRequest {
        image: Some(ImageSpec {
            image: image.to_owned(),
        }),
    };
    let response: PullImageResponse =
        block_on(call(socket, "/runtime.v1.ImageService/PullImage", request))?;
    Ok(response.image_ref)
}

/// Returns once the CRI plugin of the containerd on `socket` answers (it initializes in the
/// background after containerd says it booted); the runtime's name.
pub fn wait_ready(socket: &Path) -> Result<String, String> {
    let request = VersionRequest {
        version: "v1".to_owned(),
    };
    let response: VersionResponse =
        block_on(call(socket, "/runtime.v1.RuntimeService/Version", request))?;
    Ok(response.runtime_name)
}

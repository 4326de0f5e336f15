//! The few calls of Kubernetes' CRI (`runtime.v1.ImageService` and `RuntimeService`) the tests
//! and the remote-pull benchmark make to containerd's CRI plugin: what kubelet does to pull an
//! image and to run a pod with a container.
//!
//! containerd 1.6's `ctr images pull` downloads every layer before it unpacks, and never offers
//! a layer to the snapshotter as a remote snapshot; the CRI plugin's pull (containerd's
//! unpacker) does. The messages are declared here by hand, with the field numbers of CRI's
//! `api.proto`, for these calls only: the `k8s-cri` crate generates its code in a build script
//! that needs `protoc`, which neither this machine nor CI installs (the workspace compiles its
//! own protos with protox).

use std::path::Path;

use strata_snapshotter::grpc::channel;
use strata_testkit::containerd::{Containerd, Plugins};
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

/// `runtime.v1.PodSandboxMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    /// The pod's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The pod's UID.
    #[prost(string, tag = "2")]
    pub uid: String,
    /// The pod's Kubernetes namespace.
    #[prost(string, tag = "3")]
    pub namespace: String,
}

/// `runtime.v1.NamespaceMode`: the node's namespace.
pub const NAMESPACE_MODE_NODE: i32 = 2;

/// `runtime.v1.NamespaceOption` (network only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    /// A `NamespaceMode` for the network.
    #[prost(int32, tag = "1")]
    pub network: i32,
}

/// `runtime.v1.LinuxSandboxSecurityContext` (namespaces only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    /// The pod's namespaces.
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
}

/// `runtime.v1.LinuxPodSandboxConfig` (security context only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    /// The pod's security context.
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
}

/// `runtime.v1.PodSandboxConfig` (what a host-network pod needs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    /// Who the pod is.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    /// Its host name.
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// The directory its containers' logs go to.
    #[prost(string, tag = "3")]
    pub log_directory: String,
    /// Linux settings.
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

/// `runtime.v1.RunPodSandboxRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    /// The pod.
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
}

/// `runtime.v1.RunPodSandboxResponse`; `runtime.v1.StopPodSandboxRequest` and
/// `RemovePodSandboxRequest` have the same one field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxId {
    /// The pod sandbox's id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// `runtime.v1.ContainerMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    /// The container's name in the pod.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `runtime.v1.ContainerConfig` (what a one-command container needs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    /// Who the container is.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    /// Its image.
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    /// The command (the image's entrypoint otherwise).
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    /// Its log file, relative to the pod's log directory.
    #[prost(string, tag = "11")]
    pub log_path: String,
}

/// `runtime.v1.CreateContainerRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    /// The pod it goes in.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// The container.
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    /// The pod's config, as given to RunPodSandbox.
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

/// `runtime.v1.CreateContainerResponse`, `StartContainerRequest` and `ContainerStatusRequest`
/// (without `verbose`): the container's id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerId {
    /// The container's id.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// `runtime.v1.ContainerState`: exited.
pub const CONTAINER_EXITED: i32 = 2;

/// `runtime.v1.ContainerStatus` (state and exit code).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatus {
    /// A `ContainerState`.
    #[prost(int32, tag = "3")]
    pub state: i32,
    /// Its exit code, once exited.
    #[prost(int32, tag = "7")]
    pub exit_code: i32,
}

/// `runtime.v1.ContainerStatusResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusResponse {
    /// The status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<ContainerStatus>,
}

/// An empty message (the responses of Start, Stop and Remove calls).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

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

/// A private containerd running `plugins` (a CRI plugin) with the snapshotter serving on
/// `strata_sock` as `strata`, all under `dir`, once its CRI plugin answers as containerd.
pub fn start_containerd(dir: &Path, strata_sock: &Path, plugins: Plugins<'_>) -> Containerd {
    let containerd = Containerd::start_with(dir, strata_sock, plugins);
    assert_eq!(wait_ready(containerd.socket()).unwrap(), "containerd");
    containerd
}

/// `RunPodSandbox(config)`: the pod sandbox's id.
pub fn run_pod_sandbox(socket: &Path, config: &PodSandboxConfig) -> Result<String, String> {
    let request = RunPodSandboxRequest {
        config: Some(config.clone()),
    };
    let response: PodSandboxId = block_on(call(
        socket,
        "/runtime.v1.RuntimeService/RunPodSandbox",
        request,
    ))?;
    Ok(response.pod_sandbox_id)
}

/// `StopPodSandbox(id)` then `RemovePodSandbox(id)`, which removes its containers too.
pub fn remove_pod_sandbox(socket: &Path, id: &str) -> Result<(), String> {
    let request = PodSandboxId {
        pod_sandbox_id: id.to_owned(),
    };
    let _: Empty = block_on(call(
        socket,
        "/runtime.v1.RuntimeService/StopPodSandbox",
        request.clone(),
    ))?;
    let _: Empty = block_on(call(
        socket,
        "/runtime.v1.RuntimeService/RemovePodSandbox",
        request,
    ))?;
    Ok(())
}

/// `CreateContainer` then `StartContainer`: the container's id.
pub fn start_container(
    socket: &Path,
    pod: &str,
    config: &ContainerConfig,
    sandbox_config: &PodSandboxConfig,
) -> Result<String, String> {
    let request = CreateContainerRequest {
        pod_sandbox_id: pod.to_owned(),
        config: Some(config.clone()),
        sandbox_config: Some(sandbox_config.clone()),
    };
    let created: ContainerId = block_on(call(
        socket,
        "/runtime.v1.RuntimeService/CreateContainer",
        request,
    ))?;
    let _: Empty = block_on(call(
        socket,
        "/runtime.v1.RuntimeService/StartContainer",
        created.clone(),
    ))?;
    Ok(created.container_id)
}

/// `ContainerStatus(id)`.
pub fn container_status(socket: &Path, id: &str) -> Result<ContainerStatus, String> {
    let request = ContainerId {
        container_id: id.to_owned(),
    };
    let response: ContainerStatusResponse = block_on(call(
        socket,
        "/runtime.v1.RuntimeService/ContainerStatus",
        request,
    ))?;
    response
        .status
        .ok_or_else(|| format!("container {id}: no status"))
}

//! Generates containerd's snapshots gRPC service from the vendored .proto files (feature `grpc`),
//! with protox, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "grpc")]
    {
        let protos = ["proto/containerd/services/snapshots/v1/snapshots.proto"];
        println!("cargo:rerun-if-changed=proto");
        let files = protox::compile(protos, ["proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(files)?;
    }
    Ok(())
}

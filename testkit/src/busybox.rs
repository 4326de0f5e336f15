//! A one-layer OCI image layout of Debian's static busybox (`/bin/busybox`, package
//! busybox-static), built by code: what container tests run.

use std::fs;
use std::path::Path;

use crate::hostile::{gzip, sha256};

/// Applets linked to busybox in the image's `/bin`.
const APPLETS: [&str; 5] = ["sh", "echo", "cat", "ls", "true"];

/// Writes at `dir` an OCI layout (`oci-layout`, `index.json`, `blobs/sha256`) with one image
/// of `/bin/busybox`, its applets `sh echo cat ls true` in `/bin`, `/etc/passwd`, `/tmp` and the
/// directories runc mounts over (`/proc`, `/dev`, `/sys`). Returns the image's manifest digest.
///
/// Callers check `peer("busybox", "busybox-static")` first.
pub fn busybox_layout(dir: &Path) -> String {
    layout(dir, true)
}

/// [`busybox_layout`] with its layer an uncompressed tar, which a registry client (skopeo, a
/// Go tool) compresses itself when it pushes the image.
pub fn busybox_layout_uncompressed(dir: &Path) -> String {
    layout(dir, false)
}

/// [`busybox_layout`] with the tree at `data` in its layer too, as `/data` (regular files,
/// directories and symlinks, with their owners, modes and mtimes), the image named `name` (a
/// full reference, which `ctr images import` takes from `io.containerd.image.name`).
pub fn busybox_layout_with_data(dir: &Path, data: &Path, name: &str) -> String {
    layout_of(dir, true, data_tar(data), name)
}

/// The busybox layout at `dir`, its layer gzipped or not; returns the manifest digest.
fn layout(dir: &Path, compressed: bool) -> String {
    let tar = rootfs().into_inner().expect("writing to memory");
    layout_of(dir, compressed, tar, "busybox")
}

/// The busybox rootfs tar with `data` appended under `data/`.
fn data_tar(data: &Path) -> Vec<u8> {
    let mut tar = rootfs();
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    tar.append_dir_all("data", data)
        .unwrap_or_else(|e| panic!("tar of {}: {e}", data.display()));
    tar.into_inner().expect("writing to memory")
}

/// A layout at `dir` of the image `name` whose one layer is `tar`, gzipped or not.
fn layout_of(dir: &Path, compressed: bool, tar: Vec<u8>, name: &str) -> String {
    let diff_id = sha256(&tar);
    let (layer, media_type) = if compressed {
        (gzip(&tar), "application/vnd.oci.image.layer.v1.tar+gzip")
    } else {
        (tar, "application/vnd.oci.image.layer.v1.tar")
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": media_type,
            "digest": sha256(&layer),
            "size": layer.len(),
        }],
    }))
    .expect("json");
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("creating the layout");
    for blob in [&layer, &config, &manifest] {
        fs::write(blobs.join(&sha256(blob)[7..]), blob).expect("writing a blob");
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(&manifest),
        "size": manifest.len(),
        "annotations": if name.contains('/') {
            serde_json::json!({
                "org.opencontainers.image.ref.name": name,
                "io.containerd.image.name": name,
            })
        } else {
            serde_json::json!({"org.opencontainers.image.ref.name": name})
        },
    }]});
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("writing index.json");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("writing oci-layout");
    sha256(&manifest)
}

/// The layer's entries in a tar builder, owned by root, mtimes fixed: finish it, or append more.
fn rootfs() -> tar::Builder<Vec<u8>> {
    let busybox = fs::read("/bin/busybox").expect("reading /bin/busybox (busybox-static)");
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: usize| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for (path, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
    ] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut h, path, &[][..]).expect("tar dir");
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len());
    tar.append_data(&mut h, "bin/busybox", busybox.as_slice())
        .expect("tar busybox");
    for applet in APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("tar applet");
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let mut h = header(tar::EntryType::Regular, 0o644, passwd.len());
    tar.append_data(&mut h, "etc/passwd", &passwd[..])
        .expect("tar passwd");
    tar
}

/// A two-stage Dockerfile over an image named `busybox`: the first stage writes `out.txt` from
/// the context's `app.txt` and `ENV`, the second copies it over and prints it as its `CMD`.
pub const MULTI_STAGE_DOCKERFILE: &str = r#"FROM busybox AS build
ENV GREETING=hello
WORKDIR /work
COPY app.txt ./
RUN echo "$GREETING from $(cat app.txt)" > out.txt

FROM busybox
COPY --from=build /work/out.txt /srv/out.txt
WORKDIR /srv
CMD ["cat", "out.txt"]
"#;

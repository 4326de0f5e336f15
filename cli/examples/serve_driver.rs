//! Drives `strata serve` through containerd's snapshots gRPC API, for `scripts/crash-trials.sh`.
//!
//! `serve_driver SOCKET` prepares and commits a base snapshot, then repeats: prepare `kN` on
//! `base`, write files into its upper directory, commit it as `cN`, and remove every third `cN`.
//! It prints `begin OP NAME` before each call and `ok OP NAME` once the server has answered, one
//! line each, flushed, so that whoever kills the server knows which operations were acknowledged.
//! It exits with the first error (the server is gone) and never stops otherwise.

use std::path::{Path, PathBuf};

use anyhow::Context;
use strata_snapshotter::grpc::proto::services::snapshots::v1 as pb;

const SNAPSHOTTER: &str = "strata";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let socket: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: serve_driver SOCKET")?
        .into();
    let mut client = strata_snapshotter::grpc::connect(socket).await?;

    let dir = prepare(&mut client, "base-work", "").await?;
    write_files(&dir, "base")?;
    commit(&mut client, "base", "base-work").await?;
    for n in 1u64.. {
        let (key, name) = (format!("k{n}"), format!("c{n}"));
        let dir = prepare(&mut client, &key, "base").await?;
        write_files(&dir, &key)?;
        commit(&mut client, &name, &key).await?;
        if n % 3 == 0 {
            step("remove", &name);
            let request = pb::RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: name.clone(),
            };
            client.remove(request).await?;
            done("remove", &name);
        }
    }
    Ok(())
}

/// Prepares active snapshot `key` on `parent` (none when empty) and returns the directory its
/// writes land in: the bound directory of a snapshot without parent, the overlay's upper
/// directory otherwise.
async fn prepare(
    client: &mut pb::snapshots_client::SnapshotsClient<tonic::transport::Channel>,
    key: &str,
    parent: &str,
) -> anyhow::Result<PathBuf> {
    step("prepare", key);
    let request = pb::PrepareSnapshotRequest {
        snapshotter: SNAPSHOTTER.into(),
        key: key.into(),
        parent: parent.into(),
        labels: Default::default(),
    };
    let mounts = client.prepare(request).await?.into_inner().mounts;
    done("prepare", key);
    let mount = mounts.first().context("prepare returned no mount")?;
    let dir = if mount.r#type == "bind" {
        Some(mount.source.as_str())
    } else {
        mount
            .options
            .iter()
            .find_map(|option| option.strip_prefix("upperdir="))
    };
    dir.map(PathBuf::from)
        .with_context(|| format!("no writable directory in {mount:?}"))
}

async fn commit(
    client: &mut pb::snapshots_client::SnapshotsClient<tonic::transport::Channel>,
    name: &str,
    key: &str,
) -> anyhow::Result<()> {
    step("commit", name);
    let request = pb::CommitSnapshotRequest {
        snapshotter: SNAPSHOTTER.into(),
        name: name.into(),
        key: key.into(),
        labels: Default::default(),
    };
    client.commit(request).await?;
    done("commit", name);
    Ok(())
}

/// A few files, so that each commit has content to account for.
fn write_files(dir: &Path, tag: &str) -> anyhow::Result<()> {
    let sub = dir.join(tag);
    std::fs::create_dir_all(&sub).with_context(|| format!("mkdir {}", sub.display()))?;
    for i in 0..8 {
        let file = sub.join(format!("f{i}"));
        std::fs::write(&file, format!("{tag} {i}\n").repeat(512))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

fn step(op: &str, name: &str) {
    println!("begin {op} {name}");
}

fn done(op: &str, name: &str) {
    println!("ok {op} {name}");
}

//! containerd's snapshots gRPC service over a real unix socket: error codes as containerd's
//! errdefs expect them, and colliding concurrent clients (exactly one wins, the others get
//! AlreadyExists, never Unknown or Internal).

use std::sync::Arc;

use strata_snapshotter::Snapshotter;
use strata_snapshotter::grpc::proto::services::snapshots::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

type Client = pb::snapshots_client::SnapshotsClient<Channel>;

async fn start() -> (tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let sn = Arc::new(Snapshotter::open(dir.path().join("root")).unwrap());
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(strata_snapshotter::grpc::serve(
        sn,
        listener,
        std::future::pending(),
    ));
    let client = strata_snapshotter::grpc::connect(socket).await.unwrap();
    (dir, client)
}

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    r.map(drop).unwrap_err().code()
}

/// A request naming one snapshot by key; containerd's key-only requests share this shape.
macro_rules! by_key {
    ($($name:ident => $request:ident),* $(,)?) => {$(
        fn $name(key: &str) -> pb::$request {
            pb::$request { snapshotter: "strata".into(), key: key.into() }
        }
    )*};
}
by_key!(
    stat_of => StatSnapshotRequest,
    mounts_of => MountsRequest,
    remove_of => RemoveSnapshotRequest,
    usage_of => UsageRequest,
);

fn prepare(key: &str, parent: &str) -> pb::PrepareSnapshotRequest {
    pb::PrepareSnapshotRequest {
        snapshotter: "strata".into(),
        key: key.into(),
        parent: parent.into(),
        labels: [("l".to_owned(), "1".to_owned())].into(),
    }
}

fn commit(name: &str, key: &str) -> pb::CommitSnapshotRequest {
    pb::CommitSnapshotRequest {
        snapshotter: "strata".into(),
        name: name.into(),
        key: key.into(),
        labels: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_and_error_codes() {
    let (_dir, mut c) = start().await;
    let mounts = c
        .prepare(prepare("a", ""))
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(
        (mounts[0].r#type.as_str(), mounts[0].options.clone()),
        ("bind", vec!["rw".into(), "rbind".into()])
    );
    c.commit(commit("base", "a")).await.unwrap();
    let mounts = c
        .prepare(prepare("b", "base"))
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(mounts[0].r#type, "overlay");
    let view = c
        .view(pb::ViewSnapshotRequest {
            snapshotter: "strata".into(),
            key: "v".into(),
            parent: "base".into(),
            labels: Default::default(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert!(view[0].options.contains(&"ro".to_owned()));

    let info = c
        .stat(stat_of("b"))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(
        (info.name.as_str(), info.parent.as_str(), info.kind),
        ("b", "base", pb::Kind::Active as i32)
    );
    assert_eq!(info.labels.get("l").map(String::as_str), Some("1"));

    let updated = c
        .update(pb::UpdateSnapshotRequest {
            snapshotter: "strata".into(),
            info: Some(pb::Info {
                name: "b".into(),
                labels: [("m".to_owned(), "2".to_owned())].into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels.m".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(updated.labels.len(), 2);

    let listed: Vec<String> = {
        let mut stream = c
            .list(pb::ListSnapshotsRequest {
                snapshotter: "strata".into(),
                filters: vec!["kind==active".into(), "kind==view".into()],
            })
            .await
            .unwrap()
            .into_inner();
        let mut names = Vec::new();
        while let Some(batch) = stream.message().await.unwrap() {
            names.extend(batch.info.into_iter().map(|i| i.name));
        }
        names
    };
    assert_eq!(listed, ["b", "v"]);
    let usage = c.usage(usage_of("b")).await.unwrap().into_inner();
    assert_eq!(usage.inodes, 1);

    assert_eq!(code(c.stat(stat_of("ghost")).await), Code::NotFound);
    assert_eq!(
        code(c.prepare(prepare("b", "base")).await),
        Code::AlreadyExists
    );
    assert_eq!(
        code(c.prepare(prepare("x", "b")).await),
        Code::InvalidArgument
    );
    assert_eq!(code(c.prepare(prepare("x", "ghost")).await), Code::NotFound);
    assert_eq!(
        code(c.commit(commit("c", "v")).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(c.mounts(mounts_of("base")).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(c.remove(remove_of("base")).await),
        Code::FailedPrecondition
    );
    let bad_filter = c
        .list(pb::ListSnapshotsRequest {
            snapshotter: "strata".into(),
            filters: vec!["kind==".into()],
        })
        .await;
    assert_eq!(
        bad_filter.map(drop).unwrap_err().code(),
        Code::InvalidArgument
    );
    c.cleanup(pb::CleanupRequest {
        snapshotter: "strata".into(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn colliding_clients_have_one_winner() {
    let (_dir, mut c) = start().await;
    c.prepare(prepare("base-a", "")).await.unwrap();
    c.commit(commit("base", "base-a")).await.unwrap();
    for round in 0..10 {
        let key = format!("k{round}");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (mut c, key) = (c.clone(), key.clone());
                tokio::spawn(async move { c.prepare(prepare(&key, "base")).await.map(drop) })
            })
            .collect();
        assert_one_winner(tasks).await;

        for i in 0..8 {
            c.prepare(prepare(&format!("r{round}-{i}"), "base"))
                .await
                .unwrap();
        }
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let mut c = c.clone();
                tokio::spawn(async move {
                    c.commit(commit(&format!("r{round}-done"), &format!("r{round}-{i}")))
                        .await
                        .map(drop)
                })
            })
            .collect();
        assert_one_winner(tasks).await;
    }
}

/// Exactly one of the colliding requests succeeded; every other one got AlreadyExists.
async fn assert_one_winner(tasks: Vec<tokio::task::JoinHandle<Result<(), tonic::Status>>>) {
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => winners += 1,
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status}"),
        }
    }
    assert_eq!(winners, 1);
}

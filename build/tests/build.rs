//! Builds of a multi-stage Dockerfile on a busybox image made here, with real runc and overlay
//! mounts (root only): the result's files, config and history, the cache across rebuilds, a
//! changed source, `--no-cache`, cache expiry with GC, and a context symlink that points out.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use strata_build::{BuildOptions, BuildReport, Builder, Outcome, PruneOptions, Quiet};
use strata_layer_store::{Durability, GcOptions, ImportOptions, Store};
use strata_snapshotter::runc::Container;
use strata_snapshotter::{Labels, Snapshotter};

const DOCKERFILE: &str = r#"FROM busybox AS build
ENV GREETING=hello
WORKDIR /work
COPY app.txt ./
RUN echo "$GREETING from $(cat app.txt)" > out.txt

FROM busybox
COPY --from=build /work/out.txt /srv/out.txt
COPY links/ /srv/links/
RUN true
WORKDIR /srv
CMD ["cat", "/srv/out.txt"]
"#;

fn ready() -> bool {
    strata_testkit::can_mount()
        && strata_testkit::peer("runc", "runc")
        && strata_testkit::peer("busybox", "busybox-static")
}

/// A store with image `busybox`, and a build context.
fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = dir.join("store");
    let layout = dir.join("busybox");
    strata_testkit::busybox::busybox_layout(&layout);
    let store = Store::open(&root)
        .unwrap()
        .with_durability(Durability::None);
    let options = ImportOptions::default().with_name(Some("busybox".into()));
    store.import(&layout, &options).unwrap();
    let context = dir.join("context");
    fs::create_dir_all(context.join("links")).unwrap();
    fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(context.join("app.txt"), "world").unwrap();
    fs::write(dir.join("secret"), "outside the context").unwrap();
    // Both point out of the context: they must arrive as links, never as the secret.
    symlink(dir.join("secret"), context.join("links/absolute")).unwrap();
    symlink("../../secret", context.join("links/relative")).unwrap();
    fs::write(context.join(".dockerignore"), "links/ignored*\n").unwrap();
    fs::write(context.join("links/ignored.txt"), "left out").unwrap();
    (root, context)
}

fn build(root: &Path, context: &Path, no_cache: bool) -> BuildReport {
    let builder = Builder::open(root, Durability::None).unwrap();
    let mut options = BuildOptions::default();
    options.tags.push("app:1".into());
    options.no_cache = no_cache;
    builder.build(context, &options, &Quiet).unwrap()
}

fn outcomes(report: &BuildReport) -> Vec<Outcome> {
    report.steps.iter().map(|s| s.outcome).collect()
}

/// Mounts image `image` as a container rootfs and hands it to `check`.
fn with_rootfs(root: &Path, image: &str, check: impl FnOnce(&Path)) {
    let sn = Snapshotter::open(root).unwrap();
    sn.prepare_on_image("check", image, Labels::new()).unwrap();
    let target = tempfile::tempdir().unwrap();
    {
        let _mount = sn.mount("check", target.path()).unwrap();
        check(target.path());
    }
    sn.remove("check").unwrap();
}

fn config(root: &Path, image: &str) -> Value {
    let store = Store::open(root).unwrap();
    serde_json::from_slice(&store.image(image).unwrap().config).unwrap()
}

#[test]
fn a_multi_stage_build_runs_once_and_then_comes_from_the_cache() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, context) = setup(dir.path());
    use Outcome::{Cached, Ran};

    let first = build(&root, &context, false);
    assert_eq!(
        outcomes(&first),
        [Cached, Ran, Ran, Ran, Ran, Cached, Ran, Ran, Ran, Ran, Ran],
        "{:#?}",
        first.steps
    );
    assert_eq!(first.tags, ["docker.io/library/app:1"]);

    // The files: what RUN wrote, copied from the first stage; the links as links.
    with_rootfs(&root, "app:1", |rootfs| {
        assert_eq!(
            fs::read_to_string(rootfs.join("srv/out.txt")).unwrap(),
            "hello from world\n"
        );
        let links = rootfs.join("srv/links");
        assert_eq!(
            fs::read_link(links.join("absolute")).unwrap(),
            dir.path().join("secret")
        );
        assert_eq!(
            fs::read_link(links.join("relative")).unwrap(),
            Path::new("../../secret")
        );
        assert!(!links.join("ignored.txt").exists(), ".dockerignore");
        let meta = fs::symlink_metadata(links.join("relative")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "context files belong to root"
        );
        assert!(
            !rootfs.join("work").exists(),
            "the first stage is not in the image"
        );
        // The image's CMD, run by the runc launcher.
        let bundle = tempfile::tempdir().unwrap();
        let out = Container::new(rootfs, ["cat", "/srv/out.txt"])
            .output(bundle.path(), "strata-build-test")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from world\n");
    });

    // Config and history.
    let config = config(&root, "app:1");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "/srv/out.txt"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    let history: Vec<(String, bool)> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap_or("").to_owned(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let ours: Vec<(&str, bool)> = history[1..].iter().map(|(c, e)| (c.as_str(), *e)).collect();
    assert_eq!(
        ours,
        [
            (
                "COPY --from=build /work/out.txt /srv/out.txt # buildkit",
                false
            ),
            ("COPY links/ /srv/links/ # buildkit", false),
            ("RUN /bin/sh -c true # buildkit", true),
            ("WORKDIR /srv", true),
            (r#"CMD ["cat" "/srv/out.txt"]"#, true),
        ]
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        3,
        "busybox and two COPY layers; the empty RUN made none"
    );

    // Nothing changed: every step from the cache, and the very same image.
    let second = build(&root, &context, false);
    assert!(
        outcomes(&second).iter().all(|o| *o == Cached),
        "{:#?}",
        second.steps
    );
    assert_eq!(second.image, first.image);

    // One COPY source changed: that step and everything after it run again.
    fs::write(context.join("app.txt"), "strata").unwrap();
    let third = build(&root, &context, false);
    assert_eq!(
        outcomes(&third),
        [
            Cached, Cached, Cached, Ran, Ran, Cached, Ran, Ran, Ran, Ran, Ran
        ],
        "{:#?}",
        third.steps
    );
    with_rootfs(&root, "app:1", |rootfs| {
        assert_eq!(
            fs::read_to_string(rootfs.join("srv/out.txt")).unwrap(),
            "hello from strata\n"
        );
    });

    // --no-cache runs everything.
    let fourth = build(&root, &context, true);
    assert!(
        outcomes(&fourth)
            .iter()
            .zip(&fourth.steps)
            .all(|(o, s)| *o == Ran || s.instruction.starts_with("FROM")),
        "{:#?}",
        fourth.steps
    );
}

/// Layers of the store that no image names.
fn cache_only_layers(store: &Store) -> HashSet<String> {
    let in_images: HashSet<String> = store
        .images()
        .unwrap()
        .iter()
        .flat_map(|i| i.layers.iter().map(|d| d.hex()))
        .collect();
    store
        .layers()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !in_images.contains(id))
        .collect()
}

#[test]
fn gc_keeps_recent_cache_and_collects_expired() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, context) = setup(dir.path());
    build(&root, &context, false);

    // The first stage's layers are held by the cache alone (the empty layer `RUN true` made
    // is held by nothing: the first GC takes it).
    let store = Store::open(&root).unwrap();
    store.gc(GcOptions::default()).unwrap();
    let held = cache_only_layers(&store);
    assert_eq!(held.len(), 2, "COPY app.txt and the RUN of the first stage");
    let kept =
        strata_build::prune_cache(&store, PruneOptions::keep(Duration::from_secs(3600))).unwrap();
    assert_eq!(kept.removed, 0);
    store.gc(GcOptions::default()).unwrap();
    assert_eq!(cache_only_layers(&store), held, "recent cache survives gc");

    // While a build holds the store, nothing expires.
    let hold = store.hold().unwrap();
    let busy = strata_build::prune_cache(&store, PruneOptions::keep(Duration::ZERO)).unwrap();
    assert!(busy.busy && busy.removed == 0, "{busy:?}");
    drop(hold);

    // Expire every entry (last used long ago), then collect.
    let entries = root.join("build-cache/v1");
    for entry in fs::read_dir(&entries).unwrap() {
        let path = entry.unwrap().path();
        let mut json: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        json["last_used"] = 1.into();
        fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    }
    let pruned =
        strata_build::prune_cache(&store, PruneOptions::keep(Duration::from_secs(3600))).unwrap();
    assert_eq!((pruned.removed, pruned.kept), (kept.kept, 0));
    let report = store.gc(GcOptions::default()).unwrap();
    let removed: HashSet<String> = report.layers.into_iter().collect();
    assert_eq!(removed, held);
    assert!(cache_only_layers(&store).is_empty());
    assert!(store.image("app:1").is_ok(), "the image keeps its layers");
    drop(store);

    // With the cache gone, a rebuild runs the steps again.
    let again = build(&root, &context, false);
    assert!(again.steps.iter().any(|s| s.outcome == Outcome::Ran));
}

/// A RUN step that installs files another image already stores (as `apt install` of a package
/// some image holds) stores none of their contents again: `du` before and after.
#[test]
fn a_run_layer_stores_no_content_twice() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = setup(dir.path());
    let context = dir.path().join("install");
    fs::create_dir(&context).unwrap();
    fs::write(
        context.join("Dockerfile"),
        "FROM busybox\nRUN mkdir -p /usr/local/bin && cp /bin/busybox /usr/local/bin/tool\n",
    )
    .unwrap();
    let before = Store::open(&root).unwrap().du().unwrap();
    let builder = Builder::open(&root, Durability::None).unwrap();
    let mut options = BuildOptions::default();
    options.tags.push("tools:1".into());
    let report = builder.build(&context, &options, &Quiet).unwrap();
    drop(builder);
    assert!(report.steps[1].layer.is_some(), "{:#?}", report.steps);
    let after = Store::open(&root).unwrap().du().unwrap();
    let busybox = fs::metadata("/bin/busybox").unwrap().len();
    assert!(
        after.logical_bytes >= before.logical_bytes + 2 * busybox,
        "the new image holds busybox twice: {before:?} → {after:?}"
    );
    assert!(
        after.object_bytes - before.object_bytes < busybox / 10,
        "no content stored again: {before:?} → {after:?}"
    );
}

/// A tar of `(path, data)` files owned by 1000:1000, mode 0640; paths written raw, so that
/// one may climb out with `..` as a hostile archive's do.
fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o640);
        header.set_uid(1000);
        header.set_gid(1000);
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap()
}

/// `ADD` unpacks a local tar archive into the destination (entries keep the archive's owners)
/// and copies any other file; an archive with an entry climbing out fails the step, naming it,
/// and writes nothing outside.
#[test]
fn add_unpacks_a_local_tar_and_copies_other_files() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = setup(dir.path());
    let context = dir.path().join("add");
    fs::create_dir(&context).unwrap();
    fs::write(
        context.join("bundle.tar"),
        archive(&[("a/b.txt", b"in the archive")]),
    )
    .unwrap();
    fs::write(
        context.join("hostile.tar"),
        archive(&[("../../escape", b"no")]),
    )
    .unwrap();
    fs::write(context.join("notes.txt"), "plain").unwrap();
    fs::write(
        context.join("Dockerfile"),
        "FROM busybox\nADD bundle.tar /opt/\nADD notes.txt /opt/notes.txt\n",
    )
    .unwrap();
    fs::write(
        context.join("Hostile"),
        "FROM busybox\nADD hostile.tar /opt/\n",
    )
    .unwrap();
    let builder = Builder::open(&root, Durability::None).unwrap();
    let mut options = BuildOptions::default();
    options.tags.push("added:1".into());
    builder.build(&context, &options, &Quiet).unwrap();
    options.dockerfile = Some(context.join("Hostile"));
    let err = builder.build(&context, &options, &Quiet).unwrap_err();
    assert!(err.to_string().contains("../../escape"), "{err}");
    drop(builder);
    assert!(!dir.path().join("escape").exists());
    // The failed step left no transient image, snapshot or scratch dir behind.
    let store = Store::open(&root).unwrap();
    let tags: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .flat_map(|i| i.tags)
        .collect();
    assert!(tags.iter().all(|t| !t.contains("strata-build")), "{tags:?}");
    drop(store);
    let sn = Snapshotter::open_in(&root, strata_build::NAMESPACE).unwrap();
    assert_eq!(sn.list::<&str>(&[]).unwrap().len(), 0);
    drop(sn);
    let scratch: Vec<_> = fs::read_dir(root.join("tmp")).unwrap().collect();
    assert!(scratch.is_empty(), "{scratch:?}");
    with_rootfs(&root, "added:1", |rootfs| {
        let unpacked = rootfs.join("opt/a/b.txt");
        assert_eq!(fs::read_to_string(&unpacked).unwrap(), "in the archive");
        let meta = fs::metadata(&unpacked).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (1000, 0o640));
        assert_eq!(
            fs::read_to_string(rootfs.join("opt/notes.txt")).unwrap(),
            "plain"
        );
        assert!(!rootfs.join("opt/bundle.tar").exists());
    });
}

/// Metadata instructions change the config only; `ARG` takes `--build-arg`, reaches `RUN`'s
/// environment and its history line; `USER` runs the command as that user; `--target` stops
/// at its stage; a failing `RUN` fails the build, naming the step.
#[test]
fn metadata_args_user_target_and_a_failing_run() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = setup(dir.path());
    let context = dir.path().join("meta");
    fs::create_dir(&context).unwrap();
    fs::write(
        context.join("Dockerfile"),
        r#"ARG BASE=busybox
FROM ${BASE} AS base
ARG WHO=nobody
LABEL org.example.who=$WHO
EXPOSE 8080 53/udp
VOLUME /data
USER 1000:1000
RUN busybox id -u > /tmp/uid
ENTRYPOINT ["/bin/sh", "-c"]

FROM base AS broken
RUN false
"#,
    )
    .unwrap();
    let builder = Builder::open(&root, Durability::None).unwrap();
    let mut options = BuildOptions::default();
    options.tags.push("meta:1".into());
    options.target = Some("base".into());
    options.build_args.insert("WHO".into(), "me".into());
    let report = builder.build(&context, &options, &Quiet).unwrap();
    assert_eq!(report.steps.len(), 8, "the broken stage is not built");
    let layers: Vec<bool> = report.steps.iter().map(|s| s.layer.is_some()).collect();
    assert_eq!(
        layers,
        [false, false, false, false, false, false, true, false]
    );

    // Another build arg: the steps that see it run again.
    options.build_args.insert("WHO".into(), "you".into());
    options.tags = vec!["meta:2".into()];
    let again = builder.build(&context, &options, &Quiet).unwrap();
    let ran: Vec<&str> = again
        .steps
        .iter()
        .filter(|s| s.outcome == Outcome::Ran)
        .map(|s| s.instruction.as_str())
        .collect();
    assert_eq!(ran[0], "LABEL org.example.who=$WHO", "{ran:?}");

    options.target = None;
    let err = builder.build(&context, &options, &Quiet).unwrap_err();
    assert!(
        err.to_string().contains("RUN /bin/sh -c false") && err.to_string().contains("exit"),
        "{err}"
    );
    drop(builder);

    let config = config(&root, "meta:1");
    let c = &config["config"];
    assert_eq!(c["Labels"], serde_json::json!({"org.example.who": "me"}));
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(
        c["Cmd"],
        Value::Null,
        "a new ENTRYPOINT drops the inherited CMD"
    );
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert!(
        history.contains(&"RUN |1 WHO=me /bin/sh -c busybox id -u > /tmp/uid # buildkit"),
        "{history:?}"
    );
    assert!(history.contains(&"ARG WHO=nobody"), "{history:?}");
    with_rootfs(&root, "meta:1", |rootfs| {
        let uid = rootfs.join("tmp/uid");
        assert_eq!(fs::read_to_string(&uid).unwrap(), "1000\n");
        assert_eq!(fs::metadata(&uid).unwrap().uid(), 1000);
    });
}

/// Unmounts everything under a dir when dropped, also while a failed test unwinds.
struct UnmountAll(std::path::PathBuf);

impl Drop for UnmountAll {
    fn drop(&mut self) {
        let _ = strata_cow::unmount(&self.0);
    }
}

/// Opening a builder removes what a build killed mid-step left: its mount, its transient
/// snapshot and image, its scratch dir (named after a pid that no longer runs).
#[test]
fn opening_removes_what_a_killed_build_left() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = setup(dir.path());
    // Above any pid_max: no process has it.
    let token = "999999999-2";
    let rootfs = root.join(format!("tmp/build-{token}/0/rootfs"));
    let key = format!("strata-build-{token}-0");
    let _cleanup = UnmountAll(rootfs.clone());
    {
        let sn = Snapshotter::open_in(&root, strata_build::NAMESPACE).unwrap();
        let tag = format!("localhost/strata-build:{token}-0");
        sn.store().tag("busybox", &tag).unwrap();
        sn.prepare_on_image(&key, &tag, Labels::new()).unwrap();
        fs::create_dir_all(&rootfs).unwrap();
        // Left mounted, as by a process killed mid-step.
        std::mem::forget(sn.mount(&key, &rootfs).unwrap());
    }
    drop(Builder::open(&root, Durability::None).unwrap());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(rootfs.to_str().unwrap()), "unmounted");
    assert!(!root.join(format!("tmp/build-{token}")).exists());
    let sn = Snapshotter::open_in(&root, strata_build::NAMESPACE).unwrap();
    assert_eq!(sn.list::<&str>(&[]).unwrap().len(), 0);
    let tags: Vec<String> = sn
        .store()
        .images()
        .unwrap()
        .into_iter()
        .flat_map(|i| i.tags)
        .collect();
    assert_eq!(tags, ["docker.io/library/busybox:latest"]);
}

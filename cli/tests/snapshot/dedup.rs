//! containerd's unpacks deduplicated: two images with no common layer but mostly common files,
//! imported with `ctr images import` onto `strata serve`, take little more disk than the larger
//! one alone; containers on them read and write as on containerd's own overlayfs snapshotter;
//! and a SIGKILL of `strata serve` in the middle of a deduplicating commit leaves a store that
//! passes fsck and lets containerd unpack the layer again.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_benches::{Edits, Profile, Shape, generate, mutate};

use crate::common::run_ok;
use crate::containerd::{Env, archive_layout, containerd_env};
use strata_testkit::containerd::Containerd;
use strata_testkit::tree;

/// Where the test images are named.
const IMAGES: &str = "strata.test/dedup";

/// Fraction of a Debian minbase's entries the generated base has (about 1,300 files, 50 MB).
const SCALE: f64 = 0.25;

/// The base tree and the same after a build step (a few packages installed), each as a
/// one-layer busybox image archive: no common layer, most files common.
fn images(dir: &Path) -> (PathBuf, PathBuf, Vec<String>) {
    let (base, app) = (dir.join("tree-base"), dir.join("tree-app"));
    std::fs::create_dir(&base).unwrap();
    let profile = Profile::debian_minbase();
    generate(
        &base,
        &profile,
        &Shape {
            seed: 7,
            scale: SCALE,
        },
    )
    .unwrap();
    drop_special_files(&base);
    run_ok(Command::new("cp").arg("-a").arg(&base).arg(&app));
    mutate(&app, &profile, &Edits::build_step(8, SCALE)).unwrap();
    drop_special_files(&app);
    let archive = |tree: &Path, name: &str| {
        let layout = dir.join(format!("layout-{name}"));
        let reference = format!("{IMAGES}/{name}:1");
        strata_testkit::busybox::busybox_layout_with_data(&layout, tree, &reference);
        archive_layout(&layout, &dir.join(format!("{name}.tar")))
    };
    let files = regular_files(&base);
    (archive(&base, "base"), archive(&app, "app"), files)
}

/// Removes what a layer tar need not carry here (fifos).
fn drop_special_files(dir: &Path) {
    for (path, node) in tree::snapshot(dir, &tree::Options::default()) {
        if !matches!(
            node.kind,
            tree::Kind::Dir | tree::Kind::File(_) | tree::Kind::Symlink(_)
        ) {
            std::fs::remove_file(dir.join(path)).unwrap();
        }
    }
}

/// The non-empty regular files under `dir`, relative, sorted.
fn regular_files(dir: &Path) -> Vec<String> {
    tree::snapshot(dir, &tree::Options::default())
        .into_iter()
        .filter(|(_, node)| matches!(&node.kind, tree::Kind::File(bytes) if !bytes.is_empty()))
        .map(|(path, _)| path.display().to_string())
        .collect()
}

/// The physical bytes under `dir` (GNU du, each inode once).
fn du(dir: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `ctr images import` of `archive` onto `snapshotter`.
fn import(containerd: &Containerd, archive: &Path, snapshotter: &str) -> Result<String, String> {
    containerd.ctr(&[
        "images",
        "import",
        "--snapshotter",
        snapshotter,
        archive.to_str().unwrap(),
    ])
}

/// The image name of archive `name` (`base` or `app`).
fn image(name: &str) -> String {
    format!("{IMAGES}/{name}:1")
}

/// Whether the machine makes stubs, without which commits do not deduplicate (says so).
fn stubs() -> bool {
    let stubs = strata_layer_store::probe_strategy() == strata_layer_store::Strategy::Stub;
    if !stubs {
        eprintln!("skipped: this kernel's overlay takes no data-only lowers, so no stubs");
    }
    stubs
}

/// Reads and writes in a container of `image` on `snapshotter`: what they print.
fn reads_and_writes(
    containerd: &Containerd,
    image: &str,
    snapshotter: &str,
    files: &[String],
) -> String {
    let (a, b, c) = (&files[0], &files[files.len() / 2], &files[files.len() - 1]);
    let script = format!(
        "cd /data; B=/bin/busybox; \
         $B md5sum '{a}' '{b}'; $B stat -c '%a %u %s %Y' '{a}' '{b}'; \
         echo appended >> '{a}'; $B md5sum '{a}'; \
         chmod 600 '{b}'; $B stat -c '%a %s' '{b}'; $B md5sum '{b}'; \
         rm '{c}'; ls '{c}' 2>&1; \
         mkdir -p new/dir; echo fresh > new/dir/f; cat new/dir/f; \
         $B find . | $B sort | $B md5sum"
    );
    let name: String = format!("rw-{snapshotter}-{image}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    containerd
        .ctr(&[
            "run",
            "--rm",
            "--snapshotter",
            snapshotter,
            image,
            &name,
            "/bin/sh",
            "-c",
            &script,
        ])
        .unwrap_or_else(|e| panic!("container of {image} on {snapshotter}: {e}"))
}

/// What both tests need: the peers, stubs, and the two images.
struct Setup {
    _tmp: tempfile::TempDir,
    env: Env,
    base: PathBuf,
    app: PathBuf,
    /// Regular files of the base image, under `/data`.
    files: Vec<String>,
}

/// The [`Setup`], or `None` (the test skips, saying why).
fn setup() -> Option<Setup> {
    let (tmp, env) = containerd_env()?;
    if !stubs() {
        return None;
    }
    let (base, app, files) = images(&env.dir);
    Some(Setup {
        _tmp: tmp,
        env,
        base,
        app,
        files,
    })
}

#[test]
fn two_images_with_common_files_share_their_bytes_and_run_as_on_overlayfs() {
    // `_tmp` bound, not `..`: the temp dir lives as long as the test.
    let Some(Setup {
        _tmp,
        env,
        base,
        app,
        files,
    }) = setup()
    else {
        return;
    };
    let _serve = env.serve();
    let containerd = Containerd::start(&env.dir, &env.strata_sock);

    import(&containerd, &app, "strata").unwrap();
    let alone = du(&env.store);
    import(&containerd, &base, "strata").unwrap();
    let both = du(&env.store);
    eprintln!("strata root: {alone} bytes with the larger image, {both} with both");
    assert!(
        both as f64 <= alone as f64 * 1.10,
        "{both} bytes for both images, {alone} for the larger alone"
    );

    for (name, archive) in [("app", &app), ("base", &base)] {
        import(&containerd, archive, "overlayfs").unwrap();
        let on_overlayfs = reads_and_writes(&containerd, &image(name), "overlayfs", &files);
        let on_strata = reads_and_writes(&containerd, &image(name), "strata", &files);
        assert_eq!(on_strata, on_overlayfs, "{name}");
        assert!(on_strata.contains("fresh"), "{on_strata}");
    }
}

#[test]
fn a_sigkill_in_the_middle_of_a_deduplicating_commit_leaves_a_store_that_unpacks_again() {
    let Some(Setup {
        _tmp,
        env,
        base,
        files,
        ..
    }) = setup()
    else {
        return;
    };
    let containerd = Containerd::start(&env.dir, &env.strata_sock);
    let mut paused = env.serve_env(&[("STRATA_TEST_PAUSE", "dedup")]);
    let importing = std::thread::scope(|s| {
        let import = s.spawn(|| import(&containerd, &base, "strata"));
        paused.wait_for_line("paused in the middle of a dedup");
        paused.kill(rustix::process::Signal::KILL);
        import.join().unwrap()
    });
    assert!(importing.is_err(), "the import went through: {importing:?}");

    let _serve = env.serve();
    let fsck = env.strata_json(&["fsck"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
    // containerd redials the restarted proxy with backoff: the first tries may find it down.
    let imported = (0..50).find_map(|_| import(&containerd, &base, "strata").ok());
    assert!(
        imported.is_some(),
        "containerd could not unpack the image again"
    );
    let out = reads_and_writes(&containerd, &image("base"), "strata", &files);
    assert!(out.contains("fresh"), "{out}");
    let fsck = env.strata_json(&["fsck"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
}

//! `strata pull|push|history` through the built binary, against a real registry.

#[path = "../../registry/tests/registry/index.rs"]
mod index;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{ok_json, strata};
use strata_layer_store::digest::Sha256;
use strata_registry::Platform;
use strata_testkit::registry::{self as server, Registry, token};

/// `strata --root ROOT`, ready for arguments.
fn strata_cmd(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--root").arg(root);
    cmd
}

/// Runs `cmd`, failing with its stderr unless it succeeds.
fn succeed(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// A store at `TMP/a` holding the image of [`write_layout`] as `app`.
fn source_store(tmp: &Path) -> anyhow::Result<std::path::PathBuf> {
    let layout = tmp.join("layout");
    write_layout(&layout);
    let a = tmp.join("a");
    ok_json(&a, &["import", layout.to_str().unwrap(), "--name", "app"])?;
    Ok(a)
}

/// A registry open to `access`, and a temp dir holding the store of [`source_store`]; `None`
/// (the test skips, saying why) when a tool the registry needs is missing.
fn registry_with_source(
    access: server::Access<'_>,
) -> anyhow::Result<Option<(Registry, tempfile::TempDir, std::path::PathBuf)>> {
    let Some(registry) = Registry::start_if_installed(access) else {
        return Ok(None);
    };
    let tmp = tempfile::tempdir()?;
    let a = source_store(tmp.path())?;
    Ok(Some((registry, tmp, a)))
}

/// A gzip layer blob holding `name` with `len` bytes, and its diff_id.
fn layer(name: &str, len: usize) -> (Vec<u8>, String) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let tar = strata_testkit::layer::files_tar(&[(name, &data)]);
    (
        strata_testkit::hostile::gzip(&tar),
        Sha256::of(&tar).to_string(),
    )
}

/// Writes the blobs of an image of two layers (files `base{variant}.txt`, `app{variant}.txt`)
/// whose config history has an empty-layer step between them into the OCI layout at `dir`;
/// returns its manifest and the layer blob digests.
fn write_image(dir: &Path, variant: &str) -> (Vec<u8>, Vec<String>) {
    let (a, a_diff) = layer(&format!("base{variant}.txt"), 100_000);
    let (b, b_diff) = layer(&format!("app{variant}.txt"), 50_000);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [a_diff, b_diff]},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "ADD base.txt /"},
            {"created": "2024-01-02T00:00:00Z", "created_by": "ENV MODE=app", "empty_layer": true},
            {"created": "2024-01-03T00:00:00Z", "created_by": "RUN make app"},
        ],
    }))
    .unwrap();
    let desc = |media: &str, bytes: &[u8]| serde_json::json!({"mediaType": media, "digest": Sha256::of(bytes).to_string(), "size": bytes.len()});
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [desc(gz, &a), desc(gz, &b)],
    }))
    .unwrap();
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    for bytes in [&a, &b, &config, &manifest] {
        fs::write(blobs.join(Sha256::of(bytes).hex()), bytes).unwrap();
    }
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let digests = vec![Sha256::of(&a).to_string(), Sha256::of(&b).to_string()];
    (manifest, digests)
}

/// Writes an OCI layout holding the image of [`write_image`]; returns its layer blob digests.
fn write_layout(dir: &Path) -> Vec<String> {
    let (manifest, digests) = write_image(dir, "");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": Sha256::of(&manifest).to_string(),
        "size": manifest.len(),
    }]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    digests
}

#[test]
fn push_pull_history_through_the_cli() -> anyhow::Result<()> {
    let Some(registry) = Registry::start_if_installed(server::Access::Open) else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let layout = tmp.path().join("layout");
    let digests = write_layout(&layout);
    ok_json(&a, &["import", layout.to_str().unwrap(), "--name", "app"])?;
    let reference = registry.reference("cli/app:1");

    let pushed = ok_json(&a, &["push", "app", &reference, "--insecure"])?;
    assert_eq!(pushed["blobs"].as_array().unwrap().len(), 3);
    let pulled = ok_json(&b, &["pull", &reference, "--insecure", "--jobs", "2"])?;
    let sizes: u64 = digests
        .iter()
        .map(|d| {
            fs::metadata(layout.join("blobs/sha256").join(&d[7..]))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(pulled["bytes_fetched"], sizes);
    // Pulling again moves nothing. A registry on 127.0.0.1 speaks plain HTTP without
    // `--insecure`.
    let again = ok_json(&b, &["pull", &reference])?;
    assert_eq!(again["bytes_fetched"], 0);
    assert_eq!(again["bytes_present"], sizes);

    // Both stores export the same layout bytes.
    let (ea, eb) = (tmp.path().join("ea"), tmp.path().join("eb"));
    ok_json(&a, &["export", "app", "-o", ea.to_str().unwrap()])?;
    ok_json(&b, &["export", &reference, "-o", eb.to_str().unwrap()])?;
    for d in &digests {
        assert_eq!(
            fs::read(ea.join("blobs/sha256").join(&d[7..]))?,
            fs::read(eb.join("blobs/sha256").join(&d[7..]))?
        );
    }

    let history = ok_json(&b, &["history", &reference])?;
    let steps = history.as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["layer"]["digest"], digests[0].as_str());
    assert!(steps[1]["layer"].is_null(), "the ENV step owns no layer");
    assert_eq!(steps[2]["layer"]["digest"], digests[1].as_str());
    assert_eq!(steps[2]["created_by"], "RUN make app");
    let text = strata(&b, &["history", &reference]);
    let text = String::from_utf8(text.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    // Newest first, as docker history prints.
    assert!(lines[1].contains("RUN make app") && lines[1].contains(&digests[1][7..19]));
    assert!(lines[2].contains("<missing>") && lines[2].contains("ENV MODE=app"));
    Ok(())
}

#[test]
fn pull_errors_name_the_reference() {
    let Some(registry) = Registry::start_if_installed(server::Access::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let reference = registry.reference("absent:1");
    let out = strata(tmp.path(), &["pull", &reference]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&reference), "{stderr}");
    let missing = format!("no tag 1 in {}", registry.reference("absent"));
    assert!(stderr.contains(&missing), "{stderr}");
    let out = strata(tmp.path(), &["pull", "x", "--platform", "linux"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("linux"));

    // A port nothing listens on: a connection failure, not an authentication one.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let nowhere = format!("{closed}/x:1");
    let out = strata(tmp.path(), &["pull", &nowhere, "--insecure"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{nowhere}: cannot connect to the registry")),
        "{stderr}"
    );
}

#[test]
fn a_plain_http_registry_by_name_needs_insecure_and_says_so() {
    if !strata_testkit::peer("docker-registry", "docker-registry") {
        return;
    }
    // Named by host name rather than a loopback address, the registry gets HTTPS.
    let (name, ip) = server::host_name();
    let registry = Registry::start_on(ip, server::Access::Open);
    let tmp = tempfile::tempdir().unwrap();
    let reference = format!("{name}:{}/x:1", registry.port);
    let out = strata(tmp.path(), &["pull", &reference]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS handshake") && stderr.contains("use --insecure"),
        "{stderr}"
    );
    let out = strata(tmp.path(), &["pull", &reference, "--insecure"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("no tag 1 in {name}:{}/x", registry.port)),
        "{stderr}"
    );
}

#[test]
fn platform_chooses_from_an_index() -> anyhow::Result<()> {
    if !strata_testkit::peer("skopeo", "skopeo") {
        return Ok(());
    }
    let Some(registry) = Registry::start_if_installed(server::Access::Open) else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let layout = tmp.path().join("layout");
    let (native, _) = write_image(&layout, "-native");
    let (foreign, _) = write_image(&layout, "-foreign");
    let host = Platform::host().to_string();
    let other = if host == "linux/arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    index::write_index(&layout, "multi", &[(&native, &host), (&foreign, other)]);
    let reference = registry.reference("multi:1");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{reference}"))
        .status()?;
    anyhow::ensure!(status.success(), "skopeo copy --all failed");

    let root = tmp.path().join("store");
    let pull = ["pull", reference.as_str(), "--insecure"];
    let pulled = ok_json(&root, &pull)?;
    assert_eq!(pulled["image"], Sha256::of(&native).to_string());
    let chosen = [&pull[..], &["--platform", other, "--name", "other"]].concat();
    let pulled = ok_json(&root, &chosen)?;
    assert_eq!(pulled["image"], Sha256::of(&foreign).to_string());
    let missing = strata(&root, &[&pull[..], &["--platform", "linux/s390x"]].concat());
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no image for platform linux/s390x") && stderr.contains(&reference),
        "{stderr}"
    );
    Ok(())
}

/// Runs `cmd` with `line` on its standard input; its output.
fn with_stdin(cmd: &mut Command, line: &str) -> Output {
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn basic_auth_password_from_stdin() -> anyhow::Result<()> {
    let Some((registry, tmp, a)) = registry_with_source(server::Access::Basic)? else {
        return Ok(());
    };
    let reference = registry.reference("private/app:1");
    let denied = strata(&a, &["push", "app", &reference, "--insecure"]);
    assert!(!denied.status.success());
    let out = with_stdin(
        strata_cmd(&a)
            .args(["push", "app", &reference, "--insecure"])
            .args(["--username", server::USER, "--password-stdin"]),
        server::PASSWORD,
    );
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = tmp.path().join("b");
    succeed(
        strata_cmd(&b)
            .args(["pull", &reference, "--insecure", "--username", server::USER])
            .env("STRATA_REGISTRY_PASSWORD", server::PASSWORD),
    )?;
    Ok(())
}

#[test]
fn bearer_token_from_credentials_or_the_environment() -> anyhow::Result<()> {
    let Some(tokens) = token::TokenServer::start_if_installed() else {
        return Ok(());
    };
    let (realm, cert) = (tokens.realm(), tokens.cert());
    let access = server::Access::Token {
        realm: &realm,
        cert: &cert,
    };
    let Some((registry, tmp, a)) = registry_with_source(access)? else {
        return Ok(());
    };
    let reference = registry.reference("private/app:1");
    // User and password are traded for a token at the registry's token server.
    succeed(
        strata_cmd(&a)
            .args(["push", "app", &reference, "--insecure"])
            .env("STRATA_REGISTRY_USER", server::USER)
            .env("STRATA_REGISTRY_PASSWORD", server::PASSWORD),
    )?;
    anyhow::ensure!(tokens.issued() > 0, "no token was asked for");

    let b = tmp.path().join("b");
    let denied = strata(&b, &["pull", &reference, "--insecure"]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains(&reference));
    let out = succeed(
        strata_cmd(&b)
            .args(["--json", "pull", &reference, "--insecure"])
            .env(
                "STRATA_REGISTRY_TOKEN",
                tokens.token("repository:private/app:pull"),
            ),
    )?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["layers"].as_array().map(Vec::len), Some(2));
    Ok(())
}

/// A TCP proxy to the registry that stops forwarding a response once `limit` bytes of it went
/// through, until dropped: a pull through it stalls mid-blob, deterministically.
struct StallingProxy {
    port: u16,
    _release: std::sync::mpsc::Sender<()>,
}

impl StallingProxy {
    fn start(upstream: u16, limit: usize) -> StallingProxy {
        use std::io::Read;
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = std::sync::Arc::new(std::sync::Mutex::new(released));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut client_r, mut server_w) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut client_r, &mut server_w));
                let released = released.clone();
                std::thread::spawn(move || {
                    let mut sent = 0;
                    let mut buf = [0u8; 16 << 10];
                    loop {
                        let Ok(n) = server.read(&mut buf) else { return };
                        if n == 0 || client.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        sent += n;
                        if sent > limit {
                            // Stall until the proxy is dropped.
                            let _ = released.lock().map(|r| r.recv());
                            return;
                        }
                    }
                });
            }
        });
        StallingProxy {
            port,
            _release: release,
        }
    }
}

#[test]
fn a_pull_killed_mid_blob_resumes_where_it_stopped() -> anyhow::Result<()> {
    let Some(registry) = Registry::start_if_installed(server::Access::Open) else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let a = tmp.path().join("a");
    let big = tmp.path().join("big.tar.gz");
    // Incompressible, so the blob is about as large as the file.
    let mut x: u32 = 12345;
    let data: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let tar = strata_testkit::layer::files_tar(&[("noise.bin", &data)]);
    fs::write(&big, strata_testkit::hostile::gzip(&tar))?;
    ok_json(&a, &["import", big.to_str().unwrap(), "--name", "big"])?;
    ok_json(
        &a,
        &["push", "big", &registry.reference("big:1"), "--insecure"],
    )?;

    let proxy = StallingProxy::start(registry.port, 512 << 10);
    let target = tmp.path().join("b");
    let mut child = strata_cmd(&target)
        .args([
            "pull",
            &format!("127.0.0.1:{}/big:1", proxy.port),
            "--insecure",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Poll (bounded) until the stalled download has left bytes on disk, then kill.
    let pull_dir = target.join("tmp/pull");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let partial = loop {
        let found = fs::read_dir(&pull_dir)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.metadata().is_ok_and(|m| m.len() > 0));
        if let Some(entry) = found {
            break entry.path();
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no partial download appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    child.kill()?;
    child.wait()?;
    drop(proxy);
    let kept = fs::metadata(&partial)?.len();
    let images = ok_json(&target, &["images"])?;
    assert_eq!(
        images.as_array().map(Vec::len),
        Some(0),
        "a killed pull left an image"
    );

    let report = ok_json(
        &target,
        &["pull", &registry.reference("big:1"), "--insecure"],
    )?;
    assert_eq!(report["bytes_resumed"], kept);
    let size = fs::metadata(&big)?.len();
    assert_eq!(report["bytes_fetched"].as_u64(), Some(size - kept));
    Ok(())
}

/// The digests of every blob of the manifest `manifest` (config, then layers), and the
/// manifest's own.
fn blob_digests(manifest: &[u8]) -> Vec<String> {
    let parsed: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let layers = parsed["layers"].as_array().unwrap().iter();
    std::iter::once(&parsed["config"])
        .chain(layers)
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .chain([Sha256::of(manifest).to_string()])
        .collect()
}

/// Upload requests (not mounts) the registry saw for repository `repo`.
fn uploads(registry: &Registry, repo: &str) -> Vec<String> {
    let path = format!("/v2/{repo}/blobs/uploads/");
    let log = registry.log();
    log.lines()
        .filter(|l| l.contains(&path) && !l.contains("mount="))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_go_compressed_image_keeps_every_digest_through_pull_export_push_and_commit()
-> anyhow::Result<()> {
    if !(strata_testkit::peer("skopeo", "skopeo")
        && strata_testkit::peer("busybox", "busybox-static")
        && strata_testkit::can_mount())
    {
        return Ok(());
    }
    let Some(registry) = Registry::start_if_installed(server::Access::Open) else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let layout = tmp.path().join("layout");
    strata_testkit::busybox::busybox_layout_uncompressed(&layout);
    // skopeo gzips the plain layer as it pushes: Go's compressor, which Strata cannot redo.
    let go = registry.reference("go/busybox:1");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:busybox", layout.display()))
        .arg(format!("docker://{go}"))
        .status()?;
    anyhow::ensure!(status.success(), "skopeo copy failed");
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{go}"))
        .output()?;
    anyhow::ensure!(raw.status.success(), "skopeo inspect failed");
    let manifest = raw.stdout;
    let manifest_digest = Sha256::of(&manifest).to_string();
    assert!(
        String::from_utf8_lossy(&manifest).contains("tar+gzip"),
        "skopeo did not compress"
    );

    // Pull, then export: exactly the registry's manifest, config and layer blobs.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let pulled = ok_json(&a, &["pull", &go])?;
    assert_eq!(pulled["image"], manifest_digest.as_str());
    let exported = tmp.path().join("exported");
    ok_json(&a, &["export", &go, "-o", exported.to_str().unwrap()])?;
    for digest in blob_digests(&manifest) {
        let ours = fs::read(exported.join("blobs/sha256").join(&digest[7..]))?;
        assert!(
            ours == fs::read(registry.blob_path(&digest))?,
            "export changed {digest}"
        );
    }
    let images = String::from_utf8(strata(&a, &["images", "--digests"]).stdout)?;
    assert!(images.contains(&manifest_digest), "{images}");

    // Push to another repository: every blob mounted, none uploaded; then again: nothing.
    let mirror = registry.reference("mirror/busybox:1");
    let pushed = ok_json(&a, &["push", &go, &mirror])?;
    assert_eq!(pushed["manifest"], manifest_digest.as_str());
    let outcomes: Vec<&str> = pushed["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["mounted", "mounted"], "{pushed}");
    assert_eq!(uploads(&registry, "mirror/busybox"), Vec::<String>::new());
    let again = ok_json(&a, &["push", &go, &mirror])?;
    assert_eq!(again["bytes_uploaded"], 0, "{again}");
    assert_eq!(again["manifest_uploaded"], false, "{again}");

    // A container's changes as an image: pushed, pulled into a second store, the same id.
    ok_json(&a, &["rootfs", &go, "c1"])?;
    let target = tmp.path().join("mnt");
    fs::create_dir(&target)?;
    {
        let _mounted = strata_testkit::Unmount(&target);
        ok_json(&a, &["snapshot", "mount", "c1", target.to_str().unwrap()])?;
        let text: String = (0..30_000).map(|i| format!("entry {i}\n")).collect();
        fs::write(target.join("tmp/log"), text)?;
    }
    let committed = strata(&a, &["commit", "c1", "app"]);
    assert!(committed.status.success(), "{committed:?}");
    let id = String::from_utf8(committed.stdout)?.trim().to_owned();
    let app = registry.reference("go/app:1");
    let pushed = ok_json(&a, &["push", "app", &app])?;
    assert_eq!(pushed["manifest"], id.as_str(), "{pushed}");
    let pulled = ok_json(&b, &["pull", &app])?;
    assert_eq!(pulled["image"], id.as_str());
    for (root, name) in [(&a, "app"), (&b, app.as_str())] {
        let history = ok_json(root, &["history", name])?;
        let newest = history.as_array().unwrap().last().unwrap().clone();
        assert!(
            newest["created_by"].as_str().unwrap().contains("commit"),
            "{history}"
        );
        ok_json(root, &["fsck"])?;
    }
    Ok(())
}

#[test]
fn login_stores_credentials_that_pull_and_push_then_use() -> anyhow::Result<()> {
    let Some((registry, tmp, a)) = registry_with_source(server::Access::Basic)? else {
        return Ok(());
    };
    let docker = tmp.path().join("docker");
    let server = format!("{}:{}", registry.ip, registry.port);
    let login = |password: &str| {
        with_stdin(
            strata_cmd(&a)
                .args(["login", &server, "-u", server::USER, "--password-stdin"])
                .env("DOCKER_CONFIG", &docker),
            password,
        )
    };
    // A wrong password is refused and nothing is stored.
    let refused = login("wrong");
    assert!(!refused.status.success());
    assert!(!docker.join("config.json").exists());
    let accepted = login(server::PASSWORD);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(String::from_utf8_lossy(&accepted.stdout).contains("Login Succeeded"));
    let config: serde_json::Value = serde_json::from_slice(&fs::read(docker.join("config.json"))?)?;
    assert!(config["auths"][&server]["auth"].is_string(), "{config}");

    // Push and pull find the stored credentials by the reference's registry.
    let reference = registry.reference("private/app:1");
    succeed(
        strata_cmd(&a)
            .args(["push", "app", &reference])
            .env("DOCKER_CONFIG", &docker),
    )?;
    let b = tmp.path().join("b");
    succeed(
        strata_cmd(&b)
            .args(["pull", &reference])
            .env("DOCKER_CONFIG", &docker),
    )?;

    let out = succeed(
        strata_cmd(&a)
            .args(["logout", &server])
            .env("DOCKER_CONFIG", &docker),
    )?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removed"));
    let denied = strata_cmd(&b)
        .args(["pull", &reference])
        .env("DOCKER_CONFIG", &docker)
        .output()?;
    assert!(!denied.status.success(), "pulled after logout");
    Ok(())
}

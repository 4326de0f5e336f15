//! A Kubernetes pod on Strata, driven through containerd's CRI plugin as kubelet drives it: a
//! host-network pod whose sandbox ("pause") image is built in the test from busybox, and a
//! busybox container in it whose log line is read back. Both images come from a private
//! registry and the store lacks them: `strata serve` fetches the pause image (CRI-driven fetch),
//! and with it the one layer both images share.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::cri::{self, CONTAINER_EXITED, NAMESPACE_MODE_NODE};
use crate::common::ok;
use crate::recipe::mounts_under;
use crate::remote::{assert_fsck_clean, busybox_in_a_registry, containerd_snapshots};
use crate::server::Registry;
use strata_testkit::containerd::{Containerd, Plugins};

/// How long the container may take to run and exit, and its log line to appear, before the
/// test fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(60);

/// A sandbox image made from the busybox image in the scratch store `push_busybox` left at
/// `dir/scratch-store`: busybox sleeping for ever, as kubernetes' pause does. Pushed to
/// `registry`; returns its reference.
fn push_pause(dir: &Path, registry: &Registry) -> String {
    let scratch = dir.join("scratch-store");
    let context = dir.join("pause-context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM busybox\nENTRYPOINT [\"/bin/busybox\", \"sleep\", \"2147483647\"]\n",
    )
    .unwrap();
    ok(
        &scratch,
        &["build", "-t", "pause", context.to_str().unwrap()],
    );
    let reference = registry.reference("strata/pause:1");
    ok(&scratch, &["push", "pause", &reference]);
    reference
}

/// Removes the pod (its containers with it) when dropped, whatever happened, then unmounts
/// anything containerd left under the test's directory.
struct Pod<'a> {
    containerd: &'a Containerd,
    id: String,
    dir: &'a Path,
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let removed = cri::remove_pod_sandbox(self.containerd.socket(), &self.id);
        let mut left = mounts_under(self.dir);
        left.sort();
        for target in left.iter().rev() {
            let _ = strata_cow::unmount(target);
        }
        if let Err(err) = removed
            && !std::thread::panicking()
        {
            panic!("removing the pod: {err}");
        }
    }
}

/// The CRI log lines of `path` (`TIMESTAMP STREAM TAG MESSAGE`) once one is there: the
/// messages.
fn log_messages(path: &Path) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') {
            return text
                .lines()
                .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default().to_owned())
                .collect();
        }
        assert!(Instant::now() < deadline, "{}: no log line", path.display());
        std::thread::yield_now();
    }
}

#[test]
fn a_pod_runs_on_images_strata_fetched() {
    let Some((_tmp, env, registry, (busybox, _))) = busybox_in_a_registry() else {
        return;
    };
    let pause = push_pause(&env.dir, &registry);
    let serve = env.serve();
    let containerd = cri::start_containerd(
        &env.dir,
        &env.strata_sock,
        Plugins::CriAnnotated {
            sandbox_image: Some(&pause),
        },
    );
    let socket = containerd.socket();

    let logs = env.dir.join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "strata-pod".into(),
            uid: "strata-pod-uid".into(),
            namespace: "default".into(),
        }),
        // The node's: a host-network pod shares its UTS namespace.
        hostname: String::new(),
        log_directory: logs.to_str().unwrap().into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: NAMESPACE_MODE_NODE,
                }),
            }),
        }),
    };
    let pod = Pod {
        containerd: &containerd,
        id: cri::run_pod_sandbox(socket, &sandbox_config).unwrap(),
        dir: &env.dir,
    };
    cri::pull_image(socket, &busybox).unwrap();
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "hello".into(),
        }),
        image: Some(cri::ImageSpec {
            image: busybox.clone(),
        }),
        command: [
            "/bin/busybox",
            "sh",
            "-c",
            "echo hello from a pod on strata",
        ]
        .map(String::from)
        .to_vec(),
        log_path: "hello.log".into(),
    };
    let id = cri::start_container(socket, &pod.id, &container, &sandbox_config).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        let status = cri::container_status(socket, &id).unwrap();
        if status.state == CONTAINER_EXITED {
            break status;
        }
        assert!(Instant::now() < deadline, "the container still runs");
        std::thread::yield_now();
    };
    assert_eq!(status.exit_code, 0);
    assert_eq!(
        log_messages(&logs.join("hello.log")),
        ["hello from a pod on strata"]
    );

    // The pause image came through Strata's fetch, and with it the layer busybox's image
    // shares: its pull found that layer in the store, and fetched nothing.
    let fetched = serve.log();
    assert_eq!(
        fetched
            .lines()
            .filter(|l| l.contains("fetched an image for containerd"))
            .map(|l| l.split("reference=").nth(1).unwrap_or_default())
            .map(|rest| rest.split(' ').next().unwrap_or_default())
            .collect::<Vec<_>>(),
        [pause.as_str()],
        "{fetched}"
    );
    assert_eq!(containerd_snapshots(&env, "strata.remote/").len(), 1);
    let images = env.strata_json(&["images"]).to_string();
    assert!(images.contains(&pause), "{images}");
    drop(pod);
    assert_fsck_clean(&env);
}

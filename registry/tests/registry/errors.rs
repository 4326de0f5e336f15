//! What a user is told: a missing tag or digest names itself and the repository; a registry on
//! loopback speaks plain HTTP without being told; a TLS handshake with a registry that speaks
//! plain HTTP suggests `--insecure`; a port nobody listens on is unreachable.

use rustix::io::Errno;
use strata_registry::{Connection, PullError, PullOptions, PushOptions, RegistryError};

use crate::server::{Access, Registry, host_name};
use crate::{World, single};

#[test]
fn a_missing_tag_or_digest_names_it_and_the_repository() {
    let Some(world) = World::new() else {
        return;
    };
    world.publish(&single("t", 31, 16 << 10), "img");
    let target = world.store("target");
    let repository = world.reference("img");
    let err = target
        .pull(&world.reference("img:2"), &PullOptions::default())
        .unwrap_err();
    match &err {
        PullError::TagNotFound { tag, repository: r } => {
            assert_eq!((tag.as_str(), r), ("2", &repository))
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(err.to_string(), format!("no tag 2 in {repository}"));

    // A repository never pushed to: the same answer, and `latest` when no tag is given.
    let err = target
        .pull(&world.reference("nothing"), &PullOptions::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no tag latest in {}", world.reference("nothing"))
    );

    let digest = format!("sha256:{}", "0".repeat(64));
    let err = target
        .pull(&format!("{repository}@{digest}"), &PullOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, PullError::ManifestNotFound { digest: d, .. } if *d == digest),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("no manifest {digest} in {repository}")
    );
    assert!(target.images().unwrap().is_empty());
}

#[test]
fn a_loopback_registry_speaks_plain_http_without_insecure() {
    let Some(world) = World::new() else {
        return;
    };
    let image = single("plain", 32, 16 << 10);
    world.import(&image, "plain");
    let plain = Connection::default();
    let push = PushOptions::default().with_connection(plain.clone());
    let reference = world.reference("plain:1");
    world.source.push("plain", &reference, &push).unwrap();
    let pull = PullOptions::default().with_connection(plain);
    let target = world.store("target");
    target.pull(&reference, &pull).unwrap();
    // `localhost` is loopback too.
    let by_name = format!("localhost:{}/plain:1", world.registry.port);
    target.pull(&by_name, &pull).unwrap();
    crate::assert_exports(&target, &by_name, &image);
}

#[test]
fn tls_to_a_plain_http_registry_suggests_insecure() {
    let Some(world) = World::new() else {
        return;
    };
    // By name rather than by loopback address, the registry gets HTTPS and answers in HTTP.
    let (name, ip) = host_name();
    let registry = Registry::start_on(ip, Access::Open);
    let reference = format!("{name}:{}/x:1", registry.port);
    let target = world.store("target");
    let err = target
        .pull(&reference, &PullOptions::default())
        .unwrap_err()
        .into();
    match &err {
        RegistryError::Tls {
            reference: r,
            registry: at,
            ..
        } => {
            assert_eq!(*r, reference);
            assert_eq!(*at, format!("{name}:{}", registry.port));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("--insecure"), "{err}");

    // With `insecure`, the same registry answers: here, that it has no such image.
    let insecure = PullOptions::default().with_connection(crate::insecure());
    let err = target.pull(&reference, &insecure).unwrap_err();
    assert!(matches!(err, PullError::TagNotFound { .. }), "{err:?}");
}

#[test]
fn a_port_nobody_listens_on_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let Some(world) = World::new() else {
        return;
    };
    let reference = format!("{closed}/x:1");
    let err: RegistryError = world
        .store("target")
        .pull(&reference, &PullOptions::default())
        .unwrap_err()
        .into();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{reference}: cannot connect to the registry")
    );
    // The chain says each cause once, down to the kernel's refusal.
    let chain = strata_testkit::assert_chain_once(&err);
    let refused = std::io::Error::from_raw_os_error(Errno::CONNREFUSED.raw_os_error());
    assert_eq!(chain.matches(&refused.to_string()).count(), 1, "{chain}");
}

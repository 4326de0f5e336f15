//! Turning what `oci-client` reports into errors a user can act on: a registry that cannot be
//! reached, a TLS handshake that failed (most often a plain-HTTP registry), a manifest the
//! registry does not have; and which registries speak plain HTTP by default.

use std::error::Error;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::RegistryError;

/// Whether `registry` (`host[:port]`, as in a reference) is on this machine: `localhost`,
/// 127.0.0.0/8 or `[::1]`. Such registries speak plain HTTP unless told otherwise, as docker
/// assumes.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        // `[::1]:5000`: the host is what the brackets hold.
        Some(rest) => match rest.split_once(']') {
            Some((host, _)) => host,
            None => return false,
        },
        None => registry.split_once(':').map_or(registry, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Wraps `source`, the client's error for `operation` on `reference` at `registry`: a TLS
/// failure or a failure to connect says so, whatever was asked.
pub(crate) fn error(
    reference: &str,
    registry: &str,
    operation: String,
    source: OciDistributionError,
) -> RegistryError {
    if let Some(tls) = tls_failure(&source) {
        return RegistryError::Tls {
            reference: reference.to_owned(),
            registry: registry.to_owned(),
            reason: tls.to_string(),
            error: Box::new(source),
        };
    }
    match &source {
        OciDistributionError::RequestError(e) if e.is_connect() => RegistryError::Unreachable {
            reference: reference.to_owned(),
            source: Box::new(source),
        },
        _ => RegistryError::Registry {
            reference: reference.to_owned(),
            operation,
            source: Box::new(source),
        },
    }
}

/// Whether the registry answered that it has no such manifest (or no such repository).
pub(crate) fn is_not_found(source: &OciDistributionError) -> bool {
    match source {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        // A registry that answers 404 without the OCI error document.
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}

/// The TLS library's error somewhere in `err`'s chain of causes, if any.
fn tls_failure(err: &OciDistributionError) -> Option<&rustls::Error> {
    // The client's wrappers are transparent: their `source` is their inner error's source,
    // so start from the inner error itself.
    let mut next: Option<&(dyn Error + 'static)> = match err {
        OciDistributionError::IoError(e) => Some(e),
        OciDistributionError::RequestError(e) => Some(e),
        other => Some(other),
    };
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An `io::Error` wrapping another error reports that error's source as its own,
        // skipping the error itself: descend into it instead.
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised_with_or_without_a_port() {
        for registry in [
            "localhost",
            "LOCALHOST:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.200.3.4:443",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_loopback(registry), "{registry}");
        }
        for registry in [
            "docker.io",
            "registry.example:5000",
            "128.0.0.1:5000",
            "10.0.0.1",
            "localhost.example.com",
            "[::2]:5000",
            "[::1",
        ] {
            assert!(!is_loopback(registry), "{registry}");
        }
    }

    #[test]
    fn a_tls_error_is_found_inside_an_io_error() {
        // As hyper wraps what tokio-rustls reports.
        let tls = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, tls));
        let source = OciDistributionError::IoError(wrapped);
        let err = error("r", "example.com", "manifest".into(), source);
        assert!(matches!(err, RegistryError::Tls { .. }), "{err}");
        assert!(err.to_string().contains("--insecure"), "{err}");
        let plain = OciDistributionError::IoError(io::Error::other("disk full"));
        let err = error("r", "example.com", "manifest".into(), plain);
        assert!(matches!(err, RegistryError::Registry { .. }), "{err}");
    }
}

//! Why a pull or push failed, naming the reference and blob at fault.

use strata_layer_store::{ExportError, ImportError, StoreError};

/// Everything a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry could not be reached at all (connection refused, no route, DNS).
    #[error("{reference}: cannot connect to the registry")]
    Unreachable {
        /// The image reference.
        reference: String,
        /// What the client said.
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    /// The TLS handshake with the registry failed: most often a registry that speaks plain
    /// HTTP ([`Connection::insecure`](crate::Connection::insecure), `--insecure` on the command
    /// line), or a certificate this machine does not trust.
    #[error(
        "{reference}: TLS handshake with {registry} failed ({reason}); \
         if the registry speaks plain HTTP, use --insecure"
    )]
    Tls {
        /// The image reference.
        reference: String,
        /// The registry (`host[:port]`).
        registry: String,
        /// What the TLS library said.
        reason: String,
        /// What the client said; not a `source`, since all it adds to `reason` is the URL
        /// and layers of wrapping.
        error: Box<oci_client::errors::OciDistributionError>,
    },
    /// The image reference does not parse.
    #[error("bad image reference {reference:?}: {reason}")]
    BadReference {
        /// The reference given.
        reference: String,
        /// The parser's message.
        reason: String,
    },
    /// A platform string is not `os/arch[/variant]`.
    #[error("bad platform {platform:?}: expected os/arch[/variant]")]
    BadPlatform {
        /// The string given.
        platform: String,
    },
    /// The registry refused or failed a request.
    #[error("{reference}: {operation} failed")]
    Registry {
        /// The image reference.
        reference: String,
        /// What was asked (`manifest`, `blob sha256:…`, `upload sha256:…`, …).
        operation: String,
        /// What the client said.
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    /// A manifest or config does not parse or disagrees with its descriptor.
    #[error("{reference}: {digest}: {reason}")]
    BadDocument {
        /// The image reference.
        reference: String,
        /// The document's digest.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// The tokio runtime of a [`blocking`](crate::blocking) call could not start, or shut down
    /// under a running operation.
    #[error("registry client runtime")]
    Runtime(#[source] std::io::Error),
    /// A credentials file (docker's `config.json`) or its helper is unusable.
    #[error("credentials in {path}: {reason}")]
    Credentials {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A credentials file could not be read or written.
    #[error("credentials in {path}")]
    CredentialsIo {
        /// The file.
        path: std::path::PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// A pull failed.
    #[error(transparent)]
    Pull(PullError),
    /// A push failed.
    #[error(transparent)]
    Push(PushError),
}

/// Why a pull failed; nothing of the image is visible after it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// The repository has no manifest with this tag (or has no such repository).
    #[error("no tag {tag} in {repository}")]
    TagNotFound {
        /// The tag asked for (`latest` when the reference names none).
        tag: String,
        /// `registry/repository`.
        repository: String,
    },
    /// The repository has no manifest with this digest (or has no such repository).
    #[error("no manifest {digest} in {repository}")]
    ManifestNotFound {
        /// The digest asked for.
        digest: String,
        /// `registry/repository`.
        repository: String,
    },
    /// The reference names an index with no image for the platform.
    #[error("{reference}: no image for platform {platform}")]
    NoPlatform {
        /// The image reference.
        reference: String,
        /// The platform looked for.
        platform: String,
    },
    /// A manifest, config or layer is of a kind Strata cannot use.
    #[error("{reference}: {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The image reference.
        reference: String,
        /// The descriptor's digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// Importing a layer blob failed (wrong digest, size or diff_id, corrupt data, I/O);
    /// nothing of the image became visible.
    #[error("{reference}: layer {digest}")]
    Layer {
        /// The image reference.
        reference: String,
        /// The blob's digest.
        digest: String,
        /// The import's error.
        #[source]
        source: Box<ImportError>,
    },
    /// The pull was cancelled; what was downloaded stays under `tmp/pull/` for the next try.
    #[error("{reference}: cancelled")]
    Cancelled {
        /// The image reference.
        reference: String,
    },
    /// What a pull shares with every registry operation: the connection, the registry's
    /// answers, the store.
    #[error(transparent)]
    Registry(Box<RegistryError>),
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The store could not write a layer's blob for the upload.
    #[error("{reference}: exporting layer {digest}")]
    Export {
        /// The image reference pushed to.
        reference: String,
        /// The layer's diff_id.
        digest: String,
        /// The export's error.
        #[source]
        source: Box<ExportError>,
    },
    /// What a push shares with every registry operation: the connection, the registry's
    /// answers, the store (an image it does not hold).
    #[error(transparent)]
    Registry(Box<RegistryError>),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        RegistryError::Store(Box::new(e))
    }
}

impl From<ImportError> for RegistryError {
    fn from(e: ImportError) -> Self {
        StoreError::from(e).into()
    }
}

/// Lifts narrow error `$narrow` into [`RegistryError::$variant`] and back, never nesting one
/// in the other.
macro_rules! lift {
    ($narrow:ident, $variant:ident) => {
        impl From<RegistryError> for $narrow {
            fn from(err: RegistryError) -> Self {
                match err {
                    RegistryError::$variant(narrow) => narrow,
                    other => $narrow::Registry(Box::new(other)),
                }
            }
        }

        impl From<$narrow> for RegistryError {
            fn from(err: $narrow) -> Self {
                match err {
                    $narrow::Registry(broad) => *broad,
                    narrow => RegistryError::$variant(narrow),
                }
            }
        }
    };
}

lift!(PullError, Pull);
lift!(PushError, Push);

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> RegistryError {
        RegistryError::Runtime(std::io::Error::other("no threads"))
    }

    #[test]
    fn lifting_never_nests_a_narrow_error_in_a_broad_one() {
        let narrow = PullError::from(runtime());
        assert!(
            matches!(&narrow, PullError::Registry(e) if matches!(**e, RegistryError::Runtime(_)))
        );
        assert!(matches!(
            RegistryError::from(narrow),
            RegistryError::Runtime(_)
        ));
        let cancelled = PullError::Cancelled {
            reference: "r".into(),
        };
        let broad = RegistryError::from(cancelled);
        assert!(matches!(
            PullError::from(broad),
            PullError::Cancelled { .. }
        ));
        assert!(matches!(PushError::from(runtime()), PushError::Registry(_)));
    }

    #[test]
    fn a_lifted_error_says_its_cause_once() {
        let chain = strata_testkit::assert_chain_once(&PushError::from(runtime()));
        assert_eq!(chain, "registry client runtime: no threads");
    }
}

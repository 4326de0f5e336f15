//! One conversation with a registry about one reference: the `oci-client` client, the runtime
//! it runs on, and the small requests (manifests, configs) every operation makes.

use std::future::Future;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::digest::Sha256;
use crate::registry::{Auth, Connection, RegistryError};

/// JSON documents (manifests, indexes, configs) larger than this are refused.
pub(crate) const MAX_DOCUMENT: u64 = 16 << 20;

/// A client bound to one reference.
pub(crate) struct Session {
    runtime: tokio::runtime::Runtime,
    pub client: Client,
    pub reference: Reference,
    /// The reference as the caller wrote it, for errors and tags.
    pub name: String,
    pub auth: RegistryAuth,
}

impl Session {
    /// Parses `reference` and prepares a client for its registry.
    pub fn new(reference: &str, connection: &Connection) -> Result<Session, RegistryError> {
        let parsed: Reference =
            reference
                .parse()
                .map_err(|e: oci_client::ParseError| RegistryError::BadReference {
                    reference: reference.to_owned(),
                    reason: e.to_string(),
                })?;
        let protocol = if connection.insecure {
            ClientProtocol::HttpsExcept(vec![parsed.resolve_registry().to_owned()])
        } else {
            ClientProtocol::Https
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-registry")
            .enable_all()
            .build()
            .map_err(RegistryError::Runtime)?;
        let client = Client::new(ClientConfig {
            protocol,
            // One streamed PUT per blob, rather than a request per 4 MiB chunk.
            use_monolithic_push: true,
            ..Default::default()
        });
        let auth = match &connection.auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::Bearer { token } => RegistryAuth::Bearer(token.clone()),
        };
        Ok(Session {
            runtime,
            client,
            reference: parsed,
            name: reference.to_owned(),
            auth,
        })
    }

    /// Runs `future` to completion; callable from several plain threads at once.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs `future` on the runtime's own threads.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(future)
    }

    /// Wraps a client error with the reference and what was asked; a failure to connect
    /// says so, whatever was asked.
    pub fn fail(
        &self,
        operation: impl Into<String>,
    ) -> impl FnOnce(OciDistributionError) -> RegistryError {
        let reference = self.name.clone();
        let operation = operation.into();
        move |source| match &source {
            OciDistributionError::RequestError(e) if e.is_connect() => RegistryError::Unreachable {
                reference,
                source: Box::new(source),
            },
            _ => RegistryError::Registry {
                reference,
                operation,
                source: Box::new(source),
            },
        }
    }

    /// Authenticates for `operation` (a no-op for anonymous access without a token server).
    pub fn authenticate(&self, operation: RegistryOperation) -> Result<(), RegistryError> {
        self.block_on(self.client.auth(&self.reference, &self.auth, operation))
            .map(drop)
            .map_err(self.fail("authentication"))
    }

    /// A document blob (a config), checked against its digest and size.
    pub fn fetch_document(&self, digest: &str, size: u64) -> Result<Vec<u8>, RegistryError> {
        let bad = |reason: String| RegistryError::BadDocument {
            reference: self.name.clone(),
            digest: digest.to_owned(),
            reason,
        };
        if size > MAX_DOCUMENT {
            return Err(bad(format!(
                "{size} bytes is too large for a JSON document"
            )));
        }
        let mut out = Vec::new();
        self.block_on(self.client.pull_blob(&self.reference, digest, &mut out))
            .map_err(self.fail(format!("blob {digest}")))?;
        check_digest(&out, digest, size).map_err(bad)?;
        Ok(out)
    }
}

/// Whether `bytes` are what a descriptor with `digest` and `size` names.
pub(crate) fn check_digest(bytes: &[u8], digest: &str, size: u64) -> Result<(), String> {
    let actual = Sha256::of(bytes).to_string();
    if actual != digest {
        return Err(format!("content hashes to {actual}"));
    }
    if bytes.len() as u64 != size {
        return Err(format!("{} bytes, the descriptor says {size}", bytes.len()));
    }
    Ok(())
}

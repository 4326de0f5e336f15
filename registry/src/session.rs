//! One conversation with a registry about one reference: the `oci-client` client, the
//! credentials, and the small requests (manifests, configs) every operation makes.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use strata_layer_store::digest::Sha256;

use crate::classify;
use crate::{Auth, Connection, RegistryError};

/// JSON documents (manifests, indexes, configs) larger than this are refused.
pub(crate) const MAX_DOCUMENT: u64 = 16 << 20;

/// A client bound to one reference. Cheap to share: the tasks of one operation hold it in an
/// `Arc`.
pub(crate) struct Session {
    pub client: oci_client::Client,
    pub reference: Reference,
    /// The reference as the caller wrote it, for errors and tags.
    pub name: String,
    pub auth: RegistryAuth,
}

impl Session {
    /// Parses `reference` and prepares a client for its registry: plain HTTP when asked, or
    /// when the registry is on loopback (as docker does), HTTPS otherwise.
    pub fn new(reference: &str, connection: &Connection) -> Result<Session, RegistryError> {
        let parsed: Reference =
            reference
                .parse()
                .map_err(|e: oci_client::ParseError| RegistryError::BadReference {
                    reference: reference.to_owned(),
                    reason: e.to_string(),
                })?;
        let registry = parsed.resolve_registry().to_owned();
        let auth = match (&connection.auth, &connection.credentials) {
            (Auth::Anonymous, Some(credentials)) => credentials.auth_for(&registry)?,
            (auth, _) => auth.clone(),
        };
        let auth = match auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => RegistryAuth::Basic(username, password),
            Auth::Bearer { token } => RegistryAuth::Bearer(token),
        };
        let protocol = if connection.insecure || classify::is_loopback(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            // One streamed PUT per blob, rather than a request per 4 MiB chunk.
            use_monolithic_push: true,
            ..Default::default()
        });
        Ok(Session {
            client,
            reference: parsed,
            name: reference.to_owned(),
            auth,
        })
    }

    /// Wraps a client error with the reference and what was asked (see
    /// [`classify::error`]).
    pub fn fail<S: Into<String>>(
        &self,
        operation: S,
    ) -> impl FnOnce(OciDistributionError) -> RegistryError + use<S> {
        let reference = self.name.clone();
        let registry = self.reference.resolve_registry().to_owned();
        let operation = operation.into();
        move |source| classify::error(&reference, &registry, operation, source)
    }

    /// Authenticates for `operation` (a no-op for anonymous access without a token server).
    pub async fn authenticate(&self, operation: RegistryOperation) -> Result<(), RegistryError> {
        self.client
            .auth(&self.reference, &self.auth, operation)
            .await
            .map(drop)
            .map_err(self.fail("authentication"))
    }

    /// A document blob (a config), checked against its digest and size.
    pub async fn fetch_document(&self, digest: &str, size: u64) -> Result<Vec<u8>, RegistryError> {
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
        self.client
            .pull_blob(&self.reference, digest, &mut out)
            .await
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

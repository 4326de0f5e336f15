//! `docker login`'s check: whether a registry accepts a connection's credentials.

use oci_client::RegistryOperation;

use crate::session::Session;
use crate::{Connection, RegistryError, classify};

/// A repository no one is expected to have: asking for its manifest is a request that needs
/// the credentials and that a registry answers with "unknown" when they are good.
const PROBE: &str = "strata-login-check/probe:latest";

/// Checks that `server` (a registry host, with its port if any) accepts the credentials of
/// `connection`, as `docker login` does before it stores them: a wrong password fails with
/// the registry's refusal.
pub async fn login(server: &str, connection: &Connection) -> Result<(), RegistryError> {
    let session = Session::new(&format!("{server}/{PROBE}"), connection)?;
    // A token server refuses bad credentials here; a registry of its own at the request.
    session.authenticate(RegistryOperation::Pull).await?;
    match session
        .client
        .fetch_manifest_digest(&session.reference, &session.auth)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if classify::is_not_found(&e) => Ok(()),
        Err(e) => Err(session.fail("login")(e)),
    }
}

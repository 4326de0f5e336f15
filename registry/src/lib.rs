//! Pull and push images between an OCI distribution registry and a
//! [`strata_layer_store::Store`].
//!
//! [`Client`] is the async API (tokio); [`blocking::Client`] wraps it for callers without a
//! runtime, and works from inside one too. A pull fetches only the layers the store lacks (by
//! diff_id), several at once, each streamed into the store's verifying import while a copy of
//! the bytes goes to `tmp/pull/<digest>`, so an interrupted pull resumes from there with an
//! HTTP range request; the image becomes visible in one commit, or not at all. A push uploads
//! only the blobs the registry lacks (mounting them from another repository of the registry
//! that an image of the store was pulled from or tagged for, or that the caller names), each streamed from the store's bit-exact export through a bounded buffer, never whole
//! in memory.
//!
//! A registry on this machine (`localhost`, 127.0.0.0/8, `[::1]`) is spoken to in plain HTTP,
//! as docker does; any other over HTTPS unless [`Connection::insecure`] says otherwise.
//!
//! ```no_run
//! use std::sync::Arc;
//! use strata_layer_store::Store;
//! use strata_registry::{PullOptions, blocking};
//! # fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(Store::open(dir.path())?);
//! let client = blocking::Client::new(store.clone());
//! let report = client.pull("127.0.0.1:5000/app:1", &PullOptions::default())?;
//! println!("{} layers, {} bytes fetched", report.layers.len(), report.bytes_fetched);
//! assert!(store.image("127.0.0.1:5000/app:1").is_ok());
//! # Ok(()) }
//! ```
//!
//! Errors name the reference and what to do about it:
//!
//! ```
//! use std::sync::Arc;
//! use strata_layer_store::Store;
//! use strata_registry::{PullError, PullOptions, RegistryError, blocking};
//! # fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let client = blocking::Client::new(Arc::new(Store::open(dir.path())?));
//! // Nothing listens on port 1 of this machine.
//! let err = client.pull("127.0.0.1:1/app:1", &PullOptions::default()).unwrap_err();
//! // What only a pull fails with is a `PullError` variant; what every registry operation
//! // shares is in `PullError::Registry`, or matched after lifting into `RegistryError`.
//! assert!(!matches!(err, PullError::TagNotFound { .. }));
//! assert_eq!(err.to_string(), "127.0.0.1:1/app:1: cannot connect to the registry");
//! let err = RegistryError::from(err);
//! assert!(matches!(err, RegistryError::Unreachable { .. }));
//! # Ok(()) }
//! ```
//!
//! From async code, [`Client`]:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use strata_layer_store::Store;
//! # use strata_registry::{Client, PushOptions};
//! # async fn push(store: Arc<Store>) -> Result<(), strata_registry::PushError> {
//! let report = Client::new(store)
//!     .push("app", "registry.example/team/app:2", &PushOptions::default())
//!     .await?;
//! println!("pushed {}", report.manifest);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod blocking;
mod classify;
mod client;
mod credentials;
mod download;
mod error;
mod fetch;
mod login;
mod pull;
mod push;
mod session;
mod sources;
mod task;
mod upload;

pub use client::Client;
pub use credentials::Credentials;
pub use error::{PullError, PushError, RegistryError};
pub use login::login;
pub use pull::{LayerFetch, PullOptions, PullReport, PulledLayer};
pub use push::{BlobOutcome, PushOptions, PushReport, PushedBlob};

use std::fmt;
use std::str::FromStr;

/// How to authenticate to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials (the registry may still hand out an anonymous bearer token).
    #[default]
    Anonymous,
    /// HTTP basic authentication, or the credentials for a token server.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token obtained elsewhere.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Auth::Bearer { .. } => f.write_str("Bearer(***)"),
        }
    }
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Connection {
    /// Credentials.
    pub auth: Auth,
    /// Speak plain HTTP to the reference's registry. Registries on loopback (`localhost`,
    /// 127.0.0.0/8, `[::1]`) get plain HTTP without it.
    pub insecure: bool,
    /// Where to look up credentials for the reference's registry when `auth` is
    /// [`Auth::Anonymous`] (e.g. [`Credentials::docker`], which `docker login` and
    /// `strata login` write).
    pub credentials: Option<Credentials>,
}

impl Connection {
    /// With [`auth`](Connection::auth) set to `auth`.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// With [`insecure`](Connection::insecure) set to `insecure`.
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// With [`credentials`](Connection::credentials) set to `credentials`.
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }
}

/// An image platform, written `os/architecture[/variant]` (e.g. `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture in OCI spelling (`amd64`, `arm64`).
    pub architecture: String,
    /// Variant (`v8`), if any.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this program runs on.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }
}

impl FromStr for Platform {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Platform, RegistryError> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform {
                    os: os.to_owned(),
                    architecture: arch.to_owned(),
                    variant: variant.filter(|v| !v.is_empty()).map(str::to_owned),
                })
            }
            _ => Err(RegistryError::BadPlatform {
                platform: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

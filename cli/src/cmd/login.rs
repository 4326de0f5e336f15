//! `login` and `logout`: registry credentials in docker's `config.json`, where docker, podman,
//! skopeo and containerd's CRI plugin read them too.

use anyhow::Context;
use strata_registry::{Auth, Connection, Credentials, blocking};

use crate::global::Global;

/// Docker Hub, when no server is named.
const DEFAULT_SERVER: &str = "docker.io";

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check credentials against a registry and store them (in $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json).
    Login {
        /// The registry, `host[:port]` [default: docker.io].
        server: Option<String>,
        /// User name.
        #[arg(short, long)]
        username: String,
        /// Read the password from the first line of standard input (else from
        /// STRATA_REGISTRY_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
        /// Speak plain HTTP to the registry (one on loopback gets it without this).
        #[arg(long)]
        insecure: bool,
    },
    /// Remove a registry's stored credentials.
    Logout {
        /// The registry, `host[:port]` [default: docker.io].
        server: Option<String>,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        let credentials = Credentials::docker()
            .context("no credentials file: neither DOCKER_CONFIG nor HOME is set")?;
        match self {
            Command::Login {
                server,
                username,
                password_stdin,
                insecure,
            } => {
                let server = server.unwrap_or_else(|| DEFAULT_SERVER.to_owned());
                let password = super::registry::password(&username, password_stdin)?;
                let connection = Connection::default()
                    .with_auth(Auth::Basic {
                        username: username.clone(),
                        password: password.clone(),
                    })
                    .with_insecure(insecure)
                    .with_credentials(None);
                blocking::login(&server, &connection)
                    .with_context(|| format!("logging in to {server} as {username}"))?;
                credentials.store(&server, &username, &password)?;
                let path = credentials.path().display().to_string();
                let report =
                    serde_json::json!({"server": server, "username": username, "stored_in": path});
                global.emit(&report, || format!("Login Succeeded (stored in {path})"))
            }
            Command::Logout { server } => {
                let server = server.unwrap_or_else(|| DEFAULT_SERVER.to_owned());
                let removed = credentials.erase(&server)?;
                let report = serde_json::json!({"server": server, "removed": removed});
                global.emit(&report, || {
                    if removed {
                        format!("Removed login credentials for {server}")
                    } else {
                        format!("Not logged in to {server}")
                    }
                })
            }
        }
    }
}

//! A real registry (Debian's `docker-registry`, the CNCF distribution registry) on 127.0.0.1
//! (or another address of this machine), with its own config and storage in a temp dir,
//! stopped by PID when dropped; and [`token::TokenServer`], a token server for it.

pub mod token;

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Child,
    /// The address it listens on.
    pub ip: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// Its config, storage and log.
    pub dir: tempfile::TempDir,
}

/// The user name of a registry started with auth (or of its token server).
pub const USER: &str = "strata";
/// The password.
pub const PASSWORD: &str = "s3cret-pass";
/// The registry's name in tokens (`aud`).
pub const SERVICE: &str = "strata-test-registry";
/// The token issuer the registry trusts (`iss`).
pub const ISSUER: &str = "strata-test-token-issuer";

/// Who may use a registry.
pub enum Access<'a> {
    /// Everyone.
    Open,
    /// HTTP basic auth as [`USER`]/[`PASSWORD`] (an htpasswd file).
    Basic,
    /// Bearer tokens from the token server at `realm`, signed by the key of certificate `cert`.
    Token {
        /// The token server's URL.
        realm: &'a str,
        /// The certificate whose key signs the tokens.
        cert: &'a Path,
    },
}

impl Registry {
    /// Starts a registry open to `access` when the tools it needs are installed: docker-registry,
    /// and htpasswd for [`Access::Basic`]. When one is missing the test is skipped, saying which
    /// Debian package provides it (see [`crate::peer`]), and this returns `None`.
    pub fn start_if_installed(access: Access<'_>) -> Option<Registry> {
        let installed = crate::peer("docker-registry", "docker-registry")
            && (!matches!(access, Access::Basic) || crate::peer("htpasswd", "apache2-utils"));
        installed.then(|| Registry::start(access))
    }

    /// Starts a registry open to `access`.
    pub fn start(access: Access<'_>) -> Registry {
        Registry::start_on(Ipv4Addr::LOCALHOST, access)
    }

    /// Starts a registry open to `access` listening on `ip` (an address of this machine).
    pub fn start_on(ip: Ipv4Addr, access: Access<'_>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = dir.path().join("storage");
        fs::create_dir(&storage).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {ip}:{port}\n",
            storage.display()
        );
        match access {
            Access::Open => {}
            Access::Basic => {
                let htpasswd = dir.path().join("htpasswd");
                let status = Command::new("htpasswd")
                    .args(["-Bbc"])
                    .arg(&htpasswd)
                    .args([USER, PASSWORD])
                    .stderr(Stdio::null())
                    .status()
                    .expect("htpasswd (apache2-utils) is needed for the auth test");
                assert!(status.success());
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: strata\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            Access::Token { realm, cert } => config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                cert.display()
            )),
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) is needed");
        let registry = Registry {
            child,
            ip,
            port,
            dir,
        };
        registry.wait_ready();
        registry
    }

    /// Polls `/v2/` until the registry answers (any HTTP status), for at most 20 s.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect((self.ip, self.port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost\r\n\r\n");
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "registry did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `IP:PORT/repo` (`127.0.0.1:PORT/repo` unless started elsewhere).
    pub fn reference(&self, repo: &str) -> String {
        format!("{}:{}/{repo}", self.ip, self.port)
    }

    /// The registry's log (including its access log).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry stores blob `digest`'s bytes.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This machine's host name and an IPv4 address of this machine it resolves to: a registry
/// there, named so, is not on loopback as far as a reference says.
pub fn host_name() -> (String, Ipv4Addr) {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let ip = (name.as_str(), 0)
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("this machine's name {name:?} does not resolve: {e}"))
        .find_map(|a| match a.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .unwrap_or_else(|| panic!("this machine's name {name:?} has no IPv4 address"));
    (name, ip)
}

/// A TCP proxy to a registry that drops every `Range` header from requests, as some registries
/// and CDNs effectively do: blob requests get the whole blob (200), never a part (206). For
/// pulls only (a request body containing a `Range:` line would be altered). Its threads end with
/// their connections; the listener's with the test process.
pub struct RangeStripper {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

impl RangeStripper {
    /// A proxy to the registry on port `upstream` of 127.0.0.1.
    pub fn start(upstream: u16) -> RangeStripper {
        use std::io::BufRead;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut to_client, mut from_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
                std::thread::spawn(move || {
                    let mut requests = std::io::BufReader::new(client);
                    let mut server = server;
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match requests.read_until(b'\n', &mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line.to_ascii_lowercase().starts_with(b"range:") {
                            continue;
                        }
                        if server.write_all(&line).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        RangeStripper { port }
    }
}

//! A token server for the registry's bearer-token auth (the Docker token protocol), in-process:
//! it answers `GET /token?scope=…&service=…` with a JWT (RS256) signed by a key made with the
//! `openssl` CLI, whose self-signed certificate the registry trusts (`rootcertbundle`). Only
//! [`USER`]/[`PASSWORD`] (HTTP basic) get a token; it grants exactly the scopes asked for.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ISSUER, PASSWORD, SERVICE, USER};

/// A running token server.
pub struct TokenServer {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    /// Tokens handed out so far.
    issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Starts one when the `openssl` CLI is installed; otherwise the test is skipped, saying
    /// so (see [`crate::peer`]), and this returns `None`.
    pub fn start_if_installed() -> Option<TokenServer> {
        crate::peer("openssl", "openssl").then(TokenServer::start)
    }

    /// Starts one, with a fresh key and certificate (made by the `openssl` CLI).
    pub fn start() -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=strata-test-token-issuer"])
            .args(["-addext", "keyUsage=digitalSignature,keyCertSign"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stderr(Stdio::null())
            .status()
            .expect("the openssl CLI is needed for the token-auth tests");
        assert!(status.success(), "openssl req failed");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let signer = Signer::new(dir.path());
        let thread = {
            let (issued, stop) = (issued.clone(), stop.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Ok(client) = client {
                        serve(client, &signer, &issued);
                    }
                }
            })
        };
        TokenServer {
            port,
            dir,
            issued,
            stop,
            thread: Some(thread),
        }
    }

    /// The realm the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate the registry verifies tokens with.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Tokens handed out so far.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// A token granting `scope` (`repository:NAME:pull,push`), as a client given a token by
    /// someone else would hold it.
    pub fn token(&self, scope: &str) -> String {
        Signer::new(self.dir.path()).sign(scope)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Signs tokens with the key in `dir`.
struct Signer {
    key: PathBuf,
    /// The certificate, DER in standard base64, for the token's `x5c` header.
    x5c: String,
}

impl Signer {
    fn new(dir: &Path) -> Signer {
        let pem = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
        let x5c: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        Signer {
            key: dir.join("key.pem"),
            x5c,
        }
    }

    /// A JWT for `scopes` (space separated, as the query may repeat them).
    fn sign(&self, scopes: &str) -> String {
        let access: Vec<serde_json::Value> = scopes
            .split(' ')
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(kind), Some(name), Some(actions)) => Some(serde_json::json!({
                        "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>(),
                    })),
                    _ => None,
                }
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": USER, "aud": SERVICE,
            "exp": now + 3600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{scopes}"),
            "access": access,
        });
        let signed = format!(
            "{}.{}",
            base64(&serde_json::to_vec(&header).unwrap(), URL_SAFE),
            base64(&serde_json::to_vec(&claims).unwrap(), URL_SAFE)
        );
        let mut openssl = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        openssl
            .stdin
            .take()
            .unwrap()
            .write_all(signed.as_bytes())
            .unwrap();
        let out = openssl.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl dgst -sign failed");
        format!("{signed}.{}", base64(&out.stdout, URL_SAFE))
    }
}

/// Answers one request: a token for a client with the right basic credentials, 401 otherwise.
fn serve(client: TcpStream, signer: &Signer, issued: &AtomicUsize) {
    let mut reader = BufReader::new(&client);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorized = false;
    let credentials = base64(format!("{USER}:{PASSWORD}").as_bytes(), STANDARD);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization")
                && value.trim() == format!("Basic {credentials}")
            {
                authorized = true;
            }
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or_default();
    let scopes: Vec<String> = target
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("scope="))
        .map(percent_decode)
        .collect();
    let (status, body) = if authorized {
        issued.fetch_add(1, Ordering::Relaxed);
        let token = signer.sign(&scopes.join(" "));
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 3600});
        ("200 OK", body.to_string())
    } else {
        (
            "401 Unauthorized",
            r#"{"details":"bad credentials"}"#.to_owned(),
        )
    };
    let mut client = &client;
    let _ = write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("3f");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64 of `bytes` in `alphabet`; padded for the standard alphabet, unpadded (as JWTs are)
/// for the URL-safe one.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if alphabet == STANDARD {
            out.push_str(&"=="[..3 - chunk.len()]);
        }
    }
    out
}

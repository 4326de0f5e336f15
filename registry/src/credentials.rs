//! Credentials where docker, podman, skopeo and containerd's CRI plugin keep them: docker's
//! `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). A registry's
//! entry in `credHelpers`, else its entry in `auths`, else the `credsStore` helper answers;
//! [`Credentials::store`] writes an `auths` entry, as `docker login` does without a helper.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::{Auth, RegistryError};

/// Docker Hub's key in `config.json`, whatever name a reference gives the registry.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A docker `config.json`, read when asked, never cached: `strata login` in another process
/// takes effect at once.
#[derive(Debug, Clone)]
pub struct Credentials {
    path: PathBuf,
    /// Where `docker-credential-*` helpers are looked up; `PATH` when `None`.
    helpers: Option<PathBuf>,
}

impl Credentials {
    /// The file docker uses: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`;
    /// `None` without either variable.
    pub fn docker() -> Option<Credentials> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
        Some(Credentials::at(dir.join("config.json")))
    }

    /// The `config.json` at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Credentials {
        Credentials {
            path: path.into(),
            helpers: None,
        }
    }

    /// Looks credential helpers up in `dir` rather than on `PATH`.
    pub fn with_helpers_in(mut self, dir: impl Into<PathBuf>) -> Credentials {
        self.helpers = Some(dir.into());
        self
    }

    /// The file read and written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials for `registry` (a host with an optional port), anonymous when the file
    /// has none (or does not exist).
    pub fn auth_for(&self, registry: &str) -> Result<Auth, RegistryError> {
        let config = self.read()?;
        let key = key_of(registry);
        let helper = config["credHelpers"]
            .as_object()
            .and_then(|h| h.iter().find(|(k, _)| key_of(k) == key))
            .and_then(|(_, v)| v.as_str());
        if let Some(helper) = helper {
            return self.ask_helper(helper, registry);
        }
        let entry = config["auths"]
            .as_object()
            .and_then(|a| a.iter().find(|(k, _)| key_of(k) == key))
            .map(|(_, v)| v);
        if let Some(entry) = entry {
            if let Some(auth) = self.decode_entry(entry)? {
                return Ok(auth);
            }
        }
        match config["credsStore"].as_str() {
            Some(helper) => self.ask_helper(helper, registry),
            None => Ok(Auth::Anonymous),
        }
    }

    /// Stores `username` and `password` for `registry` in `auths`, keeping everything else
    /// the file holds. The file is replaced whole (written beside it, then renamed), mode 0600.
    pub fn store(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        let mut config = self.read()?;
        let auths = section(&mut config, "auths");
        auths.retain(|k, _| key_of(k) != key_of(registry));
        let token = BASE64.encode(format!("{username}:{password}"));
        auths.insert(entry_key(registry), serde_json::json!({ "auth": token }));
        self.write(&config)
    }

    /// Removes `registry`'s entry from `auths`; whether there was one.
    pub fn erase(&self, registry: &str) -> Result<bool, RegistryError> {
        let mut config = self.read()?;
        let auths = section(&mut config, "auths");
        let before = auths.len();
        auths.retain(|k, _| key_of(k) != key_of(registry));
        let removed = auths.len() != before;
        if removed {
            self.write(&config)?;
        }
        Ok(removed)
    }

    fn read(&self) -> Result<Value, RegistryError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.bad(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Map::new())),
            Err(e) => Err(self.io(e)),
        }
    }

    fn write(&self, config: &Value) -> Result<(), RegistryError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let tmp = dir.join(format!(".config.json.{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io(e))?;
        let bytes = serde_json::to_vec_pretty(config).map_err(|e| self.bad(e.to_string()))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                self.io(e)
            })
    }

    /// An `auths` entry: `auth` (base64 of `user:password`), or `username` and `password`, or
    /// an `identitytoken` (a bearer token); `None` when it holds none of them.
    fn decode_entry(&self, entry: &Value) -> Result<Option<Auth>, RegistryError> {
        if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
            return Ok(Some(Auth::Bearer {
                token: token.to_owned(),
            }));
        }
        if let Some(encoded) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let decoded = BASE64
                .decode(encoded.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| {
                    self.bad("an \"auth\" entry is not base64 of user:password".into())
                })?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| self.bad("an \"auth\" entry has no ':'".into()))?;
            return Ok(Some(basic(username, password)));
        }
        match (entry["username"].as_str(), entry["password"].as_str()) {
            (Some(u), Some(p)) => Ok(Some(basic(u, p))),
            _ => Ok(None),
        }
    }

    /// Runs `docker-credential-<helper> get` for `registry` (its protocol: the server on
    /// stdin, `{"Username", "Secret"}` on stdout; a username of `<token>` means the secret is
    /// an identity token).
    fn ask_helper(&self, helper: &str, registry: &str) -> Result<Auth, RegistryError> {
        let program = format!("docker-credential-{helper}");
        let program = match &self.helpers {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let failed = |reason: String| RegistryError::Credentials {
            path: self.path.clone(),
            reason: format!("{}: {reason}", program.display()),
        };
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(e.to_string()))?;
        let server = if key_of(registry) == key_of(DOCKER_HUB_KEY) {
            DOCKER_HUB_KEY.to_owned()
        } else {
            registry.to_owned()
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(server.as_bytes())
                .map_err(|e| failed(e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| failed(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // "credentials not found in native keychain": no credentials, not an error.
            if stdout.contains("not found") {
                return Ok(Auth::Anonymous);
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(failed(format!("{} {}", stdout.trim(), stderr.trim())));
        }
        let answer: BTreeMap<String, String> =
            serde_json::from_slice(&out.stdout).map_err(|e| failed(e.to_string()))?;
        let field = |name: &str| answer.get(name).cloned().unwrap_or_default();
        Ok(match field("Username").as_str() {
            "<token>" => Auth::Bearer {
                token: field("Secret"),
            },
            username => basic(username, &field("Secret")),
        })
    }

    fn bad(&self, reason: String) -> RegistryError {
        RegistryError::Credentials {
            path: self.path.clone(),
            reason,
        }
    }

    fn io(&self, e: std::io::Error) -> RegistryError {
        RegistryError::CredentialsIo {
            path: self.path.clone(),
            source: e,
        }
    }
}

fn basic(username: &str, password: &str) -> Auth {
    Auth::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

/// The object `name` of `config`, made one if missing or of another type.
fn section<'a>(config: &'a mut Value, name: &str) -> &'a mut Map<String, Value> {
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    let map = config.as_object_mut().expect("an object");
    let entry = map
        .entry(name.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("an object")
}

/// The host (and port) a `config.json` key or a reference's registry names, Docker Hub's
/// several names as one.
fn key_of(name: &str) -> String {
    let host = name
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

/// The key `docker login` writes for `registry`.
fn entry_key(registry: &str) -> String {
    if key_of(registry) == "docker.io" {
        DOCKER_HUB_KEY.to_owned()
    } else {
        key_of(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(dir: &Path, json: &str) -> Credentials {
        let path = dir.join("config.json");
        std::fs::write(&path, json).unwrap();
        Credentials::at(path)
    }

    fn basic_of(auth: Auth) -> (String, String) {
        match auth {
            Auth::Basic { username, password } => (username, password),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn auths_entries_are_found_by_host_whatever_the_key_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let c = creds(
            dir.path(),
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "http://127.0.0.1:5000": {"username": "u", "password": "p:w"},
                "ghcr.io": {"identitytoken": "tok"}
            }}"#,
        );
        assert_eq!(
            basic_of(c.auth_for("docker.io").unwrap()),
            ("hub".into(), "secret".into())
        );
        assert_eq!(
            basic_of(c.auth_for("registry-1.docker.io").unwrap()),
            ("hub".into(), "secret".into())
        );
        assert_eq!(
            basic_of(c.auth_for("127.0.0.1:5000").unwrap()),
            ("u".into(), "p:w".into())
        );
        assert_eq!(
            c.auth_for("ghcr.io").unwrap(),
            Auth::Bearer {
                token: "tok".into()
            }
        );
        assert_eq!(c.auth_for("quay.io").unwrap(), Auth::Anonymous);
        assert_eq!(c.auth_for("127.0.0.1:5001").unwrap(), Auth::Anonymous);
    }

    #[test]
    fn store_keeps_the_rest_of_the_file_and_erase_removes_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let c = creds(
            dir.path(),
            r#"{"auths": {"quay.io": {"auth": "cTpx"}}, "psFormat": "table"}"#,
        );
        c.store("127.0.0.1:5000", "me", "pw").unwrap();
        c.store("docker.io", "hub", "x").unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(c.path()).unwrap()).unwrap();
        assert_eq!(written["psFormat"], "table");
        assert_eq!(
            written["auths"]["127.0.0.1:5000"]["auth"],
            BASE64.encode("me:pw")
        );
        assert!(written["auths"][DOCKER_HUB_KEY].is_object());
        assert_eq!(
            basic_of(c.auth_for("quay.io").unwrap()),
            ("q".into(), "q".into())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(c.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(c.erase("127.0.0.1:5000").unwrap());
        assert!(!c.erase("127.0.0.1:5000").unwrap());
        assert_eq!(c.auth_for("127.0.0.1:5000").unwrap(), Auth::Anonymous);
        assert_eq!(
            basic_of(c.auth_for("docker.io").unwrap()),
            ("hub".into(), "x".into())
        );
        // A file that does not exist yet is made.
        let fresh = Credentials::at(dir.path().join("new/config.json"));
        fresh.store("r.example", "a", "b").unwrap();
        assert_eq!(
            basic_of(fresh.auth_for("r.example").unwrap()),
            ("a".into(), "b".into())
        );
    }

    #[test]
    fn helpers_answer_for_their_registries() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\ncase \"$server\" in\n  r.example) echo '{\"Username\":\"hu\",\"Secret\":\"hs\"}';;\n  t.example) echo '{\"Username\":\"<token>\",\"Secret\":\"tk\"}';;\n  *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = creds(
            dir.path(),
            r#"{"credsStore": "fake", "auths": {"a.example": {"auth": "YTpi"}}}"#,
        )
        .with_helpers_in(dir.path());
        assert_eq!(
            basic_of(c.auth_for("r.example").unwrap()),
            ("hu".into(), "hs".into())
        );
        assert_eq!(
            c.auth_for("t.example").unwrap(),
            Auth::Bearer { token: "tk".into() }
        );
        assert_eq!(c.auth_for("none.example").unwrap(), Auth::Anonymous);
        // An auths entry wins over the store.
        assert_eq!(
            basic_of(c.auth_for("a.example").unwrap()),
            ("a".into(), "b".into())
        );
        let missing = creds(dir.path(), r#"{"credHelpers": {"x.example": "absent"}}"#)
            .with_helpers_in(dir.path());
        let err = missing.auth_for("x.example").unwrap_err();
        assert!(
            err.to_string().contains("docker-credential-absent"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_file_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let c = creds(dir.path(), "{not json");
        let err = c.auth_for("r.example").unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}

//! Registry credentials from the Docker client's config file, the same file
//! `docker login` writes: `$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`, its `auths` entries (base64 `auth` of
//! `user:password`, or `username`/`password`, or an `identitytoken`).
//!
//! Credential helpers (`credsStore`, `credHelpers`) would mean running a
//! program per pull; they are not used, and the deployment log says so when
//! a registry is configured only through one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use wharf_plugin_api::LogSink;

use crate::reference::{ImageRef, ReferenceError};

/// Credentials for one registry, as an engine's pull API or a registry
/// client takes them (the docker plugin converts them to bollard's type).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub identity_token: Option<String>,
    /// The `auths` key the entry was found under, as the file spells it.
    pub server: String,
}

impl std::fmt::Debug for Credentials {
    /// Never print a password or token, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// What the config file says about one registry.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Credentials),
    /// Only a credential helper knows; wharf does not run helpers.
    HelperOnly(String),
    None,
}

/// The credentials for `repository`'s registry, if the config file has
/// them, with a line in the deployment log saying where they came from —
/// or, when only a credential helper knows them, that wharf goes on
/// `without` them (e.g. "it pulls anonymously").
pub fn for_repository(repository: &str, log: &LogSink, without: &str) -> Option<Credentials> {
    let path = config_path()?;
    let registry = match registry_of(repository) {
        Ok(registry) => registry,
        Err(why) => {
            log.info(format!("ignoring registry credentials: {why}"));
            return None;
        }
    };
    match lookup(&path, &registry) {
        Ok(Lookup::Found(credentials)) => {
            log.info(format!(
                "using the credentials for {registry} from {}",
                path.display()
            ));
            Some(credentials)
        }
        Ok(Lookup::HelperOnly(helper)) => {
            log.info(format!(
                "{} names the credential helper '{helper}' for {registry}; wharf reads only `auths` entries, so {without}",
                path.display()
            ));
            None
        }
        Ok(Lookup::None) => None,
        Err(why) => {
            log.info(format!("ignoring registry credentials: {why}"));
            None
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Where the Docker client keeps its config file.
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// The registry host of a repository or reference, by Docker's rules
/// (`docker.io/library/nginx` and `nginx:1` → `docker.io`,
/// `localhost:5000/acme/web` → `localhost:5000`, `Owner/app` → `Owner`).
///
/// # Errors
/// `repository` is not a valid image reference.
pub fn registry_of(repository: &str) -> Result<String, ReferenceError> {
    ImageRef::parse(repository).map(|parsed| parsed.domain)
}

/// Credentials for `registry` from the file at `path`. A missing file is no
/// credentials; an unreadable or malformed one is an error worth reporting.
///
/// # Errors
/// The file exists but cannot be read or parsed, or an `auth` entry is not
/// valid base64 of `user:password`.
pub fn lookup(path: &Path, registry: &str) -> Result<Lookup, String> {
    let text = match wharf_plugin_api::files::read_limited_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let config: ConfigFile = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a Docker config file: {e}", path.display()))?;
    let wanted = server_key(registry);
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| server_key(key) == wanted);
    if let Some((key, entry)) = entry {
        let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    format!(
                        "{}: auths.\"{key}\".auth is not base64 of user:password",
                        path.display()
                    )
                })?;
            let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                format!(
                    "{}: auths.\"{key}\".auth is not base64 of user:password",
                    path.display()
                )
            })?;
            username = Some(user.to_string());
            password = Some(pass.to_string());
        }
        let identity_token = entry.identitytoken.clone().filter(|t| !t.is_empty());
        if username.is_some() || identity_token.is_some() {
            return Ok(Lookup::Found(Credentials {
                username,
                password,
                identity_token,
                server: key.clone(),
            }));
        }
    }
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| server_key(key) == wanted)
        .map(|(_, helper)| helper.clone())
        .or(config.creds_store);
    Ok(match helper {
        Some(helper) => Lookup::HelperOnly(helper),
        None => Lookup::None,
    })
}

/// The comparable form of a registry as config files spell it: no scheme,
/// no path, Docker Hub's many names folded into one.
fn server_key(text: &str) -> String {
    let without_scheme = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn finds_entries_however_the_server_is_spelled() {
        let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cr:et");
        let (_dir, path) = write(&format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "registry.example.com:5000": {{"username": "bot", "password": "pw"}},
                "ghcr.io": {{"identitytoken": "tok"}}
            }}, "credHelpers": {{"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}}}}"#
        ));
        let Lookup::Found(hub) =
            lookup(&path, &registry_of("docker.io/library/nginx").unwrap()).unwrap()
        else {
            panic!("docker.io not found")
        };
        assert_eq!(hub.username.as_deref(), Some("ci"));
        assert_eq!(hub.password.as_deref(), Some("s3cr:et"));
        assert_eq!(hub.server, "https://index.docker.io/v1/");

        let Lookup::Found(own) = lookup(&path, "Registry.example.com:5000").unwrap() else {
            panic!("own registry not found")
        };
        assert_eq!(own.username.as_deref(), Some("bot"));

        let Lookup::Found(ghcr) = lookup(&path, "ghcr.io").unwrap() else {
            panic!("ghcr not found")
        };
        assert_eq!(ghcr.identity_token.as_deref(), Some("tok"));

        assert_eq!(
            lookup(&path, "123.dkr.ecr.eu-west-1.amazonaws.com").unwrap(),
            Lookup::HelperOnly("ecr-login".into())
        );
        assert_eq!(lookup(&path, "quay.io").unwrap(), Lookup::None);
        assert!(!format!("{hub:?}").contains("s3cr"), "password in Debug");
    }

    #[test]
    fn the_registry_is_read_by_the_reference_rules() {
        for (repository, registry) in [
            ("docker.io/library/nginx", "docker.io"),
            ("nginx:1", "docker.io"),
            ("index.docker.io/acme/web", "docker.io"),
            ("localhost:5000/acme/web", "localhost:5000"),
            ("[::1]:5000/app", "[::1]:5000"),
            ("Owner/app", "Owner"),
        ] {
            assert_eq!(
                registry_of(repository).as_deref(),
                Ok(registry),
                "{repository}"
            );
        }
        assert!(registry_of("not a reference").is_err());
    }

    #[test]
    fn bad_files_are_reported_and_missing_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            lookup(&dir.path().join("none.json"), "ghcr.io").unwrap(),
            Lookup::None
        );
        let (_dir, path) = write("{not json");
        assert!(lookup(&path, "ghcr.io")
            .unwrap_err()
            .contains("config file"));
        let (_dir, path) = write(r#"{"auths": {"ghcr.io": {"auth": "%%%"}}}"#);
        assert!(lookup(&path, "ghcr.io").unwrap_err().contains("base64"));
    }
}

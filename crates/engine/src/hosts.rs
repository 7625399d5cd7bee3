//! Which Docker engine(s) a stage deploys to.
//!
//! Engines are named once in `wharf.toml` (`[hosts.<name>]`, a
//! [`HostConfig`] each) and referred to from a project's `[docker]` or
//! `[swarm]` table by `host = "<name>"`, by an engine URL directly
//! (`host = "tcp://10.0.0.5:2375"`), or as a list (`hosts = ["a", "b"]`,
//! deployed one after the other). No `host` at all means the local engine,
//! as the `docker` CLI finds it (`DOCKER_HOST`, else the socket).
//!
//! Everything is checked when the project file loads — an unknown name, a
//! scheme the engine cannot be reached by, a TLS file that is not there —
//! so a typo is reported with the file, not when a push arrives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wharf_plugin_api::SettingsError;

/// The hosts `wharf.toml` defines, by name.
pub type Hosts = BTreeMap<String, HostConfig>;

/// One engine as `[hosts.<name>]` in `wharf.toml` defines it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// `tcp://host:port`, `https://host:port`, `unix:///path` or
    /// `ssh://user@host[:port]`, as `DOCKER_HOST` takes it.
    pub docker_host: String,
    /// TLS: the CA that signed the engine's certificate, and wharf's client
    /// certificate and key (all three, as `docker --tlsverify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// `ssh://` only: the private key to log in with (else ssh's own
    /// configuration and agent decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<PathBuf>,
}

/// TLS client files for a `tcp://` or `https://` engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to reach one engine, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The local engine, found as the `docker` CLI finds it.
    Local,
    Remote(Remote),
}

/// An engine named in configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The host's name in `wharf.toml`, or the URL when written directly.
    pub label: String,
    pub url: String,
    pub tls: Option<Tls>,
    pub ssh_key: Option<PathBuf>,
}

impl Endpoint {
    /// For log lines and errors: `local engine`, `web1 (tcp://…)`.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Local => "the local engine".into(),
            Endpoint::Remote(remote) if remote.label == remote.url => remote.url.clone(),
            Endpoint::Remote(remote) => format!("{} ({})", remote.label, remote.url),
        }
    }

    /// The machine a published port is reached on: the engine URL's host
    /// for `tcp://`, `https://` and `ssh://` engines; `None` (this machine)
    /// for the local engine and `unix://` sockets.
    pub fn machine(&self) -> Option<String> {
        let Endpoint::Remote(remote) = self else {
            return None;
        };
        let (scheme, rest) = remote.url.split_once("://")?;
        if scheme == "unix" {
            return None;
        }
        let authority = rest.split('/').next().unwrap_or(rest);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => authority.split(':').next().unwrap_or(authority),
        };
        Some(host.to_string())
    }
}

impl HostConfig {
    /// Check the URL and the files.
    ///
    /// # Errors
    /// What is wrong, naming the key (`tls_key …`, `ssh_key is for …`).
    pub fn check(&self) -> Result<(), String> {
        let url = self.docker_host.as_str();
        let scheme = check_url(url)?;
        let tls_files = [&self.tls_ca, &self.tls_cert, &self.tls_key];
        let given = tls_files.iter().filter(|f| f.is_some()).count();
        if given != 0 && given != 3 {
            return Err("tls_ca, tls_cert and tls_key go together: give all three or none".into());
        }
        if given == 3 && !matches!(scheme, "tcp" | "https") {
            return Err(format!(
                "TLS files are for tcp:// and https:// engines, not {scheme}://"
            ));
        }
        if scheme == "https" && given == 0 {
            return Err("an https:// engine needs tls_ca, tls_cert and tls_key".into());
        }
        if self.ssh_key.is_some() && scheme != "ssh" {
            return Err(format!("ssh_key is for ssh:// engines, not {scheme}://"));
        }
        // What each file must hold: a swapped cert and key would otherwise
        // surface only as the engine's "BadCertificate" at the first push.
        for (key, path, pem) in [
            ("tls_ca", &self.tls_ca, Some("CERTIFICATE")),
            ("tls_cert", &self.tls_cert, Some("CERTIFICATE")),
            ("tls_key", &self.tls_key, Some("PRIVATE KEY")),
            ("ssh_key", &self.ssh_key, None),
        ] {
            if let Some(path) = path {
                readable_file(key, path, pem)?;
            }
        }
        Ok(())
    }

    /// The engine this definition names, labelled `name`.
    pub fn endpoint(&self, name: &str) -> Endpoint {
        Endpoint::Remote(self.remote(name))
    }

    fn remote(&self, label: &str) -> Remote {
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(Tls {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        Remote {
            label: label.to_string(),
            url: self.docker_host.clone(),
            tls,
            ssh_key: self.ssh_key.clone(),
        }
    }
}

/// The URL's scheme when wharf can reach an engine by it.
fn check_url(url: &str) -> Result<&str, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "'{url}' is not an engine URL (tcp://host:port, https://host:port, unix:///path or ssh://user@host)"
        ));
    };
    match scheme {
        "unix" if rest.starts_with('/') => Ok(scheme),
        "unix" => Err(format!("'{url}': a unix socket path must be absolute")),
        "ssh" if ssh_port(rest) => Err(format!(
            "'{url}': the ssh transport cannot take a port in the URL; give the port in ssh's own configuration (a Host entry with Port in ~/.ssh/config) and write ssh://user@that-host"
        )),
        "tcp" | "http" | "https" | "ssh" if !rest.is_empty() && !rest.starts_with('/') => {
            Ok(scheme)
        }
        "tcp" | "http" | "https" | "ssh" => Err(format!("'{url}' names no host")),
        other => Err(format!(
            "'{url}': wharf reaches engines by tcp://, https://, unix:// or ssh://, not {other}://"
        )),
    }
}

/// Whether an ssh URL's authority names a port (bollard hands the host
/// part to ssh as a host name, so `host:2222` would not resolve).
fn ssh_port(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    match host.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host.contains(':'),
    }
}

/// `path` is absolute and readable, and, with `pem`, holds a PEM block
/// whose label ends so (`CERTIFICATE`, `PRIVATE KEY` for any key type).
fn readable_file(key: &str, path: &Path, pem: Option<&str>) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!(
            "{key} must be an absolute path: {}",
            path.display()
        ));
    }
    let Some(label) = pem else {
        return std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| format!("{key} {}: {e}", path.display()));
    };
    let text = wharf_plugin_api::files::read_limited_to_string(path)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    let holds = text.lines().any(|line| {
        line.strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|found| found.ends_with(label))
    });
    if holds {
        Ok(())
    } else {
        Err(format!(
            "{key} {}: no PEM '{label}' in it (are tls_cert and tls_key swapped?)",
            path.display()
        ))
    }
}

/// Check every `[hosts.<name>]` of `wharf.toml`.
///
/// # Errors
/// The first problem, as `[hosts.<name>]: …`.
pub fn check_all(hosts: &Hosts) -> Result<(), String> {
    for (name, host) in hosts {
        if !is_host_name(name) {
            return Err(format!(
                "[hosts.{name}]: a host name is letters, digits, '-', '_' and '.'"
            ));
        }
        host.check().map_err(|e| format!("[hosts.{name}]: {e}"))?;
    }
    Ok(())
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What a project's table says about its engines: `host`, `hosts`, and the
/// TLS files for a URL written directly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl Targets {
    /// The engines to deploy to, in order.
    ///
    /// # Errors
    /// An unknown host name, a bad URL, missing TLS files, `host` and
    /// `hosts` together, or one host listed twice.
    pub fn resolve(&self, defined: &Hosts) -> Result<Vec<Endpoint>, String> {
        let direct_tls = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        let names: Vec<&str> = match (&self.host, self.hosts.as_slice()) {
            (Some(_), [_, ..]) => {
                return Err("give either host or hosts, not both".into());
            }
            (Some(host), []) => vec![host.as_str()],
            (None, []) if direct_tls => {
                return Err("tls_ca, tls_cert and tls_key need a host URL".into());
            }
            (None, []) => return Ok(vec![Endpoint::Local]),
            (None, hosts) => hosts.iter().map(String::as_str).collect(),
        };
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(names.len());
        for name in names {
            let endpoint = if name.contains("://") {
                let config = HostConfig {
                    docker_host: name.to_string(),
                    tls_ca: self.tls_ca.clone(),
                    tls_cert: self.tls_cert.clone(),
                    tls_key: self.tls_key.clone(),
                    ssh_key: None,
                };
                config.check().map_err(|e| format!("host {name}: {e}"))?;
                config.endpoint(name)
            } else {
                let Some(config) = defined.get(name) else {
                    let known: Vec<&str> = defined.keys().map(String::as_str).collect();
                    return Err(if known.is_empty() {
                        format!(
                            "host '{name}' is not defined: wharf.toml has no [hosts.<name>] tables (or write an engine URL such as tcp://host:2375)"
                        )
                    } else {
                        format!(
                            "host '{name}' is not defined in wharf.toml; defined: {}",
                            known.join(", ")
                        )
                    });
                };
                if direct_tls {
                    return Err(format!(
                        "host '{name}' is defined in wharf.toml: its TLS files belong there, not in the project"
                    ));
                }
                config.endpoint(name)
            };
            if endpoints.contains(&endpoint) {
                return Err(format!("host '{name}' is listed twice"));
            }
            endpoints.push(endpoint);
        }
        Ok(endpoints)
    }
}

/// `wharf.toml`'s `[hosts]` table, read and checked: the daemon keeps it
/// as written, and the plugins that deploy to the engines it names (docker,
/// swarm) read it here.
///
/// # Errors
/// An entry with an unknown key or a wrong type, or that names no engine;
/// the message starts with `[hosts.<name>]`.
pub fn parse_hosts(table: &toml::Table) -> Result<Hosts, SettingsError> {
    let mut hosts = Hosts::new();
    for (name, value) in table {
        let host: HostConfig = value.clone().try_into().map_err(|e: toml::de::Error| {
            SettingsError::new(format!("[hosts.{name}]: {}", e.message().trim()))
        })?;
        hosts.insert(name.clone(), host);
    }
    check_all(&hosts).map_err(SettingsError::new)?;
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defined() -> Hosts {
        let mut hosts = Hosts::new();
        hosts.insert(
            "web1".into(),
            HostConfig {
                docker_host: "tcp://10.0.0.5:2375".into(),
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
                ssh_key: None,
            },
        );
        hosts.insert(
            "sock".into(),
            HostConfig {
                docker_host: "unix:///run/other/docker.sock".into(),
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
                ssh_key: None,
            },
        );
        hosts
    }

    fn targets(text: &str) -> Targets {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn no_host_is_the_local_engine() {
        let endpoints = targets("").resolve(&defined()).unwrap();
        assert_eq!(endpoints, vec![Endpoint::Local]);
        assert_eq!(Endpoint::Local.machine(), None);
    }

    #[test]
    fn names_and_urls_resolve_in_order() {
        let endpoints = targets("hosts = [\"sock\", \"web1\", \"ssh://deploy@[fd00::5]\"]")
            .resolve(&defined())
            .unwrap();
        let labels: Vec<String> = endpoints.iter().map(Endpoint::describe).collect();
        assert_eq!(
            labels,
            [
                "sock (unix:///run/other/docker.sock)",
                "web1 (tcp://10.0.0.5:2375)",
                "ssh://deploy@[fd00::5]"
            ]
        );
        let machines: Vec<Option<String>> = endpoints.iter().map(Endpoint::machine).collect();
        assert_eq!(
            machines,
            [None, Some("10.0.0.5".into()), Some("fd00::5".into())]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let hosts = defined();
        for (text, expected) in [
            ("host = \"web2\"", "'web2' is not defined in wharf.toml; defined: sock, web1"),
            ("host = \"web1\"\nhosts = [\"sock\"]", "either host or hosts"),
            ("hosts = [\"web1\", \"web1\"]", "listed twice"),
            ("host = \"ftp://x\"", "not ftp://"),
            ("host = \"unix://docker.sock\"", "absolute"),
            ("host = \"tcp://\"", "names no host"),
            ("host = \"ssh://deploy@h:2222\"", "cannot take a port"),
            ("host = \"https://h:2376\"", "needs tls_ca"),
            ("tls_ca = \"/etc/ca.pem\"", "need a host URL"),
            (
                "host = \"tcp://h:2376\"\ntls_ca = \"/nonexistent/ca.pem\"\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"",
                "tls_ca /nonexistent/ca.pem",
            ),
            ("host = \"tcp://h:2376\"\ntls_ca = \"/etc/ca.pem\"", "go together"),
            ("host = \"web1\"\ntls_ca = \"/etc/ca.pem\"\ntls_cert = \"/a\"\ntls_key = \"/b\"", "belong there"),
        ] {
            let error = targets(text).resolve(&hosts).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(toml::from_str::<Targets>("hots = [\"a\"]").is_err());
        assert!(check_all(&defined()).is_ok());
        let mut bad = defined();
        bad.get_mut("web1").unwrap().ssh_key = Some("/root/.ssh/id".into());
        assert!(check_all(&bad)
            .unwrap_err()
            .contains("[hosts.web1]: ssh_key"));
    }

    #[test]
    fn tls_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, label: &str| {
            let path = dir.path().join(name);
            std::fs::write(
                &path,
                format!("-----BEGIN {label}-----\nMIIB\n-----END {label}-----\n"),
            )
            .unwrap();
            path
        };
        let config = HostConfig {
            docker_host: "tcp://h:2376".into(),
            tls_ca: Some(file("ca.pem", "CERTIFICATE")),
            tls_cert: Some(file("cert.pem", "CERTIFICATE")),
            tls_key: Some(dir.path().join("missing.pem")),
            ssh_key: None,
        };
        assert!(config.check().unwrap_err().contains("tls_key"));
        let swapped = HostConfig {
            tls_cert: Some(file("key-as-cert.pem", "PRIVATE KEY")),
            tls_key: Some(file("cert-as-key.pem", "CERTIFICATE")),
            ..config.clone()
        };
        let error = swapped.check().unwrap_err();
        assert!(
            error.contains("tls_cert") && error.contains("swapped"),
            "{error}"
        );
        let config = HostConfig {
            tls_key: Some(file("key.pem", "EC PRIVATE KEY")),
            ..config
        };
        assert!(config.check().is_ok(), "{:?}", config.check());
        match config.endpoint("h") {
            Endpoint::Remote(Remote { tls: Some(_), .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

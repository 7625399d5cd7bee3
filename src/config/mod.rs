//! Everything wharf reads from files: the daemon's `wharf.toml`, the
//! generated `settings.toml` (secrets), and the project files.
//!
//! `wharf.toml` is layered with figment in one chain — embedded defaults, then
//! the file, then `WHARF_*` environment variables (`__` for nesting) — and
//! validated in a second step, so every error names the key that is wrong.

pub mod atomic;
pub mod catalog;
pub mod project;
pub mod reload;
pub mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use wharf_docker::hosts::{self, Hosts};

/// Environment variables with the `WHARF_` prefix that are not config keys:
/// the config file's path itself, the test suite's switch, and the docker
/// plugin's test hook (`WHARF_TEST_PAUSE_AT`, see `wharf_docker::replace`).
const ENV_NOT_CONFIG: &[&str] = &["config", "require_docker", "test_pause_at"];

/// The daemon's settings, `wharf.toml`. Every key has a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address and port the HTTP API listens on.
    pub listen: SocketAddr,
    /// Base URL printed for the webhook (what CI calls), e.g. behind a proxy.
    pub public_url: Option<String>,
    pub projects_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Tracing filter when `RUST_LOG` is not set: `info`, `wharf=debug`, …
    pub log_level: String,
    pub webhook: WebhookConfig,
    pub auto_create: AutoCreateConfig,
    pub deploy: DeployConfig,
    pub store: StoreConfig,
    pub notify: Vec<NotifyConfig>,
    /// Docker engines on other machines, by name (`[hosts.<name>]`), for the
    /// `host`/`hosts` keys of `[docker]` and `[swarm]`.
    pub hosts: Hosts,
    /// The route proxy (`wharf proxy`).
    pub proxy: ProxyConfig,
}

/// `[proxy]`: who runs the route proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// When no proxy answers on `<state_dir>/proxy.sock`, `wharf serve`
    /// starts one itself (detached, so it outlives the daemon). `false`
    /// when systemd runs `wharf-proxy.service`.
    pub manage: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Largest accepted body, bytes; more gets 413.
    pub body_limit: u64,
    /// When non-empty, signature headers are verified with this key.
    pub hmac_secret: String,
    /// With `hmac_secret`: reject requests that carry no signature.
    pub require_signature: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoCreateConfig {
    pub enabled: bool,
    /// Image globs (wildmatch, `*` crosses `/`) allowed to create a project.
    pub allow: Vec<String>,
    pub default_stage: String,
    pub deployer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// How many deployments may run at once across all projects and stages.
    pub max_concurrent: usize,
    /// On SIGTERM, how long running deployments may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite `synchronous`: "normal" survives a crash of wharf, "full" also
    /// a power loss (an fsync per accepted webhook).
    pub synchronous: String,
}

impl StoreConfig {
    pub fn synchronous_full(&self) -> bool {
        self.synchronous == "full"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub url: String,
    /// Which final statuses are sent; empty means all.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default = "default_notify_format")]
    pub format: String,
}

fn default_notify_format() -> String {
    "json".into()
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            projects_dir: PathBuf::from("projects"),
            state_dir: PathBuf::from("state"),
            log_level: "info".into(),
            webhook: WebhookConfig {
                body_limit: 64 * 1024,
                hmac_secret: String::new(),
                require_signature: false,
            },
            auto_create: AutoCreateConfig {
                enabled: true,
                allow: vec!["*".into()],
                default_stage: "dev".into(),
                deployer: "docker".into(),
            },
            deploy: DeployConfig {
                max_concurrent: 4,
                shutdown_grace: Duration::from_secs(30),
            },
            store: StoreConfig {
                synchronous: "normal".into(),
            },
            notify: Vec::new(),
            hosts: Hosts::new(),
            proxy: ProxyConfig { manage: true },
        }
    }
}

/// Why the daemon's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl DaemonConfig {
    /// Load `wharf.toml` (when `file` is given) over the embedded defaults,
    /// then `WHARF_*` environment variables over both; resolve relative paths
    /// against the config file's folder (else the working directory).
    ///
    /// # Errors
    /// The file is missing or malformed (with its line), a key is unknown or
    /// has the wrong type, or a value fails validation.
    pub fn load(file: Option<&Path>) -> Result<DaemonConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(DaemonConfig::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed("WHARF_")
            .filter(|key| {
                !ENV_NOT_CONFIG
                    .iter()
                    .any(|skip| key.as_str().eq_ignore_ascii_case(skip))
            })
            .split("__");
        let mut config: DaemonConfig = figment.merge(env).extract().map_err(Box::new)?;
        let base = file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        config.projects_dir = base.join(&config.projects_dir);
        config.state_dir = base.join(&config.state_dir);
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.webhook.body_limit == 0 {
            return invalid("webhook.body_limit", "must be more than 0 bytes");
        }
        if self.webhook.require_signature && self.webhook.hmac_secret.is_empty() {
            return invalid(
                "webhook.require_signature",
                "needs webhook.hmac_secret to verify signatures with",
            );
        }
        if self.deploy.max_concurrent == 0 {
            return invalid("deploy.max_concurrent", "must be at least 1");
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid("public_url", "must start with http:// or https://");
            }
        }
        if !project::is_valid_name(&self.auto_create.default_stage) {
            return invalid(
                "auto_create.default_stage",
                "must be letters, digits, '.', '_' or '-'",
            );
        }
        if !matches!(self.store.synchronous.as_str(), "normal" | "full") {
            return invalid("store.synchronous", "must be \"normal\" or \"full\"");
        }
        if let Err(message) = hosts::check_all(&self.hosts) {
            return Err(ConfigError::Invalid {
                key: "hosts",
                message,
            });
        }
        for (index, notify) in self.notify.iter().enumerate() {
            if !(notify.url.starts_with("http://") || notify.url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "notify.url",
                    message: format!("entry {}: must be an http(s) URL", index + 1),
                });
            }
            if !matches!(notify.format.as_str(), "json" | "slack") {
                return Err(ConfigError::Invalid {
                    key: "notify.format",
                    message: format!("entry {}: must be \"json\" or \"slack\"", index + 1),
                });
            }
            if let Some(event) = notify
                .events
                .iter()
                .find(|e| !crate::deploy::store::Status::parse(e).is_some_and(|s| s.is_final()))
            {
                return Err(ConfigError::Invalid {
                    key: "notify.events",
                    message: format!(
                        "entry {}: '{event}' is not a final status (succeeded, failed, rejected, superseded, interrupted)",
                        index + 1
                    ),
                });
            }
        }
        Ok(())
    }

    /// The base URL the webhook path hangs off: `public_url`, else the
    /// daemon's local address.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => self.base_url_for_local(bound),
        }
    }

    /// How a client on this machine reaches the daemon: the listen address,
    /// with a wildcard address shown as loopback.
    pub fn base_url_for_local(&self, bound: SocketAddr) -> String {
        let shown = if bound.ip().is_unspecified() {
            let loopback: std::net::IpAddr = if bound.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(loopback, bound.port())
        } else {
            bound
        };
        format!("http://{shown}")
    }

    /// The full webhook URL for `secret`.
    pub fn webhook_url(&self, bound: SocketAddr, secret: &str) -> String {
        format!("{}/api/webhook/{secret}", self.base_url(bound))
    }
}

/// Humantime durations ("30s", "5m") in config files.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "'{text}' is not a duration like \"30s\" or \"5m\": {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_embedded_defaults() {
        let config = DaemonConfig::load(None).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.projects_dir, PathBuf::from("projects"));
        assert_eq!(config.webhook.body_limit, 65536);
        assert!(config.auto_create.enabled);
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        std::fs::write(&file, "projects_dir = \"p\"\nstate_dir = \"/var/lib/x\"\n").unwrap();
        let config = DaemonConfig::load(Some(&file)).unwrap();
        assert_eq!(config.projects_dir, dir.path().join("p"));
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/x"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        std::fs::write(&file, "listn = \"127.0.0.1:1\"\n").unwrap();
        let error = DaemonConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(error.contains("listn"), "{error}");

        std::fs::write(&file, "[webhook]\nrequire_signature = true\n").unwrap();
        let error = DaemonConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(error.contains("hmac_secret"), "{error}");

        std::fs::write(&file, "[deploy]\nshutdown_grace = \"soon\"\n").unwrap();
        let error = DaemonConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(error.contains("soon"), "{error}");

        std::fs::write(&file, "[hosts.web1]\ndocker_host = \"10.0.0.5:2375\"\n").unwrap();
        let error = DaemonConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(
            error.starts_with("hosts: [hosts.web1]: '10.0.0.5:2375' is not an engine URL"),
            "{error}"
        );
        std::fs::write(&file, "[hosts.web1]\ndocker_hots = \"tcp://h:2375\"\n").unwrap();
        let error = DaemonConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(error.contains("docker_hots"), "{error}");
    }

    #[test]
    fn hosts_are_named_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        std::fs::write(
            &file,
            "[hosts.web1]\ndocker_host = \"tcp://10.0.0.5:2375\"\n\n[hosts.local]\ndocker_host = \"unix:///var/run/docker.sock\"\n",
        )
        .unwrap();
        let config = DaemonConfig::load(Some(&file)).unwrap();
        assert_eq!(config.hosts.keys().collect::<Vec<_>>(), ["local", "web1"]);
        assert_eq!(config.hosts["web1"].docker_host, "tcp://10.0.0.5:2375");
    }
}

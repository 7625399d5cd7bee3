//! Everything wharf reads from files: the daemon's `wharf.toml`, the
//! generated `settings.toml` (secrets), and the project files.
//!
//! `wharf.toml` is layered with figment in one chain — embedded defaults, then
//! the file, then `WHARF_*` environment variables (`__` for nesting) — and
//! validated in a second step, so every error names the key that is wrong.

pub mod atomic;
pub mod catalog;
pub mod locate;
pub mod project;
pub mod reload;
pub mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
use serde::{Deserialize, Serialize};

/// Environment variables with the `WHARF_` prefix that are not config keys:
/// the config file's path itself, the test suite's switch, and the docker
/// plugin's test hook (`WHARF_TEST_PAUSE_AT`, see the docker plugin's `replace` module).
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
    /// `host`/`hosts` keys of `[docker]` and `[swarm]`. Kept as written:
    /// the plugins that use it read it ([`crate::plugins::try_registry`]),
    /// and a table they refuse is refused with the file's line here.
    pub hosts: toml::Table,
    /// The route proxy (`wharf proxy`).
    pub proxy: ProxyConfig,
    /// Registries polling may reach over plain `http://` although they are
    /// not loopback (`host:port`, or `host` for every port).
    #[serde(default)]
    pub insecure_registries: Vec<String>,
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
    #[serde(with = "wharf_plugin_api::duration")]
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
            hosts: toml::Table::new(),
            proxy: ProxyConfig { manage: true },
            insecure_registries: Vec::new(),
        }
    }
}

/// Why the daemon's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value from the environment (`WHARF_*`) is wrong.
    #[error("{0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Something in `wharf.toml` itself, where it is written.
    #[error("{}:{line}: {message}", file.display())]
    At {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// A value (from the environment, or the defaults under it) fails
    /// validation. `entry` is the index of the `[[notify]]` entry meant.
    #[error("{key}: {message}")]
    Invalid {
        key: &'static str,
        entry: Option<usize>,
        message: String,
    },
}

impl DaemonConfig {
    /// Load `wharf.toml` (when `file` is given) over the embedded defaults,
    /// then `WHARF_*` environment variables over both; resolve relative paths
    /// against the config file's folder (else the working directory).
    ///
    /// # Errors
    /// The file is missing, unreadable or malformed, a key is unknown or has
    /// the wrong type, or a value fails validation: see
    /// [`DaemonConfig::from_toml`].
    pub fn load(file: Option<&Path>) -> Result<DaemonConfig, ConfigError> {
        let Some(file) = file else {
            let config: DaemonConfig = layers(None).extract().map_err(Box::new)?;
            config.validate()?;
            return Ok(config);
        };
        if !file.is_file() {
            return Err(ConfigError::MissingFile(file.to_path_buf()));
        }
        let read = |source| ConfigError::Read {
            path: file.to_path_buf(),
            source,
        };
        let bytes = wharf_plugin_api::files::read_limited(file).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let before = String::from_utf8_lossy(e.as_bytes().get(..valid).unwrap_or_default());
            ConfigError::At {
                file: file.to_path_buf(),
                line: settings::line_of(&before, valid),
                message: "not UTF-8 text".into(),
            }
        })?;
        Self::from_toml(file, &text)
    }

    /// The configuration `text`, the contents of the file `path`, gives:
    /// embedded defaults, then `text`, then `WHARF_*` environment variables;
    /// relative paths resolve against `path`'s folder. [`DaemonConfig::load`]
    /// is this after reading the file, so checking a text checks what the
    /// daemon would do with it.
    ///
    /// # Errors
    /// [`ConfigError::At`] (`file:line: reason`) for a syntax error, an
    /// unknown key, a wrong type or a value failing validation in `text`;
    /// [`ConfigError::Figment`] or [`ConfigError::Invalid`] when the wrong
    /// value comes from the environment.
    pub fn from_toml(path: &Path, text: &str) -> Result<DaemonConfig, ConfigError> {
        // Messages echo the operator's values, which may hold control chars.
        let at = |line, message: String| ConfigError::At {
            file: path.to_path_buf(),
            line,
            message: locate::escape_controls(&message),
        };
        // figment's own TOML errors carry no line: parse once here for it.
        if let Err(e) = toml::from_str::<toml::Table>(text) {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            return Err(at(
                settings::line_of(text, offset),
                locate::toml_reason(text, &e),
            ));
        }
        let mut config: DaemonConfig = layers(Some(text))
            .extract()
            .map_err(|e| locate_figment_error(e, path, text))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.projects_dir = base.join(&config.projects_dir);
        config.state_dir = base.join(&config.state_dir);
        config.validate().map_err(|e| match e {
            ConfigError::Invalid {
                key,
                entry,
                message,
            } => {
                let mut keys: Vec<String> = key.split('.').map(str::to_string).collect();
                if let Some(entry) = entry {
                    keys.insert(1, entry.to_string());
                }
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                match locate::key_line(text, &keys) {
                    Some(line) => at(line, format!("{key}: {message}")),
                    None => ConfigError::Invalid {
                        key,
                        entry,
                        message,
                    },
                }
            }
            other => other,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                entry: None,
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
        if let Err(refused) = crate::plugins::try_registry(&self.hosts) {
            return Err(ConfigError::Invalid {
                key: "hosts",
                entry: None,
                message: refused.message,
            });
        }
        for (index, notify) in self.notify.iter().enumerate() {
            if !(notify.url.starts_with("http://") || notify.url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "notify.url",
                    entry: Some(index),
                    message: format!("entry {}: must be an http(s) URL", index + 1),
                });
            }
            if !matches!(notify.format.as_str(), "json" | "slack") {
                return Err(ConfigError::Invalid {
                    key: "notify.format",
                    entry: Some(index),
                    message: format!("entry {}: must be \"json\" or \"slack\"", index + 1),
                });
            }
            if let Some(event) = notify
                .events
                .iter()
                .find(|e| !crate::deploy::status::Status::parse(e).is_some_and(|s| s.is_final()))
            {
                return Err(ConfigError::Invalid {
                    key: "notify.events",
                    entry: Some(index),
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

/// The figment chain: embedded defaults, then `text` (`wharf.toml`'s
/// contents) when there is one, then `WHARF_*` environment variables.
fn layers(text: Option<&str>) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(DaemonConfig::default()));
    if let Some(text) = text {
        figment = figment.merge(Toml::string(text));
    }
    let env = Env::prefixed("WHARF_")
        .filter(|key| {
            !ENV_NOT_CONFIG
                .iter()
                .any(|skip| key.as_str().eq_ignore_ascii_case(skip))
        })
        .split("__");
    figment.merge(env)
}

/// A figment error about a value of `text` as `file:line: key: reason`; one
/// about an environment variable as figment words it (it names the variable).
fn locate_figment_error(error: figment::Error, path: &Path, text: &str) -> ConfigError {
    let from_text = Toml::string("").metadata().name;
    if error.metadata.as_ref().is_some_and(|m| m.name != from_text) {
        return ConfigError::Figment(Box::new(error));
    }
    let mut keys: Vec<&str> = error.path.iter().map(String::as_str).collect();
    if let figment::error::Kind::UnknownField(field, _) = &error.kind {
        keys.push(field);
    }
    let reason = one_line(&error.kind.to_string());
    let message = if error.path.is_empty() {
        reason
    } else {
        format!("{}: {reason}", error.path.join("."))
    };
    // The key path and the reason may echo the operator's keys and values.
    ConfigError::At {
        file: path.to_path_buf(),
        line: locate::key_line(text, &keys).unwrap_or(1),
        message: locate::escape_controls(&message),
    }
}

/// A parser's message, which may run over several lines, as one line.
fn one_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
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
            error.contains(":1: hosts: [hosts.web1]: '10.0.0.5:2375' is not an engine URL"),
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
        assert_eq!(
            config.hosts["web1"]["docker_host"].as_str(),
            Some("tcp://10.0.0.5:2375")
        );
    }

    /// Every rejection of the file's text names the file and the line to fix.
    #[test]
    fn errors_in_the_file_name_its_line() {
        let file = Path::new("/etc/wharf/wharf.toml");
        let cases = [
            (
                "listen = \"127.0.0.1:1\"\n[webhook]\nbody_limit = \n",
                3,
                "string",
            ),
            ("listen = \"127.0.0.1:1\"\n\nlistn = 1\n", 3, "listn"),
            (
                "[webhook]\nhmac_secret = \"k\"\nbody_limit = \"big\"\n",
                3,
                "webhook.body_limit: invalid type",
            ),
            (
                "[webhook]\n\nbody_limit = 0\n",
                3,
                "webhook.body_limit: must be more than 0",
            ),
            (
                "# hi\n[webhook]\nrequire_signature = true\n",
                3,
                "needs webhook.hmac_secret",
            ),
            (
                "[[notify]]\nurl = \"http://a\"\n[[notify]]\nurl = \"ftp://b\"\n",
                4,
                "notify.url: entry 2",
            ),
            (
                "[[notify]]\nurl = \"http://a\"\n\n[[notify]]\nurl = \"http://b\"\nformat = 1\n",
                6,
                "notify.1.format",
            ),
            (
                "[auto_create]\nallow = [\"*\", 5]\n",
                2,
                "auto_create.allow.1",
            ),
            (
                "[store]\n\"sync\\rhronous\" = 1\n",
                2,
                "found `sync\\rhronous`",
            ),
            (
                "\n[deploy]\nshutdown_grace = \"soon\"\n",
                3,
                "'soon' is not a duration",
            ),
            (
                "log_level = \"info\"\n[store]\nsynchronous =",
                3,
                "not valid TOML at column 14",
            ),
            (
                "\n\n[hosts.web1]\ndocker_host = \"10.0.0.5:2375\"\n",
                3,
                "hosts: [hosts.web1]",
            ),
        ];
        for (text, line, needle) in cases {
            let error = DaemonConfig::from_toml(file, text).unwrap_err().to_string();
            let prefix = format!("/etc/wharf/wharf.toml:{line}: ");
            assert!(error.starts_with(&prefix), "{text:?}: {error}");
            assert!(error.contains(needle), "{text:?}: {error}");
            assert!(!error.contains(char::is_control), "{text:?}: {error:?}");
        }
    }

    #[test]
    fn load_is_from_toml_on_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        std::fs::write(&file, "log_level = \"debug\"\n[webhook]\nbody_limit = 0\n").unwrap();
        let error = DaemonConfig::load(Some(&file)).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "{}:3: webhook.body_limit: must be more than 0 bytes",
                file.display()
            )
        );
        std::fs::write(&file, b"log_level = \"debug\"\n# caf\xe9\n").unwrap();
        let error = DaemonConfig::load(Some(&file)).unwrap_err().to_string();
        assert_eq!(error, format!("{}:2: not UTF-8 text", file.display()));
    }
}

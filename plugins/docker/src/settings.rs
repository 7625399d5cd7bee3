//! `[docker]` as written in a project file, checked when the file loads.
//!
//! Parsing is strict (`deny_unknown_fields`) and every check happens here, so
//! a typo or an impossible combination is reported with the project file,
//! not when a push arrives. The deploy path only ever sees a [`Plan`]: the
//! table turned into values the engine takes (bytes, nano-CPUs, port maps).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wharf_plugin_api::ports::parse_port;
pub use wharf_plugin_api::ports::PortSpec;
#[cfg(test)]
use wharf_plugin_api::routes::RouteMode;
use wharf_plugin_api::routes::{Claim, RawRoute};
pub use wharf_plugin_api::routes::{Route, DEFAULT_DRAIN};
use wharf_plugin_api::{Settings, SettingsError};

use wharf_engine::hosts::{Endpoint, Hosts, Targets};
use wharf_engine::values::{environment, own_labels, Scalar};

/// How long a container must stay up when nothing else says it is healthy.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How long a new container may take to become healthy.
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `docker stop` waits before SIGKILL, as Docker's own default.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_KEEP_IMAGES: usize = 3;
/// The most a whole pull may take: generous for a large image on a slow
/// link, yet a stalled registry frees the stage's slot in the end.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The longest gap between two events of a pull (the engine reports layer
/// progress several times a second while bytes arrive): a registry silent
/// that long has stalled.
pub const DEFAULT_PULL_IDLE_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// The engine refuses memory limits under 6 MiB.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, Scalar>,
    #[serde(default)]
    env_file: Option<PathBuf>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    networks: BTreeMap<String, RawNetwork>,
    #[serde(default)]
    restart: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    memory: Option<Scalar>,
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    health: Option<RawHealth>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    keep_images: Option<usize>,
    #[serde(default)]
    pull: Option<bool>,
    #[serde(default)]
    stop_timeout: Option<String>,
    #[serde(default)]
    pull_timeout: Option<Scalar>,
    #[serde(default)]
    pull_idle_timeout: Option<Scalar>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    tls_ca: Option<PathBuf>,
    #[serde(default)]
    tls_cert: Option<PathBuf>,
    #[serde(default)]
    tls_key: Option<PathBuf>,
    #[serde(default)]
    route: Option<RawRoute>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(default)]
    http: Option<RawHttp>,
    #[serde(default)]
    grace: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    path: Option<String>,
    port: u16,
    #[serde(default)]
    status: Option<u16>,
}

/// Which container goes first during a replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Stop the old container, then start the new one: the only choice when
    /// both would bind the same host port. A short downtime.
    StopFirst,
    /// Start the new container next to the old one and stop the old only once
    /// the new is healthy: no downtime, but no fixed host ports.
    StartFirst,
}

/// The HTTP health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub path: String,
    /// The container's port; wharf finds where it is published.
    pub port: u16,
    pub status: u16,
}

/// When a new container counts as healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub http: Option<HttpCheck>,
    /// With neither a HEALTHCHECK nor an HTTP check: how long it must keep
    /// running (without restarting) to count as healthy.
    pub grace: Duration,
    /// The most a health gate may take before the deployment fails.
    pub timeout: Duration,
}

/// The restart policy, as the engine names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    pub name: String,
    pub max_retries: Option<i64>,
}

/// `[docker]`, validated and resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `None`: `wharf-<project>-<stage>`.
    pub name: Option<String>,
    pub ports: Vec<PortSpec>,
    pub env: BTreeMap<String, String>,
    pub env_file: Option<PathBuf>,
    /// `source:target[:options]`, as Docker's `-v`.
    pub volumes: Vec<String>,
    /// Networks by name with their aliases; `primary` is joined at creation,
    /// the others right after (API 1.41 takes one network at creation).
    pub networks: BTreeMap<String, Vec<String>>,
    pub primary_network: Option<String>,
    pub restart: Restart,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub health: Health,
    pub strategy: Strategy,
    pub keep_images: usize,
    pub pull: bool,
    pub stop_timeout: Duration,
    /// The most the whole pull may take.
    pub pull_timeout: Duration,
    /// The longest gap between two events of the pull stream.
    pub pull_idle_timeout: Duration,
    /// The engines to deploy to, one after the other; at least one.
    pub engines: Vec<Endpoint>,
    /// `[docker.route]`, when the stage keeps a stable address.
    pub route: Option<Route>,
}

impl Plan {
    /// The wharf host's addresses this stage takes: its route's `listen`,
    /// and the fixed host ports it publishes on the local engine (a remote
    /// engine's ports are that host's).
    pub fn claims(&self) -> Vec<Claim> {
        let mut claims: Vec<Claim> = self.route.iter().map(|r| Claim::Route(r.listen)).collect();
        if self.engines.iter().any(|e| matches!(e, Endpoint::Local)) {
            claims.extend(
                self.ports
                    .iter()
                    .filter(|p| p.protocol == "tcp")
                    .filter_map(PortSpec::fixed_address)
                    .map(Claim::Published),
            );
        }
        claims
    }

    /// Parse and check a settings table; `hosts` are the engines
    /// `wharf.toml` names.
    ///
    /// # Errors
    /// A message that starts with `[docker]` and names the key.
    pub fn parse(settings: &Settings, hosts: &Hosts) -> Result<Plan, SettingsError> {
        let raw: Raw = Settings::try_into(settings.clone())
            .map_err(|e| SettingsError::new(format!("[docker]: {}", e.message().trim())))?;
        let fail = |message: String| Err(SettingsError::new(format!("[docker] {message}")));

        if let Some(name) = &raw.name {
            if !is_container_name(name) {
                return fail(format!(
                    "name '{name}' is not a container name: letters, digits, '_', '.', '-', starting with a letter or digit"
                ));
            }
        }
        let mut ports = Vec::new();
        for text in &raw.ports {
            match parse_port(text) {
                Ok(port) => ports.push(port),
                Err(why) => return fail(format!("ports: '{text}': {why}")),
            }
        }
        let env = match environment(&raw.env) {
            Ok(env) => env,
            Err(why) => return fail(why),
        };
        if let Some(file) = &raw.env_file {
            if !file.is_absolute() {
                return fail(format!(
                    "env_file '{}' must be an absolute path (it is read by wharf at each deployment)",
                    file.display()
                ));
            }
        }
        for volume in &raw.volumes {
            if let Err(why) = check_volume(volume) {
                return fail(format!("volumes: '{volume}': {why}"));
            }
        }
        let mut networks: BTreeMap<String, Vec<String>> = raw
            .networks
            .iter()
            .map(|(name, n)| (name.clone(), n.aliases.clone()))
            .collect();
        if let Some(network) = &raw.network {
            networks.entry(network.clone()).or_default();
        }
        for (name, aliases) in &networks {
            if name.is_empty() {
                return fail("network names must not be empty".into());
            }
            if aliases.iter().any(|a| a.is_empty()) {
                return fail(format!("networks.{name}: an alias is empty"));
            }
        }
        let primary_network = raw
            .network
            .clone()
            .or_else(|| networks.keys().next().cloned());
        let host_mode = networks.contains_key("host");
        if host_mode && networks.len() > 1 {
            return fail("network 'host' cannot be combined with other networks".into());
        }
        if host_mode && !ports.is_empty() {
            return fail(
                "ports cannot be published with network 'host' (the container uses the host's ports directly)"
                    .into(),
            );
        }
        let restart = match parse_restart(raw.restart.as_deref().unwrap_or("unless-stopped")) {
            Ok(restart) => restart,
            Err(why) => return fail(format!("restart: {why}")),
        };
        for (key, list) in [("command", &raw.command), ("entrypoint", &raw.entrypoint)] {
            if list.as_ref().is_some_and(|l| l.is_empty()) {
                return fail(format!(
                    "{key} is empty: leave it out to use the image's own, or give the program and its arguments"
                ));
            }
        }
        let memory = match &raw.memory {
            None => None,
            Some(value) => match parse_memory(&value.to_text()) {
                Ok(bytes) if bytes < MIN_MEMORY => {
                    return fail(format!(
                        "memory '{}' is below the engine's minimum of 6m",
                        value.to_text()
                    ))
                }
                Ok(bytes) => Some(bytes),
                Err(why) => return fail(format!("memory '{}': {why}", value.to_text())),
            },
        };
        let nano_cpus = match raw.cpus {
            None => None,
            Some(cpus) if cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0 => {
                Some((cpus * 1e9).round() as i64)
            }
            Some(cpus) => return fail(format!("cpus = {cpus}: must be a number above 0")),
        };
        if let Err(why) = own_labels(&raw.labels) {
            return fail(why);
        }
        let health = match parse_health(raw.health.as_ref()) {
            Ok(health) => health,
            Err(why) => return fail(format!("health: {why}")),
        };
        let route = match &raw.route {
            None => None,
            Some(route) => match parse_route(route, &ports) {
                Ok(route) => Some(route),
                Err(why) => return fail(format!("route: {why}")),
            },
        };
        if route.is_some() {
            if host_mode {
                return fail(
                    "route: network 'host' publishes no port for the proxy to reach".into(),
                );
            }
            if raw.strategy.as_deref() == Some("stop-first") {
                return fail("route: a route switches from a running old container to a healthy new one, so strategy must be \"start-first\" (the default with a route)".into());
            }
            if raw.host.is_some() || !raw.hosts.is_empty() {
                return fail("route: the proxy runs on the wharf host and reaches containers on its loopback, so a stage with a route deploys to the local engine only (no host/hosts); put a proxy such as Caddy or nginx in front of several hosts' routes instead".into());
            }
        }
        let strategy = match raw.strategy.as_deref() {
            None if route.is_some() => Strategy::StartFirst,
            None | Some("stop-first") => Strategy::StopFirst,
            Some("start-first") => Strategy::StartFirst,
            Some(other) => {
                return fail(format!(
                    "strategy '{other}': expected \"stop-first\" or \"start-first\""
                ))
            }
        };
        if strategy == Strategy::StartFirst {
            if let Some(fixed) = ports.iter().find(|p| p.host_port.is_some()) {
                return fail(format!(
                    "strategy \"start-first\" runs the old and the new container side by side, so they cannot both bind host port {}: use \"stop-first\", or publish without a host port",
                    fixed.host_port.unwrap_or_default()
                ));
            }
        }
        let stop_timeout = match &raw.stop_timeout {
            None => DEFAULT_STOP_TIMEOUT,
            Some(text) => match parse_duration("stop_timeout", text) {
                Ok(timeout) => timeout,
                Err(why) => return fail(why),
            },
        };
        let pull_timeout = match positive_duration(
            "pull_timeout",
            raw.pull_timeout.as_ref(),
            DEFAULT_PULL_TIMEOUT,
        ) {
            Ok(timeout) => timeout,
            Err(why) => return fail(why),
        };
        let pull_idle_timeout = match positive_duration(
            "pull_idle_timeout",
            raw.pull_idle_timeout.as_ref(),
            DEFAULT_PULL_IDLE_TIMEOUT,
        ) {
            Ok(timeout) => timeout,
            Err(why) => return fail(why),
        };
        let targets = Targets {
            host: raw.host,
            hosts: raw.hosts,
            tls_ca: raw.tls_ca,
            tls_cert: raw.tls_cert,
            tls_key: raw.tls_key,
        };
        let engines = match targets.resolve(hosts) {
            Ok(engines) => engines,
            Err(why) => return fail(why),
        };
        Ok(Plan {
            name: raw.name,
            ports,
            env,
            env_file: raw.env_file,
            volumes: raw.volumes,
            networks,
            primary_network,
            restart,
            command: raw.command,
            entrypoint: raw.entrypoint,
            memory,
            nano_cpus,
            labels: raw.labels,
            health,
            strategy,
            keep_images: raw.keep_images.unwrap_or(DEFAULT_KEEP_IMAGES),
            pull: raw.pull.unwrap_or(true),
            stop_timeout,
            pull_timeout,
            pull_idle_timeout,
            engines,
            route,
        })
    }

    /// The container's name for a project and stage.
    pub fn container_name(&self, project: &str, stage: &str) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("wharf-{project}-{stage}"))
    }
}

/// `[docker.route]`, checked against the stage's own `ports`.
fn parse_route(raw: &RawRoute, ports: &[PortSpec]) -> Result<Route, String> {
    let route = Route::parse(raw)?;
    if let Some(clash) = ports.iter().find(|p| p.claims(route.listen)) {
        return Err(format!(
            "listen {} is also published by ports '{}:{}': the proxy owns the route's address; drop that ports entry",
            route.listen,
            clash.host_port.unwrap_or_default(),
            clash.container_port
        ));
    }
    Ok(route)
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn is_container_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 200
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    wharf_plugin_api::duration::parse(text).map_err(|e| format!("{key} {e}"))
}

/// A timeout key: its default when absent. Zero would fail every attempt,
/// and a bare number has no unit, so both are refused, naming the key.
fn positive_duration(
    key: &str,
    value: Option<&Scalar>,
    default: Duration,
) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(Scalar::Text(text)) => match parse_duration(key, text)? {
            zero if zero.is_zero() => Err(format!("{key} must be more than 0")),
            timeout => Ok(timeout),
        },
        Some(other) => Err(format!(
            "{key} = {}: write a duration with its unit, like \"10m\" or \"30s\"",
            other.to_text()
        )),
    }
}

fn parse_health(raw: Option<&RawHealth>) -> Result<Health, String> {
    let Some(raw) = raw else {
        return Ok(Health {
            http: None,
            grace: DEFAULT_GRACE,
            timeout: DEFAULT_HEALTH_TIMEOUT,
        });
    };
    let grace = match &raw.grace {
        Some(text) => parse_duration("grace", text)?,
        None => DEFAULT_GRACE,
    };
    let timeout = match &raw.timeout {
        Some(text) => parse_duration("timeout", text)?,
        None => DEFAULT_HEALTH_TIMEOUT,
    };
    if timeout.is_zero() {
        return Err("timeout must be more than 0".into());
    }
    if grace > timeout {
        return Err(format!(
            "grace ({}) is longer than timeout ({}): the check could never pass",
            wharf_plugin_api::duration::format(grace),
            wharf_plugin_api::duration::format(timeout)
        ));
    }
    let http = match &raw.http {
        None => None,
        Some(http) => {
            let path = http.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(format!(
                    "http.path '{path}' must start with '/' and contain no spaces or control characters"
                ));
            }
            if http.port == 0 {
                return Err("http.port must be the container's port (1-65535)".into());
            }
            let status = http.status.unwrap_or(200);
            if !(100..=599).contains(&status) {
                return Err(format!("http.status {status} is not an HTTP status"));
            }
            Some(HttpCheck {
                path,
                port: http.port,
                status,
            })
        }
    };
    Ok(Health {
        http,
        grace,
        timeout,
    })
}

/// Docker's `-p`: `[ip:][host_port:]container_port[/protocol]`, with an IPv6
/// address in brackets. Port ranges are not supported.
/// `source:target[:options]`: a named volume or an absolute host path, an
/// absolute target, and Docker's bind options.
fn check_volume(text: &str) -> Result<(), String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [source, target] => (*source, *target, None),
        [source, target, options] => (*source, *target, Some(*options)),
        _ => return Err("expected source:target[:options]".into()),
    };
    if source.is_empty() {
        return Err("the source is empty".into());
    }
    if !source.starts_with('/')
        && !source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "source '{source}' is neither an absolute host path nor a volume name"
        ));
    }
    if !target.starts_with('/') {
        return Err(format!("target '{target}' must be an absolute path"));
    }
    if let Some(options) = options {
        const KNOWN: &[&str] = &[
            "ro",
            "rw",
            "z",
            "Z",
            "nocopy",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "private",
            "rprivate",
            "consistent",
            "cached",
            "delegated",
        ];
        if let Some(bad) = options.split(',').find(|o| !KNOWN.contains(o)) {
            return Err(format!("unknown option '{bad}' (ro, rw, z, Z, nocopy, …)"));
        }
    }
    Ok(())
}

fn parse_restart(text: &str) -> Result<Restart, String> {
    let (name, count) = match text.split_once(':') {
        Some((name, count)) => (name, Some(count)),
        None => (text, None),
    };
    match (name, count) {
        ("no" | "always" | "unless-stopped", None) | ("on-failure", None) => Ok(Restart {
            name: name.to_string(),
            max_retries: None,
        }),
        ("on-failure", Some(count)) => match count.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Restart {
                name: name.to_string(),
                max_retries: Some(n),
            }),
            _ => Err(format!("'{text}': the retry count must be a number")),
        },
        _ => Err(format!(
            "'{text}': expected \"no\", \"always\", \"unless-stopped\", \"on-failure\" or \"on-failure:N\""
        )),
    }
}

/// Docker's memory syntax: a number with an optional unit b, k, m, g (powers
/// of 1024, case-insensitive, an optional trailing `b`/`ib`).
fn parse_memory(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| "expected a size like \"512m\" or \"1g\"".to_string())?;
    let factor: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown unit '{other}' (b, k, m, g)")),
    };
    let bytes = value * factor;
    if !bytes.is_finite() || bytes < 1.0 || bytes > i64::MAX as f64 {
        return Err("out of range".into());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<Plan, SettingsError> {
        Plan::parse(&text.parse::<Settings>().unwrap(), &Hosts::new())
    }

    #[test]
    fn an_empty_table_gets_safe_defaults() {
        let plan = plan("").unwrap();
        assert_eq!(plan.container_name("web", "prod"), "wharf-web-prod");
        assert_eq!(plan.restart.name, "unless-stopped");
        assert_eq!(plan.strategy, Strategy::StopFirst);
        assert_eq!(plan.keep_images, 3);
        assert!(plan.pull);
        assert_eq!(plan.health.grace, Duration::from_secs(5));
        assert_eq!(plan.health.timeout, Duration::from_secs(60));
        assert!(plan.ports.is_empty() && plan.networks.is_empty());
        assert_eq!(plan.pull_timeout, Duration::from_secs(600));
        assert_eq!(plan.pull_idle_timeout, Duration::from_secs(120));
    }

    #[test]
    fn pull_timeouts_are_durations_above_zero() {
        let both = plan("pull_timeout = \"30m\"\npull_idle_timeout = \"2s\"").unwrap();
        assert_eq!(both.pull_timeout, Duration::from_secs(1800));
        assert_eq!(both.pull_idle_timeout, Duration::from_secs(2));
        // One without the other keeps the other's default.
        let idle = plan("pull_idle_timeout = \"45s\"").unwrap();
        assert_eq!(idle.pull_timeout, Duration::from_secs(600));
        assert_eq!(idle.pull_idle_timeout, Duration::from_secs(45));
        for (text, needle) in [
            (
                "pull_timeout = \"soon\"",
                "pull_timeout 'soon' is not a duration",
            ),
            ("pull_timeout = \"0s\"", "pull_timeout must be more than 0"),
            ("pull_timeout = 600", "pull_timeout = 600: write a duration"),
            (
                "pull_idle_timeout = \"2 minutes and a bit\"",
                "pull_idle_timeout '2 minutes and a bit'",
            ),
            (
                "pull_idle_timeout = \"0ms\"",
                "pull_idle_timeout must be more than 0",
            ),
        ] {
            let error = plan(text).expect_err(text);
            assert!(error.message.starts_with("[docker]"), "{text}: {error}");
            assert!(error.message.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn a_full_table_resolves() {
        let plan = plan(
            r#"
name = "web"
ports = ["127.0.0.1:8080:80", "8443:443/TCP", "53/udp", "[::1]:9000:9000", "127.0.0.1::81"]
env = { RUST_LOG = "info", PORT = 8080, DEBUG = false }
env_file = "/etc/web.env"
volumes = ["/srv/web:/data:ro", "cache:/cache"]
network = "backend"
networks = { frontend = { aliases = ["web", "www"] } }
restart = "on-failure:5"
command = ["serve", "--fast"]
memory = "512m"
cpus = 1.5
labels = { "traefik.enable" = "true" }
health = { http = { path = "/healthz", port = 80 }, grace = "2s", timeout = "30s" }
keep_images = 5
pull = false
stop_timeout = "20s"
"#,
        )
        .unwrap();
        assert_eq!(plan.container_name("a", "b"), "web");
        let ports: Vec<_> = plan
            .ports
            .iter()
            .map(|p| (p.host_ip.as_str(), p.host_port, p.key()))
            .collect();
        assert_eq!(
            ports,
            [
                ("127.0.0.1", Some(8080), "80/tcp".to_string()),
                ("", Some(8443), "443/tcp".to_string()),
                ("", None, "53/udp".to_string()),
                ("::1", Some(9000), "9000/tcp".to_string()),
                ("127.0.0.1", None, "81/tcp".to_string()),
            ]
        );
        assert_eq!(plan.env["PORT"], "8080");
        assert_eq!(plan.env["DEBUG"], "false");
        assert_eq!(plan.primary_network.as_deref(), Some("backend"));
        assert_eq!(plan.networks["frontend"], ["web", "www"]);
        assert_eq!(plan.restart.max_retries, Some(5));
        assert_eq!(plan.memory, Some(512 * 1024 * 1024));
        assert_eq!(plan.nano_cpus, Some(1_500_000_000));
        let http = plan.health.http.unwrap();
        assert_eq!(
            (http.path.as_str(), http.port, http.status),
            ("/healthz", 80, 200)
        );
        assert_eq!(plan.keep_images, 5);
        assert_eq!(plan.stop_timeout, Duration::from_secs(20));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("prots = []", "prots"),
            ("ports = [\"80:80:80:80\"]", "ports"),
            ("ports = [\"8080-8090:80\"]", "ranges"),
            ("ports = [\"localhost:8080:80\"]", "not an IP"),
            ("ports = [\"0:80\"]", "host port"),
            ("ports = [\"80/icmp\"]", "protocol"),
            ("name = \"../etc\"", "container name"),
            ("env_file = \"web.env\"", "absolute"),
            ("volumes = [\"data\"]", "source:target"),
            ("volumes = [\"data:relative\"]", "absolute path"),
            ("volumes = [\"/a:/b:rx\"]", "unknown option"),
            ("restart = \"sometimes\"", "restart"),
            ("restart = \"on-failure:x\"", "retry count"),
            ("memory = \"1x\"", "unit"),
            ("memory = \"1k\"", "minimum"),
            ("cpus = 0", "cpus"),
            ("command = []", "command is empty"),
            ("labels = { \"wharf.project\" = \"x\" }", "set by wharf"),
            ("health = { grace = \"soon\" }", "grace"),
            (
                "health = { grace = \"2m\", timeout = \"1m\" }",
                "never pass",
            ),
            (
                "health = { http = { path = \"x\", port = 80 } }",
                "http.path",
            ),
            ("health = { http = { path = \"/\" } }", "port"),
            ("strategy = \"blue-green\"", "strategy"),
            ("strategy = \"start-first\"\nports = [\"8080:80\"]", "8080"),
            ("network = \"host\"\nports = [\"80:80\"]", "host"),
            ("host = \"web1\"", "host 'web1' is not defined"),
            (
                "hosts = [\"tcp://a:2375\", \"tcp://a:2375\"]",
                "listed twice",
            ),
        ] {
            let error = plan(text).expect_err(text);
            assert!(error.message.starts_with("[docker]"), "{text}: {error}");
            assert!(error.message.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn start_first_accepts_engine_chosen_host_ports() {
        let plan = plan("strategy = \"start-first\"\nports = [\"127.0.0.1::80\"]").unwrap();
        assert_eq!(plan.strategy, Strategy::StartFirst);
    }

    #[test]
    fn a_route_resolves_and_implies_start_first() {
        let routed = plan("[route]\nlisten = \"127.0.0.1:8080\"\nport = 80").unwrap();
        assert_eq!(routed.strategy, Strategy::StartFirst);
        let route = routed.route.unwrap();
        assert_eq!(route.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (route.port, route.drain, route.mode),
            (80, DEFAULT_DRAIN, RouteMode::Http)
        );
        let tcp =
            plan("[route]\nlisten = \"[::1]:5432\"\nport = 5432\ndrain = \"2s\"\nmode = \"tcp\"")
                .unwrap()
                .route
                .unwrap();
        assert_eq!(
            (tcp.drain, tcp.mode),
            (Duration::from_secs(2), RouteMode::Tcp)
        );
    }

    #[test]
    fn route_mistakes_are_named() {
        for (text, needle) in [
            (
                "[route]\nlisten = \"localhost:8080\"\nport = 80",
                "not an address",
            ),
            ("[route]\nlisten = \"127.0.0.1:0\"\nport = 80", "port 0"),
            ("[route]\nlisten = \"127.0.0.1:8080\"\nport = 0", "port = 0"),
            (
                "[route]\nlisten = \"127.0.0.1:8080\"\nport = 80\ndrain = \"soon\"",
                "drain",
            ),
            (
                "[route]\nlisten = \"127.0.0.1:8080\"\nport = 80\nmode = \"udp\"",
                "mode",
            ),
            (
                "[route]\nlisten = \"127.0.0.1:8080\"\nport = 80\nlisten_typo = 1",
                "listen_typo",
            ),
            (
                "ports = [\"8080:80\"]\n[route]\nlisten = \"127.0.0.1:8080\"\nport = 80",
                "also published by ports",
            ),
            (
                "ports = [\"9090:90\"]\n[route]\nlisten = \"127.0.0.1:8080\"\nport = 80",
                "host port 9090",
            ),
            (
                "strategy = \"stop-first\"\n[route]\nlisten = \"127.0.0.1:8080\"\nport = 80",
                "start-first",
            ),
            (
                "network = \"host\"\n[route]\nlisten = \"127.0.0.1:8080\"\nport = 80",
                "network 'host'",
            ),
            (
                "host = \"tcp://10.0.0.5:2375\"\n[route]\nlisten = \"127.0.0.1:8080\"\nport = 80",
                "local engine only",
            ),
        ] {
            let message = plan(text).unwrap_err().message;
            assert!(message.contains(needle), "{text}: {message}");
        }
    }
}

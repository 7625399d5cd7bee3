//! `[swarm]` as written in a project file, checked when the file loads.
//!
//! Parsing is strict (`deny_unknown_fields`) and every check happens here, so
//! a typo is reported with the project file, not when a push arrives. The
//! deploy path only sees a [`Plan`].
//!
//! `[swarm.create]` is used once: when the service does not exist yet. An
//! existing service keeps its own spec (replicas, ports, update and rollback
//! config) and only gets the new image, so an operator's `docker service
//! update` is never undone by the next push.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use wharf_engine::hosts::{Endpoint, Hosts, Targets};
pub use wharf_engine::swarm::{FailureAction, Order, Policy, Port, PublishMode};
use wharf_engine::values::{environment, own_labels, Scalar};
use wharf_plugin_api::ports::parse_port as parse_docker_port;
use wharf_plugin_api::{Settings, SettingsError};

/// How long an update may take before wharf rolls it back itself.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Docker's own default for `--update-monitor`.
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);
/// Swarm's limit on service names (they are DNS labels).
const MAX_SERVICE_NAME: usize = 63;

/// The table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    service: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    registry_auth: Option<bool>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    create: Option<RawCreate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCreate {
    #[serde(default)]
    replicas: Option<u64>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    publish_mode: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Scalar>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    stop_grace_period: Option<String>,
    #[serde(default)]
    update_config: Option<RawPolicy>,
    #[serde(default)]
    rollback_config: Option<RawPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    parallelism: Option<u64>,
    #[serde(default)]
    delay: Option<String>,
    #[serde(default)]
    failure_action: Option<String>,
    #[serde(default)]
    monitor: Option<String>,
    #[serde(default)]
    order: Option<String>,
}

/// `[swarm.create]`: the service wharf creates when there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub replicas: u64,
    pub ports: Vec<Port>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// How long a task has between SIGTERM and SIGKILL; `None`: the
    /// swarm's default (10 s).
    pub stop_grace_period: Option<Duration>,
    pub update: Policy,
    /// `None`: the swarm's defaults.
    pub rollback: Option<Policy>,
}

/// `[swarm]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The swarm service's name (or id).
    pub service: String,
    /// How long wharf waits for the swarm's update before rolling it back.
    pub timeout: Duration,
    /// Send the registry credentials from the Docker config file with the
    /// update, as `docker service update --with-registry-auth`, so that
    /// every node can pull a private image.
    pub registry_auth: bool,
    /// The managers to deploy through, one after the other (each of its own
    /// swarm); at least one, the local engine by default.
    pub engines: Vec<Endpoint>,
    pub create: Option<Create>,
}

impl Plan {
    /// Parse and check a settings table; `hosts` are the engines
    /// `wharf.toml` names.
    ///
    /// # Errors
    /// A message that starts with `[swarm]` and names the key.
    pub fn parse(settings: &Settings, hosts: &Hosts) -> Result<Plan, SettingsError> {
        let raw: Raw = Settings::try_into(settings.clone()).map_err(|e| {
            let message = e.message().trim().to_string();
            match key_path(settings) {
                Some(path) => SettingsError::new(format!("[swarm] {path}: {message}")),
                None => SettingsError::new(format!("[swarm]: {message}")),
            }
        })?;
        let fail = |message: String| SettingsError::new(format!("[swarm] {message}"));

        let service = raw.service.ok_or_else(|| {
            fail("service is missing: the name of the swarm service to update, e.g. service = \"web\"".into())
        })?;
        check_service_name(&service).map_err(|why| fail(format!("service '{service}': {why}")))?;
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => parse_duration("timeout", text).map_err(&fail)?,
        };
        if timeout.is_zero() {
            return Err(fail("timeout must be more than 0".into()));
        }
        if raw.host.as_deref().is_some_and(str::is_empty) {
            return Err(fail(
                "host is empty: leave it out to use the local engine".into(),
            ));
        }
        if raw.hosts.iter().any(String::is_empty) {
            return Err(fail("hosts: a host is empty".into()));
        }
        let engines = Targets {
            host: raw.host,
            hosts: raw.hosts,
            ..Targets::default()
        }
        .resolve(hosts)
        .map_err(fail)?;
        let create = raw
            .create
            .as_ref()
            .map(|create| parse_create(create).map_err(|why| fail(format!("create.{why}"))))
            .transpose()?;
        Ok(Plan {
            service,
            timeout,
            registry_auth: raw.registry_auth.unwrap_or(true),
            engines,
            create,
        })
    }
}

/// Where in the table a type error is: serde's message says what is wrong
/// ("expected a boolean") but not which key, so each key is tried alone
/// (every field is optional), down into `create` and its policy tables.
fn key_path(settings: &Settings) -> Option<String> {
    let first = failing_key::<Raw>(settings)?;
    let create = settings.get("create").and_then(toml::Value::as_table);
    let mut path = vec![first.clone()];
    if let (Some(create), "create") = (create, first.as_str()) {
        if let Some(key) = failing_key::<RawCreate>(create) {
            let policy = create.get(&key).and_then(toml::Value::as_table);
            path.push(key.clone());
            if let (Some(policy), "update_config" | "rollback_config") = (policy, key.as_str()) {
                path.extend(failing_key::<RawPolicy>(policy));
            }
        }
    }
    Some(path.join("."))
}

/// The first key that fails to deserialize into `T` on its own.
fn failing_key<T: serde::de::DeserializeOwned>(table: &Settings) -> Option<String> {
    table
        .iter()
        .find(|(key, value)| {
            let mut alone = Settings::new();
            alone.insert((*key).clone(), (*value).clone());
            alone.try_into::<T>().is_err()
        })
        .map(|(key, _)| key.clone())
}

/// Swarm's own rule (a DNS label): letters and digits, `-` and `_` only
/// between them, at most 63 characters.
fn check_service_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_SERVICE_NAME
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a swarm service name is letters, digits, '-' and '_', starts and ends with a letter or digit, at most {MAX_SERVICE_NAME} characters"
        ))
    }
}

fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    wharf_plugin_api::duration::parse(text).map_err(|e| format!("{key} {e}"))
}

/// `[swarm.create]`; errors name the key below `create.`.
fn parse_create(raw: &RawCreate) -> Result<Create, String> {
    let mode = match raw.publish_mode.as_deref() {
        None | Some("ingress") => PublishMode::Ingress,
        Some("host") => PublishMode::Host,
        Some(other) => {
            return Err(format!(
                "publish_mode '{other}': expected \"ingress\" or \"host\""
            ))
        }
    };
    let ports = raw
        .ports
        .iter()
        .map(|text| parse_port(text, mode).map_err(|why| format!("ports: '{text}': {why}")))
        .collect::<Result<Vec<_>, _>>()?;
    let env = environment(&raw.env)?;
    own_labels(&raw.labels)?;
    let update = parse_policy(
        raw.update_config.as_ref(),
        &[
            ("rollback", FailureAction::Rollback),
            ("pause", FailureAction::Pause),
            ("continue", FailureAction::Continue),
        ],
    )
    .map_err(|why| format!("update_config.{why}"))?;
    // A rollback that fails cannot roll back in turn.
    let rollback = raw
        .rollback_config
        .as_ref()
        .map(|policy| {
            parse_policy(
                Some(policy),
                &[
                    ("pause", FailureAction::Pause),
                    ("continue", FailureAction::Continue),
                ],
            )
            .map_err(|why| format!("rollback_config.{why}"))
        })
        .transpose()?;
    for (key, policy) in [
        ("update_config", Some(&update)),
        ("rollback_config", rollback.as_ref()),
    ] {
        let Some(policy) = policy else { continue };
        if policy.order == Order::StartFirst {
            if let Some(port) = ports
                .iter()
                .find(|p| p.mode == PublishMode::Host && p.published.is_some())
            {
                return Err(format!(
                    "{key}.order \"start-first\" runs the old and the new task side by side, so they cannot both bind host port {} (publish_mode = \"host\"): use \"stop-first\", or the ingress mode",
                    port.published.unwrap_or_default()
                ));
            }
        }
    }
    let stop_grace_period = raw
        .stop_grace_period
        .as_deref()
        .map(|text| parse_duration("stop_grace_period", text))
        .transpose()?;
    Ok(Create {
        replicas: raw.replicas.unwrap_or(1),
        ports,
        env,
        labels: raw.labels.clone(),
        stop_grace_period,
        update,
        rollback,
    })
}

/// `[published:]target[/protocol]`: Docker's `-p` syntax, parsed by the
/// shared parser, without a host IP (a swarm publishes on every address of
/// its nodes), with the table's `publish_mode`.
fn parse_port(text: &str, mode: PublishMode) -> Result<Port, String> {
    let spec = parse_docker_port(text)?;
    if !spec.host_ip.is_empty() {
        return Err(format!(
            "host IP '{}': a swarm publishes on every address of its nodes; write [published:]target[/protocol]",
            spec.host_ip
        ));
    }
    Ok(Port {
        published: spec.host_port,
        target: spec.container_port,
        protocol: spec.protocol,
        mode,
    })
}

/// An `update_config` or `rollback_config` table, with Docker's defaults
/// except `failure_action`, whose first allowed value is the default: a
/// service wharf creates rolls back by itself when an update fails.
fn parse_policy(
    raw: Option<&RawPolicy>,
    actions: &[(&str, FailureAction)],
) -> Result<Policy, String> {
    let default = RawPolicy::default();
    let raw = raw.unwrap_or(&default);
    let failure_action = match raw.failure_action.as_deref() {
        // The first action listed is the default one.
        None => actions
            .first()
            .map_or(FailureAction::Pause, |(_, action)| *action),
        Some(text) => actions
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, action)| *action)
            .ok_or_else(|| {
                let names: Vec<String> = actions.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                format!("failure_action '{text}': expected {}", names.join(", "))
            })?,
    };
    let order = match raw.order.as_deref() {
        None | Some("stop-first") => Order::StopFirst,
        Some("start-first") => Order::StartFirst,
        Some(other) => {
            return Err(format!(
                "order '{other}': expected \"stop-first\" or \"start-first\""
            ))
        }
    };
    Ok(Policy {
        parallelism: raw.parallelism.unwrap_or(1),
        delay: match &raw.delay {
            Some(text) => parse_duration("delay", text)?,
            None => Duration::ZERO,
        },
        failure_action,
        monitor: match &raw.monitor {
            Some(text) => parse_duration("monitor", text)?,
            None => DEFAULT_MONITOR,
        },
        order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Plan, String> {
        let table: Settings = text.parse().expect("test TOML parses");
        let mut hosts = Hosts::new();
        hosts.insert(
            "edge".into(),
            toml::from_str("docker_host = \"tcp://10.0.0.9:2375\"").unwrap(),
        );
        Plan::parse(&table, &hosts).map_err(|e| e.message)
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("should be rejected")
    }

    #[test]
    fn a_service_alone_takes_the_defaults() {
        let plan = parse("service = \"web\"").unwrap();
        assert_eq!(
            plan,
            Plan {
                service: "web".into(),
                timeout: Duration::from_secs(300),
                registry_auth: true,
                engines: vec![Endpoint::Local],
                create: None,
            }
        );
    }

    #[test]
    fn every_key_is_read() {
        let plan = parse(
            r#"
            service = "shop_web-1"
            timeout = "90s"
            registry_auth = false
            host = "edge"
            [create]
            replicas = 3
            ports = ["8080:80", "53/udp"]
            publish_mode = "host"
            env = { RUST_LOG = "info", PORT = 80, DEBUG = false }
            labels = { team = "shop" }
            stop_grace_period = "2s"
            update_config = { parallelism = 2, delay = "1s", failure_action = "pause", monitor = "3s", order = "stop-first" }
            rollback_config = { parallelism = 0, failure_action = "continue", order = "stop-first" }
            "#,
        )
        .unwrap();
        assert_eq!(plan.service, "shop_web-1");
        assert_eq!(plan.timeout, Duration::from_secs(90));
        assert!(!plan.registry_auth);
        assert_eq!(
            plan.engines
                .iter()
                .map(Endpoint::describe)
                .collect::<Vec<_>>(),
            ["edge (tcp://10.0.0.9:2375)"]
        );
        let create = plan.create.unwrap();
        assert_eq!(create.replicas, 3);
        assert_eq!(
            create.ports,
            vec![
                Port {
                    published: Some(8080),
                    target: 80,
                    protocol: "tcp".into(),
                    mode: PublishMode::Host
                },
                Port {
                    published: None,
                    target: 53,
                    protocol: "udp".into(),
                    mode: PublishMode::Host
                },
            ]
        );
        assert_eq!(create.env["PORT"], "80");
        assert_eq!(create.env["DEBUG"], "false");
        assert_eq!(create.labels["team"], "shop");
        assert_eq!(create.stop_grace_period, Some(Duration::from_secs(2)));
        assert_eq!(
            create.update,
            Policy {
                parallelism: 2,
                delay: Duration::from_secs(1),
                failure_action: FailureAction::Pause,
                monitor: Duration::from_secs(3),
                order: Order::StopFirst,
            }
        );
        let rollback = create.rollback.unwrap();
        assert_eq!(rollback.parallelism, 0);
        assert_eq!(rollback.failure_action, FailureAction::Continue);
        assert_eq!(rollback.monitor, DEFAULT_MONITOR);
    }

    #[test]
    fn a_created_service_rolls_back_by_default() {
        let create = parse("service = \"web\"\n[create]\n")
            .unwrap()
            .create
            .unwrap();
        assert_eq!(create.replicas, 1);
        assert_eq!(create.update.failure_action, FailureAction::Rollback);
        assert_eq!(create.update.order, Order::StopFirst);
        assert_eq!(create.rollback, None);
    }

    #[test]
    fn several_hosts_parse_and_host_with_hosts_is_rejected() {
        let plan = parse("service = \"web\"\nhosts = [\"edge\", \"unix:///run/b.sock\"]").unwrap();
        assert_eq!(
            plan.engines
                .iter()
                .map(Endpoint::describe)
                .collect::<Vec<_>>(),
            ["edge (tcp://10.0.0.9:2375)", "unix:///run/b.sock"]
        );
        let message = error("service = \"web\"\nhost = \"edge\"\nhosts = [\"edge\"]");
        assert!(message.contains("either host or hosts"), "{message}");
        let message = error("service = \"web\"\nhost = \"west\"");
        assert!(message.contains("host 'west' is not defined"), "{message}");
    }

    #[test]
    fn mistakes_are_reported_with_their_key() {
        for (text, expected) in [
            ("timeout = \"5m\"", "service is missing"),
            ("service = \"web\"\nservcie = \"x\"", "servcie"),
            ("service = \"web app\"", "service 'web app'"),
            ("service = \"-web\"", "service '-web'"),
            ("service = \"web\"\ntimeout = \"soon\"", "timeout 'soon'"),
            ("service = \"web\"\ntimeout = \"0s\"", "timeout must be more than 0"),
            ("service = \"web\"\nregistry_auth = \"yes\"", "registry_auth: invalid type"),
            ("service = \"web\"\nhosts = \"a\"", "hosts: invalid type"),
            ("service = \"web\"\nhost = \"\"", "host is empty"),
            ("service = \"web\"\n[create]\nreplica = 2", "create.replica: unknown field"),
            ("service = \"web\"\n[create]\nreplicas = \"2\"", "create.replicas: invalid type"),
            ("service = 3", "service: invalid type"),
            ("service = \"web\"\n[create]\nports = [\"eighty\"]", "create.ports: 'eighty'"),
            ("service = \"web\"\n[create]\nports = [\"8080:0\"]", "container port '0'"),
            ("service = \"web\"\n[create]\nports = [\"80/icmp\"]", "protocol 'icmp'"),
            ("service = \"web\"\n[create]\nstop_grace_period = \"10\"", "create.stop_grace_period '10'"),
            ("service = \"web\"\n[create]\npublish_mode = \"mesh\"", "create.publish_mode 'mesh'"),
            ("service = \"web\"\n[create]\nenv = { \"A=B\" = \"c\" }", "create.env: 'A=B'"),
            ("service = \"web\"\n[create]\nlabels = { \"wharf.stage\" = \"x\" }", "create.labels: 'wharf.stage'"),
            (
                "service = \"web\"\n[create]\nupdate_config = { failure_action = \"panic\" }",
                "create.update_config.failure_action 'panic'",
            ),
            (
                "service = \"web\"\n[create]\nrollback_config = { failure_action = \"rollback\" }",
                "create.rollback_config.failure_action 'rollback'",
            ),
            (
                "service = \"web\"\n[create]\nupdate_config = { monitor = \"a while\" }",
                "create.update_config.monitor 'a while'",
            ),
            (
                "service = \"web\"\n[create]\nupdate_config = { order = \"random\" }",
                "create.update_config.order 'random'",
            ),
            (
                "service = \"web\"\n[create]\nupdate_config = { orderr = \"stop-first\" }",
                "create.update_config.orderr: unknown field",
            ),
            (
                "service = \"web\"\n[create]\nports = [\"8080:80\"]\npublish_mode = \"host\"\nupdate_config = { order = \"start-first\" }",
                "cannot both bind host port 8080",
            ),
        ] {
            let message = error(text);
            assert!(message.starts_with("[swarm]"), "{message}");
            assert!(message.contains(expected), "no '{expected}' in: {message}");
        }
    }

    /// Ports go through Docker's `-p` parser (shared with the docker
    /// deployer), less the host IP a swarm cannot bind.
    #[test]
    fn ports_use_the_shared_parser_without_a_host_ip() {
        let create = parse("service = \"web\"\n[create]\nports = [\"8443:443/TCP\"]")
            .unwrap()
            .create
            .unwrap();
        assert_eq!(
            create.ports,
            vec![Port {
                published: Some(8443),
                target: 443,
                protocol: "tcp".into(),
                mode: PublishMode::Ingress
            }]
        );
        for (text, expected) in [
            ("127.0.0.1:8080:80", "host IP '127.0.0.1'"),
            ("8080-8090:80", "port ranges are not supported"),
        ] {
            let message = error(&format!(
                "service = \"web\"\n[create]\nports = [\"{text}\"]"
            ));
            assert!(
                message.contains(&format!("create.ports: '{text}': {expected}")),
                "{message}"
            );
        }
    }

    #[test]
    fn start_first_is_fine_through_the_ingress_mesh() {
        let plan = parse(
            "service = \"web\"\n[create]\nports = [\"8080:80\"]\nupdate_config = { order = \"start-first\" }",
        )
        .unwrap();
        assert_eq!(plan.create.unwrap().update.order, Order::StartFirst);
    }
}

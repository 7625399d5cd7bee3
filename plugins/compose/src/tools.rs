//! The two programs this plugin drives, `docker compose`/`docker-compose`
//! and `docker`, as argv with the deployment's variable in the child's
//! environment. Everything runs through [`wharf_plugin_api::process`]: its
//! own process group, output into the deployment log, bounded by the
//! deployment's deadline.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;

use serde::Deserialize;
use tokio::process::Command;
use wharf_plugin_api::process::{self, Finished, Limits, Output, RunError};
use wharf_plugin_api::LogSink;

use crate::settings::{CommandChoice, ComposeSettings};

/// Which compose was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `docker compose`, the v2 CLI plugin.
    V2,
    /// `docker-compose`, the v1 Python tool.
    V1,
}

impl Flavor {
    /// The program and the arguments that come before compose's own.
    fn argv(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Flavor::V2 => ("docker", &["compose"]),
            Flavor::V1 => ("docker-compose", &[]),
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Flavor::V2 => "docker compose",
            Flavor::V1 => "docker-compose",
        }
    }
}

/// A compose found on this machine, bound to one `[compose]` table.
#[derive(Debug, Clone)]
pub struct Compose {
    pub flavor: Flavor,
    /// What `version --short` said.
    pub version: String,
    settings: ComposeSettings,
}

/// Why compose could not be used or a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Missing(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("`{command}` {outcome}")]
    Failed { command: String, outcome: String },
    #[error("`{command}` gave output that could not be read: {reason}")]
    Unreadable { command: String, reason: String },
}

impl Compose {
    /// Find the compose the settings ask for: v2 first, then v1, for `auto`.
    ///
    /// # Errors
    /// [`ToolError::Missing`] saying what was tried and how to install one;
    /// [`ToolError::Run`] when the deadline or cancellation cut the probe.
    pub async fn detect(
        settings: &ComposeSettings,
        log: &LogSink,
        limits: &Limits,
    ) -> Result<Compose, ToolError> {
        let candidates: &[Flavor] = match settings.command {
            CommandChoice::Auto => &[Flavor::V2, Flavor::V1],
            CommandChoice::V2 => &[Flavor::V2],
            CommandChoice::V1 => &[Flavor::V1],
        };
        let mut tried = Vec::new();
        for flavor in candidates {
            let (program, leading) = flavor.argv();
            let mut command = Command::new(program);
            command.args(leading).args(["version", "--short"]);
            let result = process::run(command, log, Output::Quiet, limits).await;
            match result {
                Ok(finished) if finished.status.success() => {
                    return Ok(Compose {
                        flavor: *flavor,
                        version: finished.stdout.join(" ").trim().to_string(),
                        settings: settings.clone(),
                    });
                }
                Ok(finished) => tried.push(format!(
                    "`{} version` {}{}",
                    flavor.display(),
                    finished.describe(),
                    first_line(&finished.stderr)
                )),
                Err(RunError::Spawn { source, .. }) => {
                    tried.push(format!("`{}` cannot run: {source}", flavor.display()))
                }
                Err(other) => return Err(other.into()),
            }
        }
        let advice = match settings.command {
            CommandChoice::Auto => "install the compose plugin (docker compose) or docker-compose (Debian: apt-get install docker-compose)",
            CommandChoice::V2 => "install the compose plugin, or set command = \"auto\" to use docker-compose",
            CommandChoice::V1 => "install docker-compose (Debian: apt-get install docker-compose), or set command = \"auto\"",
        };
        Err(ToolError::Missing(format!(
            "no usable compose: {}; {advice}",
            tried.join("; ")
        )))
    }

    /// `docker compose -f FILE [-p NAME] [--env-file ENV] ARGS…`, for
    /// display in the log and in errors.
    pub fn display(&self, args: &[&str]) -> String {
        let (program, leading) = self.flavor.argv();
        let mut words: Vec<String> = std::iter::once(program)
            .chain(leading.iter().copied())
            .map(str::to_string)
            .collect();
        words.extend(
            self.global_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        words.extend(args.iter().map(|s| s.to_string()));
        words.join(" ")
    }

    fn global_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-f".into(), self.settings.file.clone().into()];
        if let Some(name) = &self.settings.project_name {
            args.extend(["-p".into(), name.into()]);
        }
        if let Some(env_file) = &self.settings.env_file {
            args.extend(["--env-file".into(), env_file.clone().into()]);
        }
        args
    }

    /// The compose command for `args`, with the variable set to `value` in
    /// the child's environment (never in the operator's file, never through
    /// a shell).
    fn command(&self, value: &str, args: &[&str]) -> Command {
        let (program, leading) = self.flavor.argv();
        let mut command = Command::new(program);
        command
            .args(leading)
            .args(self.global_args())
            .args(args)
            .current_dir(self.settings.folder());
        // The daemon's own WHARF_* settings are not compose's business.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WHARF_") {
                command.env_remove(key);
            }
        }
        command.env(self.settings.variable.name(), value);
        command
    }

    /// Run `compose ARGS` with the variable at `value`, output to the log.
    ///
    /// # Errors
    /// [`ToolError::Failed`] on a non-zero exit, [`ToolError::Run`] when it
    /// could not start or was stopped.
    pub async fn run(
        &self,
        value: &str,
        args: &[&str],
        log: &LogSink,
        limits: &Limits,
    ) -> Result<Finished, ToolError> {
        let shown = self.display(args);
        log.info(format!(
            "$ {}={value} {shown}",
            self.settings.variable.name()
        ));
        let finished = process::run(self.command(value, args), log, Output::Log, limits).await?;
        if finished.status.success() {
            Ok(finished)
        } else {
            Err(ToolError::Failed {
                command: shown,
                outcome: finished.describe(),
            })
        }
    }

    /// Ids of the service's containers, stopped ones included (a container
    /// that exited at once must be seen, not missed).
    ///
    /// # Errors
    /// As [`Compose::run`], or unreadable output.
    pub async fn container_ids(
        &self,
        value: &str,
        log: &LogSink,
        limits: &Limits,
    ) -> Result<Vec<String>, ToolError> {
        // v1's `ps` lists stopped containers already; v2's needs --all.
        let args: &[&str] = match self.flavor {
            Flavor::V2 => &["ps", "--all", "-q", &self.settings.service],
            Flavor::V1 => &["ps", "-q", &self.settings.service],
        };
        let finished = process::run(
            self.command(value, args),
            log,
            Output::CaptureStdout,
            limits,
        )
        .await?;
        if !finished.status.success() {
            return Err(ToolError::Failed {
                command: self.display(args),
                outcome: finished.describe(),
            });
        }
        let ids: Vec<String> = finished
            .stdout
            .iter()
            .map(|line| line.trim().to_string())
            .filter(|line| !line.is_empty())
            .collect();
        if let Some(bad) = ids
            .iter()
            .find(|id| !id.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(ToolError::Unreadable {
                command: self.display(args),
                reason: format!("'{bad}' is not a container id"),
            });
        }
        Ok(ids)
    }
}

/// What `docker inspect` says about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image reference it was created from (`Config.Image`).
    pub image: String,
    /// The image's id (`sha256:…`).
    pub image_id: String,
    pub status: String,
    pub running: bool,
    pub restarting: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub restart_count: i64,
    /// `starting`, `healthy`, `unhealthy`; `None` without a healthcheck.
    pub health: Option<String>,
    /// The last healthcheck's output, trimmed.
    pub health_output: Option<String>,
    /// Published ports: `80/tcp` → where the engine publishes it.
    pub ports: BTreeMap<String, Vec<SocketAddr>>,
}

impl Container {
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }

    /// Where the wharf host reaches this container's TCP `port`: its
    /// loopback binding first, else any binding (all interfaces read as
    /// loopback, which they include).
    pub fn published(&self, port: u16) -> Option<SocketAddr> {
        let bindings = self.ports.get(&format!("{port}/tcp"))?;
        let reachable = |a: &SocketAddr| {
            if a.ip().is_unspecified() {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
            } else {
                *a
            }
        };
        bindings
            .iter()
            .find(|a| a.ip().is_loopback())
            .or_else(|| bindings.first())
            .map(reachable)
    }
}

/// `docker inspect` of containers by id.
///
/// # Errors
/// The command failing or its JSON not being what Docker prints.
pub async fn inspect(
    ids: &[String],
    log: &LogSink,
    limits: &Limits,
) -> Result<Vec<Container>, ToolError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut command = Command::new("docker");
    command
        .arg("inspect")
        .arg("--type")
        .arg("container")
        .args(ids);
    let finished = process::run(command, log, Output::CaptureStdout, limits).await?;
    let shown = format!("docker inspect {}", ids.join(" "));
    if !finished.status.success() {
        return Err(ToolError::Failed {
            command: shown,
            outcome: finished.describe(),
        });
    }
    parse_inspect(&finished.stdout.join("\n")).map_err(|reason| ToolError::Unreadable {
        command: shown,
        reason,
    })
}

/// Re-point `reference` at the image `image_id`: the tag the previous
/// container ran may have moved since (a re-pushed tag), and a rollback
/// must bring back what ran, not what the tag names today.
///
/// # Errors
/// The command failing.
pub async fn tag(
    image_id: &str,
    reference: &str,
    log: &LogSink,
    limits: &Limits,
) -> Result<(), ToolError> {
    let mut command = Command::new("docker");
    command.args(["tag", image_id, reference]);
    let finished = process::run(command, log, Output::Log, limits).await?;
    if finished.status.success() {
        Ok(())
    } else {
        Err(ToolError::Failed {
            command: format!("docker tag {image_id} {reference}"),
            outcome: finished.describe(),
        })
    }
}

/// Remove containers by id: `docker stop` first (each gets its own stop
/// grace period, compose's `stop_grace_period`) unless `now`, then
/// `docker rm -f`.
///
/// # Errors
/// The command failing.
pub async fn remove(
    ids: &[String],
    now: bool,
    log: &LogSink,
    limits: &Limits,
) -> Result<(), ToolError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut steps: Vec<Vec<&str>> = Vec::new();
    if !now {
        steps.push(vec!["stop"]);
    }
    steps.push(vec!["rm", "-f"]);
    for mut args in steps {
        args.extend(ids.iter().map(String::as_str));
        let shown = format!("docker {}", args.join(" "));
        log.info(format!("$ {shown}"));
        let mut command = Command::new("docker");
        command.args(&args);
        let finished = process::run(command, log, Output::Log, limits).await?;
        if !finished.status.success() {
            return Err(ToolError::Failed {
                command: shown,
                outcome: finished.describe(),
            });
        }
    }
    Ok(())
}

/// The last lines a container printed, into the log, to show why it failed.
pub async fn log_tail(container: &Container, log: &LogSink, limits: &Limits) {
    log.info(format!(
        "last output of container {} ({}):",
        container.name,
        container.short_id()
    ));
    let mut command = Command::new("docker");
    command.args(["logs", "--tail", "30", &container.id]);
    if let Err(error) = process::run(command, log, Output::Log, limits).await {
        log.info(format!("could not read its output: {error}"));
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    id: String,
    name: String,
    image: String,
    config: RawConfig,
    state: RawState,
    #[serde(default)]
    restart_count: i64,
    #[serde(default)]
    network_settings: RawNetworkSettings,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawNetworkSettings {
    /// `null` for a port exposed but not published.
    #[serde(default)]
    ports: BTreeMap<String, Option<Vec<RawBinding>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawBinding {
    #[serde(default)]
    host_ip: String,
    #[serde(default)]
    host_port: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    image: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawState {
    status: String,
    running: bool,
    restarting: bool,
    #[serde(default)]
    exit_code: i64,
    #[serde(rename = "OOMKilled", default)]
    oom_killed: bool,
    #[serde(default)]
    health: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHealth {
    status: String,
    #[serde(default)]
    log: Option<Vec<RawHealthLog>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHealthLog {
    #[serde(default)]
    output: String,
}

fn parse_inspect(text: &str) -> Result<Vec<Container>, String> {
    let raw: Vec<RawContainer> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(raw
        .into_iter()
        .map(|c| {
            let health_output = c
                .state
                .health
                .as_ref()
                .and_then(|h| h.log.as_ref())
                .and_then(|log| log.last())
                .map(|entry| entry.output.trim().to_string())
                .filter(|output| !output.is_empty());
            Container {
                id: c.id,
                name: c.name.trim_start_matches('/').to_string(),
                image: c.config.image,
                image_id: c.image,
                status: c.state.status,
                running: c.state.running,
                restarting: c.state.restarting,
                exit_code: c.state.exit_code,
                oom_killed: c.state.oom_killed,
                restart_count: c.restart_count,
                health: c.state.health.map(|h| h.status),
                health_output,
                ports: c
                    .network_settings
                    .ports
                    .into_iter()
                    .map(|(key, bindings)| {
                        let addresses = bindings
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|b| {
                                let ip = if b.host_ip.is_empty() {
                                    "0.0.0.0"
                                } else {
                                    &b.host_ip
                                };
                                Some(SocketAddr::new(ip.parse().ok()?, b.host_port.parse().ok()?))
                            })
                            .collect();
                        (key, addresses)
                    })
                    .collect(),
            }
        })
        .collect())
}

fn first_line(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .map(|l| format!(": {l}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_output_is_read() {
        let text = r#"[{"Id":"0123456789abcdef0123","Name":"/shop_web_1","Image":"sha256:aa",
            "RestartCount":2,"Config":{"Image":"127.0.0.1:5000/acme/web:v1"},
            "State":{"Status":"running","Running":true,"Restarting":false,"ExitCode":0,
                     "OOMKilled":false,"Health":{"Status":"unhealthy","FailingStreak":3,
                     "Log":[{"ExitCode":1,"Output":"first"},{"ExitCode":1,"Output":"wget: 404\n"}]}}},
            {"Id":"fedcba","Name":"/shop_web_2","Image":"sha256:bb",
            "Config":{"Image":"r/web:v2"},
            "State":{"Status":"exited","Running":false,"Restarting":false,"ExitCode":3}}]"#;
        let containers = parse_inspect(text).unwrap();
        assert_eq!(containers[0].name, "shop_web_1");
        assert_eq!(containers[0].short_id(), "0123456789ab");
        assert_eq!(containers[0].image, "127.0.0.1:5000/acme/web:v1");
        assert_eq!(containers[0].health.as_deref(), Some("unhealthy"));
        assert_eq!(containers[0].health_output.as_deref(), Some("wget: 404"));
        assert_eq!(containers[0].restart_count, 2);
        assert_eq!(containers[1].health, None);
        assert_eq!(containers[1].exit_code, 3);
        assert_eq!(containers[1].published(80), None);
        assert!(parse_inspect("not json").is_err());

        let published = r#"[{"Id":"ab","Name":"/shop_web_3","Image":"sha256:cc",
            "Config":{"Image":"r/web:v3"},
            "State":{"Status":"running","Running":true,"Restarting":false},
            "NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"32770"},
                {"HostIp":"::","HostPort":"32770"}],"81/tcp":[{"HostIp":"127.0.0.1","HostPort":"32771"}],
                "82/tcp":null}}}]"#;
        let container = &parse_inspect(published).unwrap()[0];
        assert_eq!(
            container.published(80),
            Some("127.0.0.1:32770".parse().unwrap())
        );
        assert_eq!(
            container.published(81),
            Some("127.0.0.1:32771".parse().unwrap())
        );
        assert_eq!(container.published(82), None);
    }
}

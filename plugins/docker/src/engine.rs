//! The one place that speaks bollard. Everything else in this crate uses the
//! small types below, so an upgrade of bollard (whose option and model types
//! change between releases) touches this file only.
//!
//! bollard 0.21 speaks API 1.53 by default; [`Engine::connect`] negotiates
//! down to what the engine offers, and every call here sticks to what API
//! 1.41 (Docker 20.10, Debian 12's engine) already has: one network at
//! creation (others are joined with a separate call), no multi-platform
//! image options.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthStatusEnum, HostConfig, NetworkConnectRequest,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::{Stream, StreamExt};
use wharf_registry::auth::Credentials;

use crate::hosts::Endpoint;

/// How long connecting and negotiating the API version may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an engine call failed, in the terms the deploy flow decides on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot be reached at all.
    #[error("cannot reach the Docker engine at {host}: {message}")]
    Unreachable { host: String, message: String },
    /// No such container or image (or, for a pull, no such tag).
    #[error("{0}")]
    NotFound(String),
    /// The engine refused: name in use, port taken, bad reference, …
    #[error("{0}")]
    Refused(String),
    /// A stream from the engine (a pull) went on too long or went silent.
    #[error("{0}")]
    TimedOut(String),
}

/// How long a pull may take: bollard's own timeout covers an answer's
/// headers only, and a pull's answer is a stream of events that a stalled
/// registry can keep open for ever, holding the stage and a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// The whole pull (`pull_timeout`).
    pub overall: Duration,
    /// The longest gap between two events of the pull (`pull_idle_timeout`).
    pub idle: Duration,
}

impl PullLimits {
    /// The next item of `stream`, waiting no longer than the idle limit nor
    /// past the overall one (counted from `started`); `None` at its end.
    ///
    /// # Errors
    /// [`EngineError::TimedOut`] naming the limit that ran out and how long
    /// it is.
    pub async fn next<S: Stream + Unpin>(
        &self,
        stream: &mut S,
        started: std::time::Instant,
    ) -> Result<Option<S::Item>, EngineError> {
        let left = self.overall.saturating_sub(started.elapsed());
        let (wait, why) = if left <= self.idle {
            (
                left,
                format!(
                    "the pull did not finish within {} (pull_timeout)",
                    wharf_plugin_api::duration::format(self.overall)
                ),
            )
        } else {
            (
                self.idle,
                format!(
                    "the pull made no progress for {} (pull_idle_timeout)",
                    wharf_plugin_api::duration::format(self.idle)
                ),
            )
        };
        tokio::time::timeout(wait, stream.next())
            .await
            .map_err(|_| EngineError::TimedOut(why))
    }
}

/// A connection to one engine, with the API version agreed on.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
    machine: Machine,
}

/// Where the engine's published ports are reached from wharf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// This machine: the local engine or a `unix://` socket.
    Local,
    /// Another machine, at this address when its name resolved.
    Remote(Option<IpAddr>),
}

/// Health as the engine reports it for a container with a HEALTHCHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Starting,
    Healthy,
    Unhealthy,
}

/// What the deploy flow needs to know about a container.
#[derive(Debug, Clone, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub running: bool,
    pub restarting: bool,
    pub exit_code: i64,
    pub restart_count: i64,
    pub oom_killed: bool,
    /// The engine's error for a container that failed to start.
    pub error: String,
    /// `None` when the container has no HEALTHCHECK.
    pub health: Option<HealthState>,
    /// The last health probe's output, for the log when it fails.
    pub last_health_output: Option<String>,
    /// `80/tcp` → (host ip, host port) for each published binding.
    pub published: Vec<(String, String, u16)>,
    /// The container's address on each network it joined.
    pub addresses: Vec<String>,
    pub labels: HashMap<String, String>,
}

/// What an image declares about itself.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    pub id: String,
    pub exposed_ports: Vec<String>,
    pub labels: HashMap<String, String>,
    pub has_healthcheck: bool,
}

/// One local image: its id, the names it carries, when it was created.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub id: String,
    /// `repo:tag` and `repo@digest`, as the engine lists them.
    pub references: Vec<String>,
    pub created: i64,
}

/// One event of a pull, for the deployment log.
#[derive(Debug, Clone, Default)]
pub struct PullEvent {
    /// The layer, when the event is about one.
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

/// A container to create, fully resolved.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    /// `80/tcp` → bindings (host ip, host port; empty port = engine's choice).
    pub ports: BTreeMap<String, Vec<(String, String)>>,
    pub binds: Vec<String>,
    /// Joined at creation, with its aliases.
    pub network: Option<(String, Vec<String>)>,
    pub restart: String,
    pub restart_max: Option<i64>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub stop_timeout: Option<i64>,
}

/// Registry credentials in bollard's form. A function, not a `From`: both
/// types are foreign to this crate, and bollard stays out of
/// `wharf-registry`.
fn docker_credentials(credentials: &Credentials) -> DockerCredentials {
    DockerCredentials {
        username: credentials.username.clone(),
        password: credentials.password.clone(),
        identitytoken: credentials.identity_token.clone(),
        serveraddress: Some(credentials.server.clone()),
        ..Default::default()
    }
}

/// An error and its causes, `outer: inner: …`: hyper's own message for a
/// refused connection is just "client error (Connect)"; the cause says
/// "Connection refused".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

/// The first address of a host name (or the address itself).
async fn resolve(name: &str) -> Option<IpAddr> {
    if let Ok(ip) = name.parse() {
        return Some(ip);
    }
    let mut addresses = tokio::net::lookup_host((name, 0)).await.ok()?;
    addresses.next().map(|a| a.ip())
}

/// A bollard client for `endpoint`, not yet connected.
fn client(endpoint: &Endpoint, timeout: Duration) -> Result<Docker, BollardError> {
    let Endpoint::Remote(remote) = endpoint else {
        return Docker::connect_with_defaults();
    };
    let url = remote.url.as_str();
    let seconds = timeout.as_secs().max(1);
    match (&remote.tls, url.split_once("://").map_or("", |(s, _)| s)) {
        (Some(tls), _) => {
            // rustls needs one process-wide crypto provider; wharf builds
            // with ring only. A second call finds it installed: fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Docker::connect_with_ssl(
                url,
                &tls.key,
                &tls.cert,
                &tls.ca,
                seconds,
                API_DEFAULT_VERSION,
            )
        }
        (None, "unix") => Docker::connect_with_unix(url, seconds, API_DEFAULT_VERSION),
        (None, "ssh") => Docker::connect_with_ssh(
            url,
            seconds,
            API_DEFAULT_VERSION,
            remote.ssh_key.as_ref().map(|k| k.display().to_string()),
        ),
        (None, _) => Docker::connect_with_http(url, seconds, API_DEFAULT_VERSION),
    }
}

impl Engine {
    /// Connect as the `docker` CLI would (`DOCKER_HOST`, else the local
    /// socket) and agree on an API version. `timeout` bounds every call that
    /// waits for the engine's answer (a stop waits up to its own timeout).
    ///
    /// # Errors
    /// [`EngineError::Unreachable`] with the host and the cause.
    pub async fn connect(timeout: Duration) -> Result<Engine, EngineError> {
        Engine::connect_to(&Endpoint::Local, timeout).await
    }

    /// Connect to `endpoint` and agree on an API version.
    ///
    /// # Errors
    /// [`EngineError::Unreachable`] with the host and the cause.
    pub async fn connect_to(endpoint: &Endpoint, timeout: Duration) -> Result<Engine, EngineError> {
        let host = match endpoint {
            Endpoint::Local => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
            Endpoint::Remote(_) => endpoint.describe(),
        };
        let unreachable = |message: String| EngineError::Unreachable {
            host: host.clone(),
            message,
        };
        let docker = client(endpoint, timeout)
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(timeout);
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(unreachable(with_causes(&e))),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let machine = match endpoint.machine() {
            None => Machine::Local,
            Some(name) => match resolve(&name).await {
                // tcp://127.0.0.1:… is an engine on this very machine.
                Some(ip) if ip.is_loopback() => Machine::Local,
                address => Machine::Remote(address),
            },
        };
        Ok(Engine {
            docker,
            host,
            machine,
        })
    }

    /// The bollard client, for sibling plugins (swarm) that speak parts of
    /// the API this crate has no use for. Connection, TLS and version
    /// negotiation stay here.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Where this engine's published ports are reached from wharf.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// The address this engine was reached at, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The API version agreed on, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let version = self.docker.client_version();
        format!("{}.{}", version.major_version, version.minor_version)
    }

    /// A bollard error in the terms the deploy flows decide on; public for
    /// the sibling plugins that make their own calls through [`client`].
    ///
    /// [`client`]: Engine::client
    pub fn classify(&self, error: BollardError) -> EngineError {
        match error {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::NotFound(message),
            BollardError::DockerResponseServerError { message, .. } => {
                EngineError::Refused(message)
            }
            BollardError::DockerStreamError { error } => EngineError::Refused(error),
            BollardError::SocketNotFoundError(_)
            | BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError => EngineError::Unreachable {
                host: self.host.clone(),
                message: error.to_string(),
            },
            other => EngineError::Refused(other.to_string()),
        }
    }

    /// Pull `repository` at `tag_or_digest` within `limits`, reporting each
    /// event. Giving up drops the stream, which closes the connection: the
    /// engine then cancels the pull itself.
    ///
    /// # Errors
    /// The registry or engine refused (no such tag: [`EngineError::NotFound`]
    /// or `Refused` with the registry's message); a limit ran out
    /// ([`EngineError::TimedOut`]).
    pub async fn pull(
        &self,
        repository: &str,
        tag_or_digest: &str,
        credentials: Option<&Credentials>,
        limits: PullLimits,
        mut progress: impl FnMut(PullEvent),
    ) -> Result<(), EngineError> {
        let started = std::time::Instant::now();
        let options = CreateImageOptionsBuilder::default()
            .from_image(repository)
            .tag(tag_or_digest)
            .build();
        let credentials = credentials.map(docker_credentials);
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(event) = limits.next(&mut stream, started).await? {
            let info = event.map_err(|e| self.classify(e))?;
            progress(PullEvent {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current: info.progress_detail.as_ref().and_then(|p| p.current),
                total: info.progress_detail.as_ref().and_then(|p| p.total),
            });
        }
        Ok(())
    }

    /// Inspect a local image; `None` when the engine does not have it.
    ///
    /// # Errors
    /// The engine failed (not "no such image").
    pub async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        let image = match self.docker.inspect_image(reference).await {
            Ok(image) => image,
            Err(e) => {
                return match self.classify(e) {
                    EngineError::NotFound(_) => Ok(None),
                    other => Err(other),
                }
            }
        };
        let config = image.config.unwrap_or_default();
        let mut exposed_ports = config.exposed_ports.unwrap_or_default();
        exposed_ports.sort_by_key(|p| port_order(p));
        Ok(Some(ImageInfo {
            id: image.id.unwrap_or_default(),
            exposed_ports,
            labels: config.labels.unwrap_or_default(),
            has_healthcheck: config
                .healthcheck
                .and_then(|h| h.test)
                .is_some_and(|test| test.first().is_some_and(|t| t != "NONE")),
        }))
    }

    /// Inspect a container by name or id; `None` when there is none.
    ///
    /// # Errors
    /// The engine failed (not "no such container").
    pub async fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        let inspected = match self.docker.inspect_container(name, None).await {
            Ok(inspected) => inspected,
            Err(e) => {
                return match self.classify(e) {
                    EngineError::NotFound(_) => Ok(None),
                    other => Err(other),
                }
            }
        };
        let state = inspected.state.unwrap_or_default();
        let health = state.health.as_ref().and_then(|h| match h.status {
            Some(HealthStatusEnum::STARTING) => Some(HealthState::Starting),
            Some(HealthStatusEnum::HEALTHY) => Some(HealthState::Healthy),
            Some(HealthStatusEnum::UNHEALTHY) => Some(HealthState::Unhealthy),
            _ => None,
        });
        let last_health_output = state
            .health
            .as_ref()
            .and_then(|h| h.log.as_ref())
            .and_then(|log| log.last())
            .map(|result| {
                format!(
                    "exit {}: {}",
                    result.exit_code.unwrap_or_default(),
                    result.output.as_deref().unwrap_or("").trim()
                )
            });
        let network = inspected.network_settings.unwrap_or_default();
        let mut published = Vec::new();
        for (key, bindings) in network.ports.unwrap_or_default() {
            for binding in bindings.unwrap_or_default() {
                let port = binding
                    .host_port
                    .as_deref()
                    .and_then(|p| p.parse::<u16>().ok());
                if let Some(port) = port {
                    published.push((key.clone(), binding.host_ip.unwrap_or_default(), port));
                }
            }
        }
        published.sort();
        let addresses = network
            .networks
            .unwrap_or_default()
            .into_values()
            .filter_map(|n| n.ip_address.filter(|ip| !ip.is_empty()))
            .collect();
        Ok(Some(ContainerInfo {
            id: inspected.id.unwrap_or_default(),
            name: inspected
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image_id: inspected.image.unwrap_or_default(),
            running: state.running.unwrap_or(false),
            restarting: state.restarting.unwrap_or(false),
            exit_code: state.exit_code.unwrap_or_default(),
            restart_count: inspected.restart_count.unwrap_or_default(),
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.unwrap_or_default(),
            health,
            last_health_output,
            published,
            addresses,
            labels: inspected.config.and_then(|c| c.labels).unwrap_or_default(),
        }))
    }

    /// Create (not start) a container. Returns its id.
    ///
    /// # Errors
    /// The engine refused the spec (name in use, unknown network, …).
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
            .ports
            .iter()
            .map(|(key, bindings)| {
                let bindings = bindings
                    .iter()
                    .map(|(ip, port)| PortBinding {
                        host_ip: Some(ip.clone()),
                        host_port: Some(port.clone()),
                    })
                    .collect();
                (key.clone(), Some(bindings))
            })
            .collect();
        let restart = RestartPolicy {
            name: Some(match spec.restart.as_str() {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                "no" => RestartPolicyNameEnum::NO,
                _ => RestartPolicyNameEnum::UNLESS_STOPPED,
            }),
            maximum_retry_count: spec.restart_max,
        };
        let host_config = HostConfig {
            port_bindings: Some(port_bindings),
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            restart_policy: Some(restart),
            memory: spec.memory,
            nano_cpus: spec.nano_cpus,
            network_mode: spec.network.as_ref().map(|(name, _)| name.clone()),
            ..Default::default()
        };
        let networking_config = spec
            .network
            .as_ref()
            .map(|(name, aliases)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    name.clone(),
                    EndpointSettings {
                        aliases: (!aliases.is_empty()).then(|| aliases.clone()),
                        ..Default::default()
                    },
                )])),
            });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            cmd: spec.command.clone(),
            entrypoint: spec.entrypoint.clone(),
            labels: Some(spec.labels.clone().into_iter().collect()),
            exposed_ports: Some(spec.ports.keys().cloned().collect()),
            stop_timeout: spec.stop_timeout,
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map(|created| created.id)
            .map_err(|e| self.classify(e))
    }

    /// Join a further network (API 1.41 takes only one at creation).
    ///
    /// # Errors
    /// No such network, or the engine refused.
    pub async fn join_network(
        &self,
        container: &str,
        network: &str,
        aliases: &[String],
    ) -> Result<(), EngineError> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(network, request)
            .await
            .map_err(|e| self.classify(e))
    }

    /// # Errors
    /// The container cannot start (port taken, bad command, …).
    pub async fn start(&self, container: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(container, None)
            .await
            .map_err(|e| self.classify(e))
    }

    /// Stop, giving the process `grace` before SIGKILL. A stopped container
    /// is not an error.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn stop(&self, container: &str, grace: Duration) -> Result<(), EngineError> {
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX))
            .build();
        match self.docker.stop_container(container, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// # Errors
    /// No such container, or the new name is taken.
    pub async fn rename(&self, container: &str, new_name: &str) -> Result<(), EngineError> {
        let options = RenameContainerOptionsBuilder::default()
            .name(new_name)
            .build();
        self.docker
            .rename_container(container, options)
            .await
            .map_err(|e| self.classify(e))
    }

    /// Remove a container (stopping it if needed). Its named volumes stay;
    /// a container that is already gone is not an error.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn remove(&self, container: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(container, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match self.classify(e) {
                EngineError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// The last `lines` lines of a container's output, stream by stream.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn tail(
        &self,
        container: &str,
        lines: usize,
    ) -> Result<Vec<(bool, String)>, EngineError> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(container, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let (is_stderr, bytes) = match chunk.map_err(|e| self.classify(e))? {
                LogOutput::StdErr { message } => (true, message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => (false, message),
                LogOutput::StdIn { .. } => continue,
            };
            for line in String::from_utf8_lossy(&bytes).lines() {
                out.push((is_stderr, line.to_string()));
            }
        }
        Ok(out)
    }

    /// Every local image, with the names it carries.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn images(&self) -> Result<Vec<ImageEntry>, EngineError> {
        let options = ListImagesOptionsBuilder::default().build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(images
            .into_iter()
            .map(|image| ImageEntry {
                id: image.id,
                references: image
                    .repo_tags
                    .into_iter()
                    .chain(image.repo_digests)
                    .filter(|r| !r.starts_with("<none>"))
                    .collect(),
                created: image.created,
            })
            .collect())
    }

    /// Ids of the images any container uses, running or not.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn images_in_use(&self) -> Result<HashSet<String>, EngineError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(containers.into_iter().filter_map(|c| c.image_id).collect())
    }

    /// Remove one name of an image; the image goes with its last name.
    /// Never forced, so an image a container uses is never removed.
    ///
    /// # Errors
    /// The engine refused (in use, …).
    pub async fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptionsBuilder::default().build();
        self.docker
            .remove_image(reference, Some(options), None)
            .await
            .map(|_| ())
            .map_err(|e| self.classify(e))
    }
}

/// EXPOSEd ports in a stable order: TCP before UDP, then by number.
fn port_order(port: &str) -> (bool, u32, String) {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    (
        protocol != "tcp",
        number.parse().unwrap_or(u32::MAX),
        protocol.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    const LIMITS: PullLimits = PullLimits {
        overall: Duration::from_millis(600),
        idle: Duration::from_millis(200),
    };

    /// Every item of `events` within `LIMITS`; the error's text otherwise.
    async fn drain(mut events: impl Stream<Item = u32> + Unpin) -> Result<usize, String> {
        let started = std::time::Instant::now();
        let mut count = 0;
        while LIMITS
            .next(&mut events, started)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            count += 1;
        }
        Ok(count)
    }

    /// A stream of `n` items (or endless), one every `every`.
    fn ticking(n: Option<u32>, every: Duration) -> impl Stream<Item = u32> + Unpin {
        Box::pin(stream::unfold(0, move |i| async move {
            if n.is_some_and(|n| i >= n) {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((i, i + 1))
        }))
    }

    #[tokio::test]
    async fn a_pull_that_keeps_going_in_time_is_not_cut() {
        let events = ticking(Some(5), Duration::from_millis(20));
        assert_eq!(drain(events).await, Ok(5));
    }

    #[tokio::test]
    async fn a_silent_pull_fails_on_the_idle_limit() {
        let started = std::time::Instant::now();
        let silent = stream::iter([1, 2]).chain(stream::pending());
        let error = drain(Box::pin(silent)).await.unwrap_err();
        assert_eq!(
            error,
            "the pull made no progress for 200ms (pull_idle_timeout)"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(500),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_pull_that_trickles_on_fails_on_the_overall_limit() {
        let started = std::time::Instant::now();
        let endless = ticking(None, Duration::from_millis(50));
        let error = drain(endless).await.unwrap_err();
        assert_eq!(error, "the pull did not finish within 600ms (pull_timeout)");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_millis(900),
            "{took:?}"
        );
    }
}

//! Containers: inspect, create, join networks, start, stop, rename,
//! remove, and the tail of their output.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthStatusEnum, HostConfig, NetworkConnectRequest,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::{Engine, EngineError};

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

impl Engine {
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
}

//! The swarm parts of the Engine API (info, services, tasks, nodes,
//! distribution inspect) behind small types of our own, so the swarm
//! deployer reads without bollard's models.
//!
//! The connection itself (host, TLS, API version negotiation) is the
//! [`Engine`]'s. Everything here exists in API 1.41 (Docker 20.10), the
//! oldest engine wharf supports.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, LocalNodeState, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum,
    ServiceUpdateStatusStateEnum, TaskSpec, TaskSpecContainerSpec,
};
use bollard::query_parameters::{ListNodesOptions, ListTasksOptions, UpdateServiceOptions};
use wharf_registry::auth::Credentials;

use crate::credentials::docker_credentials;
use crate::{Engine, EngineError};

/// How a published port reaches the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// The routing mesh: the port answers on every node.
    Ingress,
    /// Bound on the node that runs the task, like `docker run -p`.
    Host,
}

/// One published port: `[published:]target[/protocol]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// `None`: the swarm picks one.
    pub published: Option<u16>,
    pub target: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub mode: PublishMode,
}

/// What the swarm does when an updated task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    Rollback,
    Pause,
    Continue,
}

/// Whether the old task stops before its replacement starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    StopFirst,
    StartFirst,
}

/// A service's `UpdateConfig` or `RollbackConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Tasks replaced at once; 0 means all at once.
    pub parallelism: u64,
    pub delay: Duration,
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure before the next batch.
    pub monitor: Duration,
    pub order: Order,
}

/// What the engine says about its place in a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// `inactive`, `pending`, `active`, `error` or `locked`.
    pub state: String,
    /// True on a manager: only managers accept service calls.
    pub manager: bool,
    /// The swarm's own error, when it has one.
    pub error: String,
}

impl Membership {
    pub fn is_active_manager(&self) -> bool {
        self.state == "active" && self.manager
    }
}

/// Where a service's rolling update stands, as the swarm reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
    /// A state this version of wharf does not know.
    Other(String),
}

/// A service's `UpdateStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateStatus {
    pub state: UpdateState,
    /// When this update (or rollback) started: what tells one update's
    /// status from the previous one's.
    pub started_at: Option<String>,
    /// The swarm's explanation ("update rolled back due to failure …").
    pub message: String,
}

/// A service as the deploy flow needs it. The full spec travels along,
/// unseen, so that an update changes the image and nothing else.
#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub name: String,
    /// The object version an update must name (optimistic locking).
    pub version: u64,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// `None` for a global service.
    pub replicas: Option<u64>,
    pub update: Option<UpdateStatus>,
    spec: ServiceSpec,
}

/// One task (a slot's container, past or present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    /// Replicated services number their tasks; global ones do not.
    pub slot: Option<i64>,
    pub node_id: String,
    /// `new`, `pending`, `preparing`, `starting`, `running`, `failed`, …
    pub state: String,
    /// What the swarm wants this task to be: `running`, `shutdown`, …
    pub desired: String,
    pub image: String,
    /// Why a task failed or was rejected ("task: non-zero exit (3)").
    pub error: String,
}

/// A service for wharf to create.
#[derive(Debug, Clone)]
pub struct NewService {
    pub name: String,
    pub image: String,
    pub replicas: u64,
    pub env: BTreeMap<String, String>,
    /// On the service and on its containers.
    pub labels: BTreeMap<String, String>,
    pub stop_grace_period: Option<std::time::Duration>,
    pub ports: Vec<Port>,
    pub update: Policy,
    pub rollback: Option<Policy>,
}

/// The swarm API of one engine.
#[derive(Debug, Clone)]
pub struct Swarm {
    engine: Engine,
}

impl Swarm {
    /// The swarm API of `engine` (whether it is a manager is for
    /// [`Swarm::membership`] to say).
    pub fn new(engine: Engine) -> Swarm {
        Swarm { engine }
    }

    /// The engine's address, for messages.
    pub fn host(&self) -> &str {
        self.engine.host()
    }

    /// The engine's swarm membership (`docker info`'s Swarm section).
    ///
    /// # Errors
    /// The engine failed.
    pub async fn membership(&self) -> Result<Membership, EngineError> {
        let info = self
            .engine
            .docker
            .info()
            .await
            .map_err(|e| self.engine.classify(e))?;
        let swarm = info.swarm.unwrap_or_default();
        Ok(Membership {
            state: swarm
                .local_node_state
                .unwrap_or(LocalNodeState::INACTIVE)
                .to_string(),
            manager: swarm.control_available.unwrap_or(false),
            error: swarm.error.unwrap_or_default(),
        })
    }

    /// Inspect a service by name or id; `None` when there is none.
    ///
    /// # Errors
    /// The engine failed (not "no such service").
    pub async fn service(&self, name: &str) -> Result<Option<Service>, EngineError> {
        let service = match self.engine.docker.inspect_service(name, None).await {
            Ok(service) => service,
            Err(e) => {
                return match self.engine.classify(e) {
                    EngineError::NotFound(_) => Ok(None),
                    other => Err(other),
                }
            }
        };
        let spec = service.spec.unwrap_or_default();
        let image = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let replicas = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .map(|r| r.replicas.unwrap_or(1).max(0) as u64);
        let update = service.update_status.map(|status| UpdateStatus {
            state: match status.state {
                Some(ServiceUpdateStatusStateEnum::UPDATING) => UpdateState::Updating,
                Some(ServiceUpdateStatusStateEnum::PAUSED) => UpdateState::Paused,
                Some(ServiceUpdateStatusStateEnum::COMPLETED) => UpdateState::Completed,
                Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED) => {
                    UpdateState::RollbackStarted
                }
                Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED) => UpdateState::RollbackPaused,
                Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED) => {
                    UpdateState::RollbackCompleted
                }
                Some(other) => UpdateState::Other(other.to_string()),
                None => UpdateState::Other(String::new()),
            },
            // Display: the same text whichever date type bollard is built with.
            started_at: status.started_at.map(|at| at.to_string()),
            message: status.message.unwrap_or_default(),
        });
        Ok(Some(Service {
            id: service.id.unwrap_or_default(),
            name: spec.name.clone().unwrap_or_else(|| name.to_string()),
            version: service.version.and_then(|v| v.index).unwrap_or_default(),
            image,
            labels: spec
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            replicas,
            update,
            spec,
        }))
    }

    /// Point `service` at `image` and force a rolling update (as `docker
    /// service update --force --image`): the rest of its spec, update and
    /// rollback config included, stays as it is. `labels` are merged into
    /// the service's and its containers' labels. Returns the swarm's
    /// warnings.
    ///
    /// # Errors
    /// The swarm refused (the service changed since it was inspected, …).
    pub async fn update_image(
        &self,
        service: &Service,
        image: &str,
        labels: &BTreeMap<String, String>,
        credentials: Option<&Credentials>,
    ) -> Result<Vec<String>, EngineError> {
        let mut spec = service.spec.clone();
        let task = spec.task_template.get_or_insert_with(TaskSpec::default);
        task.force_update = Some(task.force_update.unwrap_or(0).wrapping_add(1));
        let container = task
            .container_spec
            .get_or_insert_with(TaskSpecContainerSpec::default);
        container.image = Some(image.to_string());
        if !labels.is_empty() {
            container
                .labels
                .get_or_insert_with(HashMap::new)
                .extend(labels.clone());
            spec.labels
                .get_or_insert_with(HashMap::new)
                .extend(labels.clone());
        }
        let options = UpdateServiceOptions {
            version: version(service.version)?,
            ..Default::default()
        };
        self.engine
            .docker
            .update_service(
                &service.id,
                spec,
                options,
                credentials.map(docker_credentials),
            )
            .await
            .map(|response| response.warnings.unwrap_or_default())
            .map_err(|e| self.engine.classify(e))
    }

    /// Ask the swarm to roll `service` back to its previous spec, as
    /// `docker service rollback` does.
    ///
    /// # Errors
    /// The swarm refused (no previous spec, the service changed, …).
    pub async fn roll_back(&self, service: &Service) -> Result<(), EngineError> {
        let options = UpdateServiceOptions {
            version: version(service.version)?,
            registry_auth_from: "previous-spec".into(),
            rollback: Some("previous".into()),
        };
        self.engine
            .docker
            .update_service(&service.id, service.spec.clone(), options, None)
            .await
            .map(|_| ())
            .map_err(|e| self.engine.classify(e))
    }

    /// Remove a service (`docker service rm`).
    ///
    /// # Errors
    /// The swarm refused, or the engine failed.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        self.engine
            .docker
            .delete_service(name)
            .await
            .map_err(|e| self.engine.classify(e))
    }

    /// Create a replicated service. Returns its id.
    ///
    /// # Errors
    /// The swarm refused (name taken, port taken, …).
    pub async fn create(
        &self,
        service: &NewService,
        credentials: Option<&Credentials>,
    ) -> Result<String, EngineError> {
        let labels: HashMap<String, String> = service.labels.clone().into_iter().collect();
        let ports = service.ports.iter().map(port_config).collect();
        let spec = ServiceSpec {
            name: Some(service.name.clone()),
            labels: Some(labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(service.image.clone()),
                    env: Some(
                        service
                            .env
                            .iter()
                            .map(|(key, value)| format!("{key}={value}"))
                            .collect(),
                    ),
                    labels: Some(labels),
                    stop_grace_period: service.stop_grace_period.map(nanos),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::try_from(service.replicas).unwrap_or(i64::MAX)),
                }),
                ..Default::default()
            }),
            update_config: Some(update_config(&service.update)),
            rollback_config: service.rollback.as_ref().map(rollback_config),
            endpoint_spec: Some(EndpointSpec {
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.engine
            .docker
            .create_service(spec, credentials.map(docker_credentials))
            .await
            .map(|created| created.id.unwrap_or_default())
            .map_err(|e| self.engine.classify(e))
    }

    /// Every task of a service the swarm still knows, old ones included.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn tasks(&self, service_id: &str) -> Result<Vec<Task>, EngineError> {
        let options = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                vec![service_id.to_string()],
            )])),
        };
        let tasks = self
            .engine
            .docker
            .list_tasks(Some(options))
            .await
            .map_err(|e| self.engine.classify(e))?;
        Ok(tasks
            .into_iter()
            .map(|task| {
                let status = task.status.unwrap_or_default();
                Task {
                    id: task.id.unwrap_or_default(),
                    slot: task.slot,
                    node_id: task.node_id.unwrap_or_default(),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    desired: task
                        .desired_state
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    image: task
                        .spec
                        .and_then(|s| s.container_spec)
                        .and_then(|c| c.image)
                        .unwrap_or_default(),
                    error: status.err.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Node id → hostname, to say where a task runs.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn node_names(&self) -> Result<HashMap<String, String>, EngineError> {
        let nodes = self
            .engine
            .docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|e| self.engine.classify(e))?;
        Ok(nodes
            .into_iter()
            .filter_map(|node| {
                let hostname = node.description.and_then(|d| d.hostname)?;
                Some((node.id?, hostname))
            })
            .collect())
    }

    /// The manifest digest the registry serves for `reference` right now,
    /// asked through the engine (so its registry settings and mirrors
    /// apply), as the docker CLI does before it creates or updates a
    /// service: every node then runs the same image.
    ///
    /// # Errors
    /// The registry or the engine refused.
    pub async fn registry_digest(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, EngineError> {
        let inspected = self
            .engine
            .docker
            .inspect_registry_image(reference, credentials.map(docker_credentials))
            .await
            .map_err(|e| self.engine.classify(e))?;
        inspected
            .descriptor
            .digest
            .filter(|d| !d.is_empty())
            .ok_or_else(|| EngineError::Refused("the registry answered without a digest".into()))
    }
}

/// The engine takes the version as a signed 32-bit number.
fn version(index: u64) -> Result<i32, EngineError> {
    i32::try_from(index).map_err(|_| {
        EngineError::Refused(format!(
            "service version {index} does not fit the Engine API's version parameter"
        ))
    })
}

fn port_config(port: &Port) -> EndpointPortConfig {
    EndpointPortConfig {
        protocol: Some(match port.protocol.as_str() {
            "udp" => EndpointPortConfigProtocolEnum::UDP,
            "sctp" => EndpointPortConfigProtocolEnum::SCTP,
            _ => EndpointPortConfigProtocolEnum::TCP,
        }),
        target_port: Some(i64::from(port.target)),
        published_port: port.published.map(i64::from),
        publish_mode: Some(match port.mode {
            PublishMode::Ingress => EndpointPortConfigPublishModeEnum::INGRESS,
            PublishMode::Host => EndpointPortConfigPublishModeEnum::HOST,
        }),
        ..Default::default()
    }
}

/// Durations go to the engine in nanoseconds.
fn nanos(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn update_config(policy: &Policy) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(i64::try_from(policy.parallelism).unwrap_or(i64::MAX)),
        delay: Some(nanos(policy.delay)),
        failure_action: Some(match policy.failure_action {
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
        }),
        monitor: Some(nanos(policy.monitor)),
        order: Some(match policy.order {
            Order::StopFirst => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            Order::StartFirst => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
        ..Default::default()
    }
}

fn rollback_config(policy: &Policy) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: Some(i64::try_from(policy.parallelism).unwrap_or(i64::MAX)),
        delay: Some(nanos(policy.delay)),
        // Settings never allow "rollback" here (a rollback cannot roll back).
        failure_action: Some(match policy.failure_action {
            FailureAction::Continue => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            FailureAction::Pause | FailureAction::Rollback => {
                ServiceSpecRollbackConfigFailureActionEnum::PAUSE
            }
        }),
        monitor: Some(nanos(policy.monitor)),
        order: Some(match policy.order {
            Order::StopFirst => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            Order::StartFirst => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        }),
        ..Default::default()
    }
}

//! The `docker` deployer: pull the pushed image and replace the stage's
//! container behind a health gate, so that a broken image never takes the
//! service down.
//!
//! - [`settings`]: the `[docker]` table, checked when a project file loads.
//! - [`replace`]: the deployment itself — pull, create, swap, health gate,
//!   roll back, recover after a crash, prune old images.
//! - The Docker Engine API (connections, `[hosts]`, containers, images) is
//!   `wharf-engine`'s, the only crate that speaks bollard; the swarm
//!   deployer reaches engines through it too.
//! - Registry credentials and image references come from `wharf-registry`
//!   (`auth`, `reference`), which every plugin and the daemon share.
//!
//! The plugin also inspects images for auto-created projects
//! ([`ImageInspector`]): pull when needed, then read EXPOSE, labels and
//! HEALTHCHECK; and [`draft`]s their `[docker]` table from what it read.
//! For `wharf check` it asks the local engine and every `[hosts]` engine
//! whether they answer.

// Tests may slice strings they wrote themselves (clippy.toml allows the
// other panicking forms in tests).
#![cfg_attr(test, allow(clippy::string_slice))]

pub mod draft;
pub mod replace;
pub mod routed;
pub mod settings;

/// The engine crate and its `[hosts]`, under the paths the daemon still
/// names (`wharf check` connects, `wharf.toml` holds `[hosts]`) until both
/// move behind the plugin.
pub use wharf_engine::hosts::parse_hosts;
pub use wharf_engine::{self as engine, hosts};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wharf_engine::rollout::{self, connect};
use wharf_plugin_api::check::LOCAL_DOCKER_ENGINE;
use wharf_plugin_api::routes::{Claim, Upstream};
use wharf_plugin_api::{
    DeployContext, DeployError, DeployOutcome, DeployRequest, Deployer, Draft, DraftInput, Drafter,
    EngineRef, EngineReport, ImageFacts, ImageInspector, PluginError, Settings, SettingsError,
    StagePlan,
};
use wharf_registry::auth;
use wharf_registry::reference::ImageRef;

use engine::Engine;
use hosts::{Endpoint, Hosts};
use settings::Plan;

/// The least time any engine call may take before it counts as hung; a stop
/// gets its own timeout on top.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(120);
/// Limit for asking the engine where a route's container is published.
const LOCATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for `wharf check` to reach an engine.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The id prefix of a `[hosts.<name>]` engine in `wharf check`.
const HOST_ENGINE: &str = "docker:host:";
/// A project that does not exist yet has no `pull_timeout`: inspecting an
/// image for auto-creation pulls within the defaults.
const INSPECT_PULL: engine::PullLimits = engine::PullLimits {
    overall: settings::DEFAULT_PULL_TIMEOUT,
    idle: settings::DEFAULT_PULL_IDLE_TIMEOUT,
};

/// The docker deployer plugin. Holds no connection: each deployment connects
/// afresh (cheap on the local socket), so an engine restart or a changed
/// `DOCKER_HOST` never leaves wharf with a stale client.
#[derive(Debug, Default)]
pub struct DockerDeployer {
    /// The engines `wharf.toml` names (`[hosts.<name>]`).
    hosts: Hosts,
}

impl DockerDeployer {
    /// A deployer that knows only the local engine and engine URLs.
    pub fn new() -> Self {
        DockerDeployer::default()
    }

    /// A deployer that also knows the engines `wharf.toml` names.
    pub fn with_hosts(hosts: Hosts) -> Self {
        DockerDeployer { hosts }
    }

    /// A deployer that knows the engines of `wharf.toml`'s `[hosts]` table,
    /// as the daemon hands it over (see [`parse_hosts`]).
    ///
    /// # Errors
    /// As [`parse_hosts`].
    pub fn configured(hosts: &toml::Table) -> Result<Self, SettingsError> {
        Ok(DockerDeployer::with_hosts(parse_hosts(hosts)?))
    }
}

/// A replacement on one engine: stage it behind the health gate, or undo it.
struct Replacement<'a> {
    plan: &'a Plan,
    request: &'a DeployRequest,
    context: &'a DeployContext,
}

#[async_trait]
impl rollout::PerEngine for Replacement<'_> {
    type Done = replace::Replaced;

    async fn deploy(&self, endpoint: &Endpoint) -> Result<replace::Replaced, DeployError> {
        let engine = connect(endpoint, ENGINE_TIMEOUT + self.plan.stop_timeout).await?;
        self.context.log.info(format!(
            "Docker engine API {} at {}",
            engine.api_version(),
            endpoint.describe()
        ));
        replace::stage(&engine, self.plan, self.request, self.context).await
    }

    async fn undo(&self, replaced: replace::Replaced) -> String {
        replaced.undo(&self.context.log).await
    }
}

/// Deploy to every engine of the plan in order. Each engine's old container
/// is kept until all of them pass their health gate (then [`commit`]); the
/// first failure undoes the engines already done, so the stage never ends
/// half on the new version.
///
/// [`commit`]: replace::Replaced::commit
async fn deploy_everywhere(
    plan: &Plan,
    request: &DeployRequest,
    context: &DeployContext,
) -> Result<String, DeployError> {
    let log = &context.log;
    let step = Replacement {
        plan,
        request,
        context,
    };
    let replaced = rollout::one_after_another(&plan.engines, "hosts", log, &step).await?;
    let mut summaries = Vec::new();
    for (label, replaced) in replaced {
        summaries.push((label, replaced.commit(plan, request, context).await));
    }
    Ok(rollout::summary(summaries))
}

#[async_trait]
impl Deployer for DockerDeployer {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn prepare(&self, settings: &Settings) -> Result<Arc<dyn StagePlan>, SettingsError> {
        Ok(Arc::new(DockerPlan(Plan::parse(settings, &self.hosts)?)))
    }

    /// The local engine when a stage uses it, and every `[hosts]` engine.
    fn engines(&self) -> Vec<EngineRef> {
        let local = EngineRef {
            id: LOCAL_DOCKER_ENGINE.to_string(),
            always: false,
        };
        let hosts = self.hosts.keys().map(|name| EngineRef {
            id: format!("{HOST_ENGINE}{name}"),
            always: true,
        });
        std::iter::once(local).chain(hosts).collect()
    }

    async fn check_engine(&self, id: &str) -> Option<EngineReport> {
        if id == LOCAL_DOCKER_ENGINE {
            // The connection every deployment makes: DOCKER_HOST or the
            // local socket, and the API version negotiation.
            return Some(match Engine::connect(CHECK_TIMEOUT).await {
                Ok(engine) => EngineReport::Answers(format!(
                    "the Docker engine answers at {} (API {})",
                    docker_host(),
                    engine.api_version()
                )),
                Err(why) => {
                    let why = why.to_string();
                    let hint = if why.contains("ermission denied") {
                        " (is this user in the docker group?)"
                    } else {
                        ""
                    };
                    EngineReport::Silent(format!("{why}{hint}"))
                }
            });
        }
        let name = id.strip_prefix(HOST_ENGINE)?;
        let host = self.hosts.get(name)?;
        Some(
            match Engine::connect_to(&host.endpoint(name), CHECK_TIMEOUT).await {
                Ok(engine) => EngineReport::Answers(format!(
                    "host {name} answers at {} (API {})",
                    host.docker_host,
                    engine.api_version()
                )),
                Err(why) => EngineReport::Silent(format!("host {name}: {why}")),
            },
        )
    }

    fn as_image_inspector(&self) -> Option<&dyn ImageInspector> {
        Some(self)
    }

    fn as_drafter(&self) -> Option<&dyn Drafter> {
        Some(self)
    }
}

/// The local engine, as this plugin and the docker CLI find it (for
/// `wharf check`'s message; [`Engine::connect`] resolves it itself).
fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// A stage's `[docker]`, checked and resolved.
#[derive(Debug)]
struct DockerPlan(Plan);

#[async_trait]
impl StagePlan for DockerPlan {
    async fn deploy(
        &self,
        request: &DeployRequest,
        context: &DeployContext,
    ) -> Result<DeployOutcome, DeployError> {
        let started = Instant::now();
        let summary = deploy_everywhere(&self.0, request, context).await?;
        Ok(DeployOutcome {
            summary: format!("{summary} after {:.1}s", started.elapsed().as_secs_f64()),
        })
    }

    /// A re-run replaces the container by the same image again, after
    /// [`replace::recover`] has put back whatever an interruption left.
    fn rerun_is_safe(&self) -> bool {
        true
    }

    fn claims(&self) -> Vec<Claim> {
        self.0.claims()
    }

    async fn locate_upstream(
        &self,
        upstream: &Upstream,
    ) -> Result<Option<SocketAddr>, PluginError> {
        let Some(route) = &self.0.route else {
            return Ok(None);
        };
        let engine = Engine::connect(LOCATE_TIMEOUT)
            .await
            .map_err(|e| PluginError::Unavailable(e.to_string()))?;
        let container = engine
            .container(&upstream.container_id)
            .await
            .map_err(|e| PluginError::Failed(e.to_string()))?;
        Ok(container
            .filter(|c| c.running)
            .and_then(|c| replace::probe_target(&c, route.port, engine::Machine::Local)))
    }
}

impl Drafter for DockerDeployer {
    fn draft(&self, input: &DraftInput<'_>) -> Draft {
        draft::draft(input)
    }
}

#[async_trait]
impl ImageInspector for DockerDeployer {
    async fn inspect_image(&self, reference: &str) -> Result<ImageFacts, PluginError> {
        let failed = PluginError::Failed;
        let engine = Engine::connect(ENGINE_TIMEOUT)
            .await
            .map_err(|e| PluginError::Unavailable(e.to_string()))?;
        let image = match engine
            .image(reference)
            .await
            .map_err(|e| failed(e.to_string()))?
        {
            Some(image) => image,
            None => {
                let parsed = ImageRef::parse(reference)
                    .map_err(|e| failed(format!("cannot pull {reference}: {e}")))?;
                let repository = parsed.repository();
                let credentials = auth::config_path().and_then(|path| {
                    match auth::lookup(&path, &parsed.domain) {
                        Ok(auth::Lookup::Found(credentials)) => Some(credentials),
                        _ => None,
                    }
                });
                engine
                    .pull(
                        &repository,
                        parsed.pull_version(),
                        credentials.as_ref(),
                        INSPECT_PULL,
                        |_| {},
                    )
                    .await
                    .map_err(|e| failed(format!("cannot pull {reference}: {e}")))?;
                engine
                    .image(reference)
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .ok_or_else(|| {
                        failed(format!("{reference} is not on the engine after pulling it"))
                    })?
            }
        };
        Ok(ImageFacts {
            exposed_ports: image.exposed_ports,
            labels: image.labels,
            has_healthcheck: image.has_healthcheck,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_speaks_for_the_docker_table() {
        let plugin = DockerDeployer::new();
        assert!(plugin.validate(&Settings::new()).is_ok());
        let bad: Settings = "ports = [\"eighty\"]".parse().unwrap();
        assert!(plugin.validate(&bad).unwrap_err().message.contains("ports"));
    }

    /// With no engine behind `DOCKER_HOST`, a deployment is `Unavailable`
    /// with the address in the message, and nothing panics.
    #[tokio::test]
    async fn an_unreachable_engine_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nothing.sock");
        std::env::set_var("DOCKER_HOST", format!("unix://{}", socket.display()));
        let (log, _lines) = wharf_plugin_api::LogSink::channel();
        let context = DeployContext {
            log,
            cancel: wharf_plugin_api::CancellationToken::new(),
            routes: None,
        };
        let request = DeployRequest {
            deployment_id: "d".into(),
            project: "web".into(),
            stage: "dev".into(),
            repository: "docker.io/library/nginx".into(),
            tag: "1".into(),
            digest: None,
        };
        let plan = DockerDeployer::new().prepare(&Settings::new()).unwrap();
        let result = plan.deploy(&request, &context).await;
        std::env::remove_var("DOCKER_HOST");
        match result {
            Err(DeployError::Unavailable(message)) => {
                assert!(message.contains("nothing.sock"), "{message}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

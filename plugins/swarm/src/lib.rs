//! The `swarm` deployer: roll a Docker Swarm service to the pushed image and
//! let the swarm do the rolling update, with the service's own update and
//! rollback config; the deployment follows it to `completed` (succeeded) or
//! to the swarm's rollback (failed).
//!
//! - [`settings`]: the `[swarm]` table, checked when a project file loads.
//! - [`deploy`]: the deployment — manager check, image digest, update or
//!   create, following the update's status and the tasks, rolling back an
//!   update that pauses, times out or is cancelled.
//! - The swarm API (services, tasks, nodes, distribution inspect) and the
//!   connection are `wharf-engine`'s ([`Swarm`]), the crate the docker
//!   deployer reaches engines through too.

// Tests may slice strings they wrote themselves (clippy.toml allows the
// other panicking forms in tests).
#![cfg_attr(test, allow(clippy::string_slice))]

pub mod deploy;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wharf_engine::hosts::{Endpoint, Hosts};
use wharf_engine::rollout;
use wharf_engine::swarm::Swarm;
use wharf_plugin_api::{
    DeployContext, DeployError, DeployOutcome, DeployRequest, Deployer, EngineRef, Settings,
    SettingsError, StagePlan,
};

use settings::Plan;

/// The longest any single engine call may take: service calls answer at
/// once; the waiting happens in wharf's polling, bounded by `timeout`.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long undoing one swarm may take when a later engine failed.
const UNDO_LIMIT: Duration = Duration::from_secs(120);

/// The swarm deployer plugin. Like the docker plugin, it holds no
/// connection: each deployment connects afresh.
#[derive(Debug, Default)]
pub struct SwarmDeployer {
    /// The engines `wharf.toml` names (`[hosts.<name>]`).
    hosts: Hosts,
}

impl SwarmDeployer {
    /// A deployer that knows only the local engine and engine URLs.
    pub fn new() -> Self {
        SwarmDeployer::default()
    }

    /// A deployer that also knows the engines `wharf.toml` names.
    pub fn with_hosts(hosts: Hosts) -> Self {
        SwarmDeployer { hosts }
    }

    /// A deployer that knows the engines of `wharf.toml`'s `[hosts]` table,
    /// as the daemon hands it over.
    ///
    /// # Errors
    /// As [`wharf_engine::hosts::parse_hosts`].
    pub fn configured(hosts: &toml::Table) -> Result<Self, SettingsError> {
        Ok(SwarmDeployer::with_hosts(wharf_engine::hosts::parse_hosts(
            hosts,
        )?))
    }
}

/// A deployment through one manager, or its undoing.
struct Rollout<'a> {
    plan: &'a Plan,
    request: &'a DeployRequest,
    context: &'a DeployContext,
}

/// What one manager's deployment left: the connection, the summary, and
/// what changed.
type Done = (Swarm, String, deploy::Change);

#[async_trait]
impl rollout::PerEngine for Rollout<'_> {
    type Done = Done;

    async fn deploy(&self, endpoint: &Endpoint) -> Result<Done, DeployError> {
        let engine = rollout::connect(endpoint, ENGINE_TIMEOUT).await?;
        self.context.log.info(format!(
            "Docker engine API {} at {}",
            engine.api_version(),
            engine.host()
        ));
        let swarm = Swarm::new(engine);
        let (summary, change) =
            deploy::deploy(&swarm, self.plan, self.request, self.context).await?;
        Ok((swarm, summary, change))
    }

    async fn undo(&self, (swarm, _, change): Done) -> String {
        deploy::undo(&swarm, &change, UNDO_LIMIT, &self.context.log).await
    }
}

/// Deploy through every manager of the plan in order, each its own swarm.
/// The first failure undoes the swarms already done (newest first): an
/// updated service is rolled back by its swarm, a created one removed.
async fn deploy_everywhere(
    plan: &Plan,
    request: &DeployRequest,
    context: &DeployContext,
) -> Result<String, DeployError> {
    let step = Rollout {
        plan,
        request,
        context,
    };
    let done = rollout::one_after_another(&plan.engines, "swarms", &context.log, &step).await?;
    Ok(rollout::summary(
        done.into_iter()
            .map(|(label, (_, summary, _))| (label, summary))
            .collect(),
    ))
}

impl Deployer for SwarmDeployer {
    fn name(&self) -> &'static str {
        "swarm"
    }

    fn prepare(&self, settings: &Settings) -> Result<Arc<dyn StagePlan>, SettingsError> {
        Ok(Arc::new(SwarmPlan(Plan::parse(settings, &self.hosts)?)))
    }

    /// The local engine, as the docker plugin names it (and asks it); the
    /// `[hosts]` machines are the docker plugin's to report.
    fn engines(&self) -> Vec<EngineRef> {
        vec![EngineRef {
            id: wharf_plugin_api::check::LOCAL_DOCKER_ENGINE.to_string(),
            always: false,
        }]
    }
}

/// A stage's `[swarm]`, checked.
#[derive(Debug)]
struct SwarmPlan(Plan);

#[async_trait]
impl StagePlan for SwarmPlan {
    async fn deploy(
        &self,
        request: &DeployRequest,
        context: &DeployContext,
    ) -> Result<DeployOutcome, DeployError> {
        Ok(DeployOutcome {
            summary: deploy_everywhere(&self.0, request, context).await?,
        })
    }

    /// Updating a service to the image it already runs is harmless: the
    /// swarm rolls the same image again.
    fn rerun_is_safe(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_speaks_for_the_swarm_table() {
        let plugin = SwarmDeployer::new();
        assert_eq!(plugin.name(), "swarm");
        assert!(plugin
            .validate(&"service = \"web\"".parse().unwrap())
            .is_ok());
        let message = plugin.validate(&Settings::new()).unwrap_err().message;
        assert!(message.contains("service is missing"), "{message}");
    }

    /// With no engine behind `DOCKER_HOST`, a deployment is `Unavailable`
    /// with the address in the message.
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
        let plan = SwarmDeployer::new()
            .prepare(&"service = \"web\"".parse().unwrap())
            .unwrap();
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

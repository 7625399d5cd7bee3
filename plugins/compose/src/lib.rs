//! The `compose` deployer: redeploys one service of an operator's compose
//! file with the pushed image.
//!
//! ```toml
//! [compose]
//! file         = "/srv/shop/compose.yml"   # absolute; must exist when the project loads
//! service      = "web"                     # must be a service of that file
//! tag_variable = "WEB_TAG"                 # or image_variable = "WEB_IMAGE"
//! project_name = "shop"                    # optional: compose's -p
//! env_file     = "shop.env"                # optional: compose's --env-file
//! timeout      = "10m"                     # whole deployment
//! health_timeout = "2m"                    # for the service to be running/healthy
//! grace        = "5s"                      # without a healthcheck: must keep running this long
//! command      = "auto"                    # or "docker compose" (v2) / "docker-compose" (v1)
//! ```
//!
//! The compose file is the operator's and is never written: the pushed tag
//! (or `repository:tag`) reaches it through the variable its `image:` uses,
//! set in the environment of each compose run — argv only, never a shell.
//! A deployment runs `pull <service>` and `up -d --no-deps <service>`, then
//! waits for the service's containers to run (healthy, when they have a
//! healthcheck). If anything after `up` fails, the image the service ran
//! before is brought back with the same `up`, and the deployment is
//! `failed`. Every command's output goes to the deployment log; the
//! programs run through [`wharf_plugin_api::process`] (process group,
//! deadline, cancellation).
//!
//! Modules: [`settings`] (the `[compose]` table, checked against the file),
//! [`file`] (reading the compose file, `${VAR}` templates), [`tools`] (the
//! compose and docker commands), `deploy` (the steps and the rollback).

// Tests may slice strings they wrote themselves (clippy.toml allows the
// other panicking forms in tests).
#![cfg_attr(test, allow(clippy::string_slice))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wharf_plugin_api::process::Limits;
use wharf_plugin_api::routes::{Claim, Upstream};
use wharf_plugin_api::{
    CancellationToken, DeployContext, DeployError, DeployOutcome, DeployRequest, Deployer,
    EngineRef, LogSink, PluginError, Settings, SettingsError, StagePlan,
};

mod deploy;
pub mod file;
mod routed;
pub mod settings;
pub mod tools;

use settings::ComposeSettings;

/// Limit for asking the engine where a route's container is published.
const LOCATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The compose deployer plugin.
#[derive(Debug, Default)]
pub struct ComposeDeployer;

impl ComposeDeployer {
    pub fn new() -> Self {
        ComposeDeployer
    }
}

impl Deployer for ComposeDeployer {
    fn name(&self) -> &'static str {
        "compose"
    }

    /// Parses `[compose]` and reads the compose file it names: the file
    /// must exist, the service must be in it, and its image must use the
    /// variable.
    fn prepare(&self, settings: &Settings) -> Result<Arc<dyn StagePlan>, SettingsError> {
        let checked = ComposeSettings::parse(settings)?;
        Ok(Arc::new(ComposePlan {
            table: settings.clone(),
            checked,
        }))
    }

    /// The compose and docker commands talk to the local engine; the
    /// docker plugin asks it for `wharf check`.
    fn engines(&self) -> Vec<EngineRef> {
        vec![EngineRef {
            id: wharf_plugin_api::check::LOCAL_DOCKER_ENGINE.to_string(),
            always: false,
        }]
    }
}

/// A stage's `[compose]`, checked against the compose file as it was when
/// the project loaded. The table is kept: the compose file is the
/// operator's and may change without the project file changing, so a
/// deployment checks it again.
#[derive(Debug)]
struct ComposePlan {
    table: Settings,
    checked: ComposeSettings,
}

#[async_trait]
impl StagePlan for ComposePlan {
    async fn deploy(
        &self,
        request: &DeployRequest,
        context: &DeployContext,
    ) -> Result<DeployOutcome, DeployError> {
        // Checked again: the compose file may have changed since it loaded.
        let settings =
            ComposeSettings::parse(&self.table).map_err(|e| DeployError::Settings(e.message))?;
        deploy::run(&settings, request, context).await
    }

    /// `up -d --no-deps` of the same image is idempotent: a deployment cut
    /// short by a crash may simply run again. With a route, the proxy's
    /// table says which container serves; a rerun first removes the others.
    fn rerun_is_safe(&self) -> bool {
        true
    }

    fn claims(&self) -> Vec<Claim> {
        self.checked
            .route
            .as_ref()
            .map(|route| vec![Claim::Route(route.listen)])
            .unwrap_or_default()
    }

    async fn locate_upstream(
        &self,
        upstream: &Upstream,
    ) -> Result<Option<SocketAddr>, PluginError> {
        let Some(route) = &self.checked.route else {
            return Ok(None);
        };
        let limits = Limits::new(LOCATE_TIMEOUT, CancellationToken::new());
        let (log, _lines) = LogSink::channel();
        let containers =
            tools::inspect(std::slice::from_ref(&upstream.container_id), &log, &limits)
                .await
                .map_err(|e| PluginError::Unavailable(e.to_string()))?;
        Ok(containers
            .iter()
            .find(|c| c.running)
            .and_then(|c| c.published(route.port)))
    }
}

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

use async_trait::async_trait;
use wharf_plugin_api::routes::Claim;
use wharf_plugin_api::{
    DeployContext, DeployError, DeployOutcome, DeployRequest, Deployer, Settings, SettingsError,
};

mod deploy;
pub mod file;
mod routed;
pub mod settings;
pub mod tools;

use settings::ComposeSettings;

/// The compose deployer plugin.
#[derive(Debug, Default)]
pub struct ComposeDeployer;

impl ComposeDeployer {
    pub fn new() -> Self {
        ComposeDeployer
    }
}

#[async_trait]
impl Deployer for ComposeDeployer {
    fn name(&self) -> &'static str {
        "compose"
    }

    /// Parses `[compose]` and reads the compose file it names: the file
    /// must exist, the service must be in it, and its image must use the
    /// variable.
    fn validate(&self, settings: &Settings) -> Result<(), SettingsError> {
        ComposeSettings::parse(settings).map(|_| ())
    }

    async fn deploy(
        &self,
        request: &DeployRequest,
        context: &DeployContext,
    ) -> Result<DeployOutcome, DeployError> {
        // Checked again: the compose file may have changed since it loaded.
        let settings = ComposeSettings::parse(&request.settings)
            .map_err(|e| DeployError::Settings(e.message))?;
        deploy::run(&settings, request, context).await
    }

    /// `up -d --no-deps` of the same image is idempotent: a deployment cut
    /// short by a crash may simply run again. With a route, the proxy's
    /// table says which container serves; a rerun first removes the others.
    fn rerun_is_safe(&self, _settings: &Settings) -> bool {
        true
    }

    fn claimed_addresses(&self, settings: &Settings) -> Vec<Claim> {
        ComposeSettings::parse(settings)
            .ok()
            .and_then(|s| s.route)
            .map(|route| vec![Claim::Route(route.listen)])
            .unwrap_or_default()
    }
}

//! The deployer plugins compiled into this build, by name.

use std::sync::Arc;

use wharf_plugin_api::Registry;

/// Every plugin this build of wharf includes.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(wharf_compose::ComposeDeployer::new()));
    registry.register(Arc::new(wharf_docker::DockerDeployer::new()));
    registry.register(Arc::new(wharf_script::ScriptDeployer::new()));
    registry
}

//! The deployer plugins compiled into this build, by name.

use std::sync::Arc;

use wharf_docker::hosts::Hosts;
use wharf_plugin_api::Registry;

/// Every plugin this build of wharf includes; `hosts` are the Docker
/// engines `wharf.toml` names, for the plugins that deploy to them.
pub fn registry(hosts: &Hosts) -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(wharf_compose::ComposeDeployer::new()));
    registry.register(Arc::new(wharf_docker::DockerDeployer::with_hosts(
        hosts.clone(),
    )));
    registry.register(Arc::new(wharf_script::ScriptDeployer::new()));
    registry.register(Arc::new(wharf_swarm::SwarmDeployer::with_hosts(
        hosts.clone(),
    )));
    registry
}

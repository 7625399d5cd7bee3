//! The deployer plugins compiled into this build, by name.
//!
//! Adding a deployer is one crate and one `register` line here; everything
//! else (its project table, its checks, its engines for `wharf check`, its
//! draft for auto-created projects) goes through the plugin API.

use std::sync::Arc;

use tracing::error;
use wharf_plugin_api::{Registry, SettingsError};

/// The deployer a project uses when neither it nor its stage names one.
pub const DEFAULT_DEPLOYER: &str = "docker";

/// Every plugin this build of wharf includes. `hosts` is `wharf.toml`'s
/// `[hosts]` table as written (the Docker engines it names); the plugins
/// that deploy to them read it.
///
/// # Errors
/// A plugin refused its part of the daemon's config (a `[hosts]` entry
/// that is no engine); the message names the entry.
pub fn try_registry(hosts: &toml::Table) -> Result<Registry, SettingsError> {
    let mut registry = Registry::new();
    registry.register(Arc::new(wharf_compose::ComposeDeployer::new()));
    registry.register(Arc::new(wharf_docker::DockerDeployer::configured(hosts)?));
    registry.register(Arc::new(wharf_script::ScriptDeployer::new()));
    registry.register(Arc::new(wharf_swarm::SwarmDeployer::configured(hosts)?));
    Ok(registry)
}

/// [`try_registry`] for a config that loaded: its `[hosts]` passed
/// [`try_registry`] then (`DaemonConfig` validation), so this cannot fail;
/// if it did, the plugins start without the named hosts, and say so.
pub fn registry(hosts: &toml::Table) -> Registry {
    try_registry(hosts).unwrap_or_else(|refused| {
        error!("[hosts] refused, no named engines: {refused}");
        try_registry(&toml::Table::new()).unwrap_or_default()
    })
}

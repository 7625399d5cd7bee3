//! What `wharf check` asks a plugin: which engines it deploys to, and
//! whether each answers.
//!
//! A plugin names its engines with [`EngineRef`]s. Plugins that share an
//! engine (docker, compose and swarm all use the local Docker engine) give
//! it the same id: the daemon asks it once, through the first plugin that
//! can ask ([`crate::Deployer::check_engine`]), and names every stage of
//! every plugin that needs it when it does not answer. Unreachable is a
//! warning, never an error: an engine may start after wharf.

/// An engine a plugin deploys to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineRef {
    /// Names the engine across plugins, e.g. `docker:local`.
    pub id: String,
    /// Asked even when no stage uses the plugin: an engine the operator
    /// named in `wharf.toml` (`[hosts.<name>]`) is there to be used. False:
    /// asked only when a stage, or auto-create, uses the plugin.
    pub always: bool,
}

/// How an engine answered `wharf check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineReport {
    /// It answers: the line printed after `ok: `
    /// ("the Docker engine answers at … (API 1.41)").
    Answers(String),
    /// It does not: why, printed after `warning: `; the daemon adds who
    /// will fail until it answers.
    Silent(String),
}

/// The id of the Docker engine on wharf's own machine (`DOCKER_HOST`, else
/// the local socket), which the docker, compose and swarm plugins all use:
/// one shared name, so that it is asked once.
pub const LOCAL_DOCKER_ENGINE: &str = "docker:local";

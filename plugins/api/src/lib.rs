//! The contract between wharf and its deployer plugins.
//!
//! A plugin (docker, compose, script, …) implements [`Deployer`] and is
//! registered by name in a [`Registry`]. wharf calls it in a project's life:
//!
//! 1. [`Deployer::prepare`] once, when a project file loads, with the
//!    plugin's own table (`[script]`, `[docker]`, … merged with the stage's
//!    override). The plugin checks it and turns it into a typed
//!    [`StagePlan`], so a typo is reported with the file, not when a push
//!    arrives, and a deployment never parses the table again;
//! 2. [`StagePlan::deploy`] when a deployment runs, with a [`DeployRequest`]
//!    that says what to deploy and a [`DeployContext`] that carries the only
//!    things a plugin may touch: a log sink, a cancellation token and the
//!    route proxy.
//!
//! Optional capabilities (image inspection and drafting a project for
//! auto-created projects) are reached through `as_*` methods that default
//! to `None`, so a plugin that cannot inspect images simply does not
//! implement them. `wharf check` asks every plugin about its engines
//! ([`check`]).
//!
//! A deployer that keeps a stable address across versions switches
//! [`routes`] through the proxy handle in its context.
//!
//! Every table's durations (`timeout = "90s"`) are read by [`duration`].
//!
//! Plugins that run programs (script, compose) share [`process`]: argv only,
//! a process group per child, output into the log, deadline and cancellation.
//!
//! This crate depends on neither Rocket nor bollard: plugins depend on it,
//! never on the daemon.

// Every fallible public function of the plugin API says when it fails: a
// plugin author reads these docs, not the daemon's code. (A crate
// attribute, since Cargo's `[lints]` cannot add to `workspace = true`.)
#![deny(clippy::missing_errors_doc)]
// Tests may slice strings they wrote themselves (clippy.toml allows the
// other panicking forms in tests).
#![cfg_attr(test, allow(clippy::string_slice))]

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
pub use tokio_util::sync::CancellationToken;

pub mod check;
pub mod draft;
pub mod duration;
pub mod files;
pub mod ports;
pub mod probe;
pub mod process;
pub mod routes;

pub use check::{EngineRef, EngineReport};
pub use draft::{Draft, DraftInput, Drafter};
pub use routes::Routes;

/// A deployer's settings: its TOML table from the project file, with the
/// stage's table merged over the project's.
pub type Settings = toml::Table;

/// What to deploy. Every string here has been validated by wharf before the
/// plugin sees it (reference grammar for repository, tag and digest), but a
/// plugin must still never pass them through a shell.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// Unique id of this deployment (a UUID), for labels and logs.
    pub deployment_id: String,
    pub project: String,
    pub stage: String,
    /// Normalized repository, e.g. `docker.io/library/nginx`, `localhost:5000/acme/web`.
    pub repository: String,
    pub tag: String,
    /// `sha256:…` when the sender said which manifest was pushed.
    pub digest: Option<String>,
}

impl DeployRequest {
    /// `repository:tag`, the image the deployment is about.
    pub fn image(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The most exact reference to pull: by digest when the sender gave one,
    /// so that a tag moved in between cannot change what is deployed.
    pub fn pull_reference(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{}", self.repository, digest),
            None => self.image(),
        }
    }
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// wharf's or the plugin's own account of what it does.
    Wharf,
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Wharf => "wharf",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a deployment's log.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub stream: LogStream,
    pub text: String,
}

/// Where a plugin writes its deployment's log. Cheap to clone; lines are
/// stored by wharf with the deployment. Sending never blocks the plugin: if
/// wharf is gone (shutdown), lines are dropped rather than stall a deploy.
#[derive(Debug, Clone)]
pub struct LogSink {
    sender: mpsc::UnboundedSender<LogLine>,
}

impl LogSink {
    /// A sink and the receiving end that wharf drains into its store.
    pub fn channel() -> (LogSink, mpsc::UnboundedReceiver<LogLine>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (LogSink { sender }, receiver)
    }

    pub fn line(&self, stream: LogStream, text: impl Into<String>) {
        let _ = self.sender.send(LogLine {
            stream,
            text: text.into(),
        });
    }

    /// A line of the plugin's own narration ("pulling …", "container healthy").
    pub fn info(&self, text: impl Into<String>) {
        self.line(LogStream::Wharf, text);
    }
}

/// What a plugin may touch while it deploys, and nothing else.
#[derive(Debug, Clone)]
pub struct DeployContext {
    pub log: LogSink,
    /// Cancelled when wharf shuts down past its grace period or the deployment
    /// is abandoned. A plugin should stop promptly and leave the service as it
    /// was (roll back what it started).
    pub cancel: CancellationToken,
    /// wharf's route proxy, when the daemon manages routes (`None` in tools
    /// and tests that run a plugin alone): a stage with a route fails
    /// without it, rather than deploy where no traffic can reach.
    pub routes: Option<Arc<dyn Routes>>,
}

/// How a deployment ended, seen from the plugin.
#[derive(Debug, Clone, Default)]
pub struct DeployOutcome {
    /// A one-line summary for history and notifications ("exit status 0 in 1.2s").
    pub summary: String,
}

/// Why a deployment failed. The message goes to the deployment log and its
/// status; it must say what an operator needs to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    /// The settings were rejected (caught by `prepare` at load, unless what
    /// they name changed on disk since: a compose file).
    #[error("invalid settings: {0}")]
    Settings(String),
    /// The deployment ran and did not succeed; the plugin has restored the
    /// previous version where it had one.
    #[error("{0}")]
    Failed(String),
    /// The deployment did not finish within its time limit.
    #[error("timed out after {}", humanize(*.0))]
    TimedOut(Duration),
    /// The deployment was cancelled (shutdown).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// Something the plugin depends on is not reachable (the Docker engine, a
    /// registry): nothing was changed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl DeployError {
    /// The same kind of error with its message rewritten, e.g. to name the
    /// engine it came from or what was rolled back after it. A timeout
    /// becomes `Failed` with its own text as the message.
    #[must_use]
    pub fn reworded(self, reword: impl FnOnce(&str) -> String) -> DeployError {
        match self {
            DeployError::Settings(m) => DeployError::Settings(reword(&m)),
            DeployError::Failed(m) => DeployError::Failed(reword(&m)),
            DeployError::Cancelled(m) => DeployError::Cancelled(reword(&m)),
            DeployError::Unavailable(m) => DeployError::Unavailable(reword(&m)),
            timed_out @ DeployError::TimedOut(_) => {
                DeployError::Failed(reword(&timed_out.to_string()))
            }
        }
    }
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs >= 60.0 && duration.subsec_nanos() == 0 && duration.as_secs().is_multiple_of(60) {
        format!("{}m", duration.as_secs() / 60)
    } else {
        format!("{secs:.1}s")
    }
}

/// A settings table was rejected by its plugin. `path` names the key inside
/// the table when the plugin knows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SettingsError {
    pub message: String,
}

impl SettingsError {
    pub fn new(message: impl Into<String>) -> Self {
        SettingsError {
            message: message.into(),
        }
    }
}

/// Why a plugin could not answer a question about an engine (where a
/// container is published, what an image declares, whether an engine
/// answers). The message says what an operator needs to know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The engine (or a registry behind it) could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The engine answered, but not with what was asked for.
    #[error("{0}")]
    Failed(String),
}

/// What an image declares about itself, for auto-created projects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// EXPOSEd ports as the image declares them: `80/tcp`, `53/udp`.
    pub exposed_ports: Vec<String>,
    pub labels: HashMap<String, String>,
    /// True when the image has a HEALTHCHECK.
    pub has_healthcheck: bool,
}

/// Optional capability: look inside an image (pulling it if needed).
#[async_trait]
pub trait ImageInspector: Send + Sync {
    /// What the image `reference` declares.
    ///
    /// # Errors
    /// [`PluginError::Unavailable`] when the engine cannot be reached,
    /// [`PluginError::Failed`] when the image cannot be pulled or read; the
    /// message says which.
    async fn inspect_image(&self, reference: &str) -> Result<ImageFacts, PluginError>;
}

/// One stage's settings, checked and resolved by its plugin when the
/// project file loaded ([`Deployer::prepare`]): what a deployment of the
/// stage runs, and what the daemon asks about the stage meanwhile.
#[async_trait]
pub trait StagePlan: Send + Sync + fmt::Debug {
    /// Deploy `request`, writing progress to `context.log`.
    ///
    /// # Errors
    /// A [`DeployError`] whose message goes to the deployment's log and status.
    async fn deploy(
        &self,
        request: &DeployRequest,
        context: &DeployContext,
    ) -> Result<DeployOutcome, DeployError>;

    /// Whether a deployment that was `running` when wharf died may simply be
    /// run again. A plugin whose deploy is idempotent (replace a container by
    /// the same image) says yes; one that runs an operator's arbitrary script
    /// cannot know, and says no, so the deployment is marked `interrupted`.
    fn rerun_is_safe(&self) -> bool;

    /// The host addresses the stage takes for itself: a route's `listen`,
    /// fixed host ports. The daemon keeps a route off any address another
    /// stage claims; one table alone cannot see that.
    fn claims(&self) -> Vec<routes::Claim> {
        Vec::new()
    }

    /// Where the container `upstream` names publishes its stage's route
    /// port now. An engine that restarts a container (its restart policy,
    /// the engine's own restart, a reboot) may publish it on another port;
    /// the daemon asks this when a route's upstream stops answering, and
    /// moves the route. `None`: the container is gone or not running, or
    /// the stage has no route.
    ///
    /// # Errors
    /// The engine could not be asked.
    async fn locate_upstream(
        &self,
        _upstream: &routes::Upstream,
    ) -> Result<Option<std::net::SocketAddr>, PluginError> {
        Ok(None)
    }
}

/// A deployer plugin.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// The name projects use in `deployer = "…"`, and the name of its table.
    fn name(&self) -> &'static str;

    /// Check a stage's settings table when a project file loads and turn it
    /// into the plan its deployments run. Called once per stage and load;
    /// the plan lives as long as that version of the project file.
    ///
    /// # Errors
    /// A message naming the key and what is wrong with it.
    fn prepare(&self, settings: &Settings) -> Result<Arc<dyn StagePlan>, SettingsError>;

    /// Whether a settings table would load: [`Deployer::prepare`] with the
    /// plan thrown away.
    ///
    /// # Errors
    /// As [`Deployer::prepare`].
    fn validate(&self, settings: &Settings) -> Result<(), SettingsError> {
        self.prepare(settings).map(|_| ())
    }

    /// The engines this plugin deploys to, for `wharf check` (see
    /// [`check`]). Default: none to check.
    fn engines(&self) -> Vec<EngineRef> {
        Vec::new()
    }

    /// Ask the engine `id` (one of [`Deployer::engines`], or another
    /// plugin's with the same id) whether it answers. `None`: this plugin
    /// cannot ask it (another plugin naming the same engine does).
    async fn check_engine(&self, _id: &str) -> Option<EngineReport> {
        None
    }

    /// The image-inspection capability, when this plugin has it.
    fn as_image_inspector(&self) -> Option<&dyn ImageInspector> {
        None
    }

    /// The capability to draft a project's table from an image, for
    /// auto-created projects, when this plugin has it.
    fn as_drafter(&self) -> Option<&dyn Drafter> {
        None
    }
}

/// The plugins wharf knows, by name. Built once at start-up.
#[derive(Clone, Default)]
pub struct Registry {
    plugins: HashMap<&'static str, Arc<dyn Deployer>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, plugin: Arc<dyn Deployer>) {
        self.plugins.insert(plugin.name(), plugin);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Deployer>> {
        self.plugins.get(name)
    }

    /// Registered names, sorted, for error messages ("expected one of …").
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.plugins.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("plugins", &self.names())
            .finish()
    }
}

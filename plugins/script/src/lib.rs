//! The `script` deployer: runs an operator's command to deploy.
//!
//! The command is an argv list, never a shell string, and every value that
//! came from a webhook reaches it only as an environment variable
//! (`WHARF_PROJECT`, `WHARF_STAGE`, `WHARF_REPOSITORY`, `WHARF_TAG`,
//! `WHARF_IMAGE`, `WHARF_DIGEST`, `WHARF_DEPLOYMENT_ID`), so no push can
//! inject a command. The child runs in a process group of its own: on timeout
//! or cancellation the whole group is terminated, so a script's children do
//! not outlive a deployment that was given up ([`wharf_plugin_api::process`]
//! does the running, for this plugin and compose alike).

// Tests may slice strings they wrote themselves (clippy.toml allows the
// other panicking forms in tests).
#![cfg_attr(test, allow(clippy::string_slice))]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::process::Command;
use wharf_plugin_api::process::{Finished, Limits, Output, RunError, Running};
use wharf_plugin_api::{
    DeployContext, DeployError, DeployOutcome, DeployRequest, Deployer, Settings, SettingsError,
    StagePlan,
};

/// Default limit for one run of the command.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// `[script]` as written in a project file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptSettings {
    /// argv: program and arguments.
    command: Vec<String>,
    /// A humantime duration, "90s", "5m".
    #[serde(default)]
    timeout: Option<String>,
    /// Working directory of the command; wharf's own when unset.
    #[serde(default)]
    workdir: Option<PathBuf>,
    /// Extra environment for the command (operator-set, not from webhooks).
    #[serde(default)]
    env: BTreeMap<String, String>,
}

impl ScriptSettings {
    fn parse(settings: &Settings) -> Result<(Self, Duration), SettingsError> {
        let parsed: ScriptSettings = Settings::try_into(settings.clone())
            .map_err(|e| SettingsError::new(format!("[script]: {}", e.message())))?;
        let Some(program) = parsed.command.first() else {
            return Err(SettingsError::new(
                "[script] command is empty: give the program and its arguments as a list",
            ));
        };
        if program.trim().is_empty() {
            return Err(SettingsError::new("[script] command's program is empty"));
        }
        let timeout = match &parsed.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => wharf_plugin_api::duration::parse(text)
                .map_err(|e| SettingsError::new(format!("[script] timeout {e}")))?,
        };
        if timeout.is_zero() {
            return Err(SettingsError::new("[script] timeout must be more than 0"));
        }
        if let Some(key) = parsed.env.keys().find(|k| k.starts_with("WHARF_")) {
            return Err(SettingsError::new(format!(
                "[script] env key '{key}': WHARF_* variables are set by wharf itself"
            )));
        }
        Ok((parsed, timeout))
    }
}

/// The script deployer plugin.
#[derive(Debug, Default)]
pub struct ScriptDeployer;

impl ScriptDeployer {
    pub fn new() -> Self {
        ScriptDeployer
    }
}

impl Deployer for ScriptDeployer {
    fn name(&self) -> &'static str {
        "script"
    }

    fn prepare(&self, settings: &Settings) -> Result<Arc<dyn StagePlan>, SettingsError> {
        let (settings, timeout) = ScriptSettings::parse(settings)?;
        Ok(Arc::new(ScriptPlan { settings, timeout }))
    }
}

/// A stage's `[script]`, checked: the command and its limit.
#[derive(Debug)]
struct ScriptPlan {
    settings: ScriptSettings,
    timeout: Duration,
}

#[async_trait]
impl StagePlan for ScriptPlan {
    async fn deploy(
        &self,
        request: &DeployRequest,
        context: &DeployContext,
    ) -> Result<DeployOutcome, DeployError> {
        let (settings, timeout) = (&self.settings, self.timeout);
        let limits = Limits::new(timeout, context.cancel.clone());
        let running = Running::spawn(command(settings, request), &context.log, Output::Log)
            .map_err(|e| DeployError::Failed(e.to_string()))?;
        context.log.info(format!(
            "started {:?} (pid {}), timeout {}",
            settings.command,
            running.pid(),
            wharf_plugin_api::duration::format(timeout)
        ));
        match running.finish(&limits).await {
            Ok(finished) => judge(&finished),
            Err(RunError::TimedOut { .. }) => Err(DeployError::TimedOut(timeout)),
            Err(RunError::Cancelled { .. }) => Err(DeployError::Cancelled(
                "wharf is shutting down; the command was stopped".into(),
            )),
            Err(error) => Err(DeployError::Failed(error.to_string())),
        }
    }

    /// An operator's script may not be idempotent: never re-run it blindly
    /// after a crash; the deployment is reported `interrupted` instead.
    fn rerun_is_safe(&self) -> bool {
        false
    }
}

/// The command to run: the operator's argv, the deployment's environment.
fn command(settings: &ScriptSettings, request: &DeployRequest) -> Command {
    // Validation guarantees a program; an empty argv still fails cleanly,
    // as a program named "" that cannot be started.
    let (program, args) = settings
        .command
        .split_first()
        .map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
    let mut command = Command::new(program);
    command.args(args);
    // The daemon's own WHARF_* settings (WHARF_CONFIG, …) are not the
    // script's business and would be confused with the deployment's.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WHARF_") {
            command.env_remove(key);
        }
    }
    command
        .envs(&settings.env)
        .env("WHARF_PROJECT", &request.project)
        .env("WHARF_STAGE", &request.stage)
        .env("WHARF_REPOSITORY", &request.repository)
        .env("WHARF_TAG", &request.tag)
        .env("WHARF_IMAGE", request.image())
        .env("WHARF_DIGEST", request.digest.as_deref().unwrap_or(""))
        .env("WHARF_DEPLOYMENT_ID", &request.deployment_id);
    if let Some(dir) = &settings.workdir {
        command.current_dir(dir);
    }
    command
}

fn judge(finished: &Finished) -> Result<DeployOutcome, DeployError> {
    let took = format!("{:.1}s", finished.elapsed.as_secs_f64());
    let what = format!("command {}", finished.describe());
    if finished.status.success() {
        Ok(DeployOutcome {
            summary: format!("{what} in {took}"),
        })
    } else {
        Err(DeployError::Failed(format!("{what} after {took}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_plugin_api::{CancellationToken, LogSink, LogStream};

    fn settings(text: &str) -> Settings {
        text.parse::<Settings>().unwrap()
    }

    fn request() -> DeployRequest {
        DeployRequest {
            deployment_id: "d-1".into(),
            project: "web".into(),
            stage: "staging".into(),
            repository: "docker.io/acme/web".into(),
            tag: "v1; rm -rf /".into(),
            digest: None,
        }
    }

    async fn run(
        text: &str,
    ) -> (
        Result<DeployOutcome, DeployError>,
        Vec<wharf_plugin_api::LogLine>,
    ) {
        let (log, mut lines) = LogSink::channel();
        let context = DeployContext {
            log,
            cancel: CancellationToken::new(),
            routes: None,
        };
        let result = match ScriptDeployer.prepare(&settings(text)) {
            Ok(plan) => plan.deploy(&request(), &context).await,
            Err(e) => Err(DeployError::Settings(e.message)),
        };
        drop(context);
        let mut collected = Vec::new();
        while let Some(line) = lines.recv().await {
            collected.push(line);
        }
        (result, collected)
    }

    #[test]
    fn validate_rejects_bad_tables() {
        let plugin = ScriptDeployer;
        assert!(plugin
            .validate(&settings("command = [\"/bin/true\"]"))
            .is_ok());
        for bad in [
            "command = []",
            "command = \"/bin/true\"",
            "comand = [\"/bin/true\"]",
            "command = [\"/bin/true\"]\ntimeout = \"soon\"",
            "command = [\"/bin/true\"]\ntimeout = \"0s\"",
            "command = [\"/bin/true\"]\nenv = { WHARF_TAG = \"x\" }",
        ] {
            let error = plugin.validate(&settings(bad)).unwrap_err();
            assert!(error.message.contains("[script]"), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn webhook_values_arrive_as_environment_not_shell() {
        let (result, lines) =
            run(r#"command = ["/bin/sh", "-c", "echo \"tag=$WHARF_TAG image=$WHARF_IMAGE\""]"#)
                .await;
        assert!(result.is_ok(), "{result:?}");
        let out: Vec<_> = lines
            .iter()
            .filter(|l| l.stream == LogStream::Stdout)
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(
            out,
            ["tag=v1; rm -rf / image=docker.io/acme/web:v1; rm -rf /"]
        );
    }

    #[tokio::test]
    async fn failure_status_and_stderr_are_reported() {
        let (result, lines) = run(r#"command = ["/bin/sh", "-c", "echo oops >&2; exit 3"]"#).await;
        let error = result.unwrap_err().to_string();
        assert!(error.contains("status 3"), "{error}");
        assert!(lines
            .iter()
            .any(|l| l.stream == LogStream::Stderr && l.text == "oops"));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let marker = std::env::temp_dir().join(format!("wharf-script-{}", std::process::id()));
        let text = format!(
            "command = [\"/bin/sh\", \"-c\", \"(sleep 3; touch {}) & sleep 30\"]\ntimeout = \"300ms\"",
            marker.display()
        );
        let (result, _) = run(&text).await;
        assert!(
            matches!(result, Err(DeployError::TimedOut(_))),
            "{result:?}"
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !marker.exists(),
            "a child of the script survived the timeout"
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_failure() {
        let (result, _) = run(r#"command = ["/nonexistent/deploy"]"#).await;
        let error = result.unwrap_err().to_string();
        assert!(error.contains("/nonexistent/deploy"), "{error}");
    }
}

//! One compose deployment: note what runs now, pull, `up -d --no-deps`,
//! wait until the service is running (and healthy, when it has a
//! healthcheck), and on any failure after `up` bring the previous version
//! back the same way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wharf_plugin_api::process::{Limits, RunError};
use wharf_plugin_api::{
    CancellationToken, DeployContext, DeployError, DeployOutcome, DeployRequest, LogSink,
};
use wharf_registry::reference;

use crate::settings::{ComposeSettings, Variable};
use crate::tools::{self, Compose, Container, ToolError};

/// How often the service's containers are inspected while waiting.
const POLL: Duration = Duration::from_millis(500);
/// Extra time a rollback gets beyond `health_timeout`, for its `up`.
const ROLLBACK_EXTRA: Duration = Duration::from_secs(60);
/// Time for reading a failed container's last output.
const TAIL_LIMIT: Duration = Duration::from_secs(10);
/// How long a container seen restarting while it runs again is watched
/// for its next exit: a running container's inspect says exit status 0,
/// which would hide why it crashed.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(5);

/// What ran before this deployment, to go back to.
#[derive(Debug)]
struct Previous {
    container: Container,
    /// The variable's value that produced the container's image; `None`
    /// when the image cannot have come from the compose file's template.
    value: Option<String>,
}

/// Why the new version did not come up.
#[derive(Debug)]
pub(crate) enum Failure {
    Reason(String),
    TimedOut,
    Cancelled,
}

impl Failure {
    /// What went wrong, for the log and the deployment's reason.
    pub(crate) fn describe(&self, settings: &ComposeSettings) -> String {
        match self {
            Failure::Reason(reason) => reason.clone(),
            Failure::TimedOut => format!(
                "timed out after {}",
                wharf_plugin_api::duration::format(settings.timeout)
            ),
            Failure::Cancelled => "wharf is shutting down".to_string(),
        }
    }

    pub(crate) fn from_tool(error: ToolError, what: &str) -> Failure {
        match error {
            ToolError::Run(RunError::TimedOut { .. }) => Failure::TimedOut,
            ToolError::Run(RunError::Cancelled { .. }) => Failure::Cancelled,
            other => Failure::Reason(format!("{what}: {other}")),
        }
    }
}

/// Deploy `request` with validated `settings`.
///
/// # Errors
/// `Unavailable` when no compose works here; `Failed`, `TimedOut` or
/// `Cancelled` otherwise, saying whether the previous version was restored.
pub async fn run(
    settings: &ComposeSettings,
    request: &DeployRequest,
    context: &DeployContext,
) -> Result<DeployOutcome, DeployError> {
    if let Some(route) = &settings.route {
        return crate::routed::run(settings, route, request, context).await;
    }
    let started = Instant::now();
    let log = &context.log;
    let limits = Limits::new(settings.timeout, context.cancel.clone());
    let variable = settings.variable.name();
    let value = settings.variable.value_for(request);
    let untouched = |error: ToolError, what: &str| untouched(settings, error, what);

    let compose = Compose::detect(settings, log, &limits)
        .await
        .map_err(|e| untouched(e, "finding compose"))?;
    log.info(format!(
        "{} {} deploys service '{}' of {} with {variable}={value}; timeout {}",
        compose.flavor.display(),
        compose.version,
        settings.service,
        settings.file.display(),
        wharf_plugin_api::duration::format(settings.timeout)
    ));

    let previous = previous(&compose, settings, &value, log, &limits)
        .await
        .map_err(|e| untouched(e, "listing the service's containers"))?;

    compose
        .run(&value, &["pull", &settings.service], log, &limits)
        .await
        .map_err(|e| untouched(e, "pulling the new image"))?;

    let outcome = match compose
        .run(
            &value,
            &["up", "-d", "--no-deps", &settings.service],
            log,
            &limits,
        )
        .await
    {
        Err(error) => Err(Failure::from_tool(error, "starting the new version")),
        Ok(_) => wait_ready(&compose, settings, &value, log, &limits).await,
    };
    match outcome {
        Ok(state) => {
            let summary = format!(
                "service {} runs {variable}={value} ({state})",
                settings.service
            );
            log.info(format!(
                "{summary}, {:.1}s after the deployment started",
                started.elapsed().as_secs_f64()
            ));
            Ok(DeployOutcome { summary })
        }
        Err(failure) => Err(roll_back(&compose, settings, previous, failure, log).await),
    }
}

/// The error for a step that failed before anything changed: a stop is
/// just a stop.
pub(crate) fn untouched(settings: &ComposeSettings, error: ToolError, what: &str) -> DeployError {
    match error {
        ToolError::Run(RunError::TimedOut { .. }) => DeployError::TimedOut(settings.timeout),
        ToolError::Run(RunError::Cancelled { .. }) => {
            DeployError::Cancelled("wharf is shutting down; nothing was changed".into())
        }
        ToolError::Missing(message) => DeployError::Unavailable(message),
        other => DeployError::Failed(format!("{what}: {other}; nothing was changed")),
    }
}

/// What the service runs now, and which value of the variable made it.
async fn previous(
    compose: &Compose,
    settings: &ComposeSettings,
    value: &str,
    log: &LogSink,
    limits: &Limits,
) -> Result<Option<Previous>, ToolError> {
    let ids = compose.container_ids(value, log, limits).await?;
    let containers = tools::inspect(&ids, log, limits).await?;
    let Some(container) = containers
        .iter()
        .find(|c| c.running)
        .or(containers.first())
        .cloned()
    else {
        log.info(format!(
            "service {} has no container yet: a failure would have nothing to roll back to",
            settings.service
        ));
        return Ok(None);
    };
    let tag_like = matches!(settings.variable, Variable::Tag(_));
    let variable = settings.variable.name();
    let found = settings
        .template
        .value_of(variable, &container.image, tag_like);
    match &found {
        Some(old) => log.info(format!(
            "service {} now runs {} in {} ({}, {}): a rollback would bring back {variable}={old}",
            settings.service,
            container.image,
            container.name,
            container.short_id(),
            container.status
        )),
        None => log.info(format!(
            "service {} now runs {} in {}, which its image template does not produce: a failure could not be rolled back",
            settings.service, container.image, container.name
        )),
    }
    Ok(Some(Previous {
        container,
        value: found,
    }))
}

/// Wait until every container of the service runs — healthy when it has a
/// healthcheck, else still running after `grace` — within `health_timeout`.
/// Returns a short account of the state ("1 container, healthy").
async fn wait_ready(
    compose: &Compose,
    settings: &ComposeSettings,
    value: &str,
    log: &LogSink,
    limits: &Limits,
) -> Result<String, Failure> {
    let wait = health_limits(settings, limits);
    let ids = match compose.container_ids(value, log, &wait).await {
        Ok(ids) if ids.is_empty() => {
            return Err(Failure::Reason(format!(
                "compose started no container for service {}",
                settings.service
            )))
        }
        Ok(ids) => ids,
        Err(ToolError::Run(RunError::TimedOut { .. })) => return Err(not_ready(settings, "")),
        Err(error) => return Err(Failure::from_tool(error, "listing the new containers")),
    };
    wait_for(&ids, settings, log, limits).await
}

/// `limits`, shortened to `health_timeout` from now.
pub(crate) fn health_limits(settings: &ComposeSettings, limits: &Limits) -> Limits {
    Limits {
        deadline: limits
            .deadline
            .min(tokio::time::Instant::now() + settings.health_timeout),
        cancel: limits.cancel.clone(),
    }
}

fn not_ready(settings: &ComposeSettings, detail: &str) -> Failure {
    Failure::Reason(format!(
        "service {} was not ready within {}{detail}",
        settings.service,
        wharf_plugin_api::duration::format(settings.health_timeout)
    ))
}

/// Wait until the containers `ids` run — healthy when they have a
/// healthcheck, else still running after `grace` — within
/// `health_timeout`. Returns a short account of the state.
pub(crate) async fn wait_for(
    ids: &[String],
    settings: &ComposeSettings,
    log: &LogSink,
    limits: &Limits,
) -> Result<String, Failure> {
    let wait = health_limits(settings, limits);
    let not_ready = |detail: &str| not_ready(settings, detail);
    log.info(format!(
        "waiting up to {} for service {} to be running (and healthy, if it has a healthcheck)",
        wharf_plugin_api::duration::format(settings.health_timeout),
        settings.service
    ));
    let mut restarts: HashMap<String, i64> = HashMap::new();
    let mut running_since: HashMap<String, Instant> = HashMap::new();
    let mut restart_seen: HashMap<String, Instant> = HashMap::new();
    let mut last_state = String::new();
    loop {
        let containers = match tools::inspect(ids, log, &wait).await {
            Ok(containers) => containers,
            Err(ToolError::Run(RunError::TimedOut { .. })) => {
                return Err(not_ready(&last_state));
            }
            Err(error) => return Err(Failure::from_tool(error, "inspecting the new containers")),
        };
        if containers.len() < ids.len() {
            return Err(Failure::Reason(format!(
                "a container of service {} disappeared while it started",
                settings.service
            )));
        }
        let mut ready = 0;
        let mut states = Vec::new();
        for container in &containers {
            let initial = *restarts
                .entry(container.id.clone())
                .or_insert(container.restart_count);
            if let Some(problem) = broken(container, initial) {
                if let Problem::RestartedUnknownStatus = problem {
                    let since = *restart_seen
                        .entry(container.id.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() < EXIT_STATUS_WAIT {
                        states.push(format!("{} restarting", container.name));
                        continue;
                    }
                }
                tools::log_tail(
                    container,
                    log,
                    &Limits::new(TAIL_LIMIT, CancellationToken::new()),
                )
                .await;
                return Err(Failure::Reason(problem.describe(container)));
            }
            let state = match container.health.as_deref() {
                Some("healthy") => {
                    ready += 1;
                    "healthy".to_string()
                }
                Some(health) => health.to_string(),
                None if container.running => {
                    let since = *running_since
                        .entry(container.id.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= settings.grace {
                        ready += 1;
                        format!(
                            "running for {}s, no healthcheck",
                            settings.grace.as_secs_f64().round()
                        )
                    } else {
                        "running".to_string()
                    }
                }
                None => container.status.clone(),
            };
            states.push(format!("{} {state}", container.name));
        }
        let state = states.join(", ");
        if state != last_state {
            log.info(state.clone());
            last_state = format!(": {state}");
        }
        if ready == containers.len() {
            let plural = if ready == 1 { "" } else { "s" };
            let how = if containers.iter().all(|c| c.health.is_some()) {
                "healthy"
            } else {
                "running"
            };
            return Ok(format!("{ready} container{plural}, {how}"));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = wait.cancel.cancelled() => return Err(Failure::Cancelled),
        }
        if tokio::time::Instant::now() >= wait.deadline {
            if limits.remaining().is_zero() {
                return Err(Failure::TimedOut);
            }
            return Err(not_ready(&last_state));
        }
    }
}

/// Why a container counts as failed.
#[derive(Debug, PartialEq)]
enum Problem {
    OutOfMemory,
    Exited,
    /// Seen between two runs: its exit status is the last one.
    Restarting,
    /// Restarted, and running again: Docker has reset its exit status.
    RestartedUnknownStatus,
    Unhealthy,
}

impl Problem {
    fn describe(&self, container: &Container) -> String {
        let name = &container.name;
        let status = container.exit_code;
        match self {
            Problem::OutOfMemory => format!("container {name} was killed: out of memory"),
            Problem::Exited => {
                format!("container {name} exited with status {status} right after it started")
            }
            Problem::Restarting => {
                format!("container {name} keeps restarting (last exit status {status})")
            }
            Problem::RestartedUnknownStatus => format!(
                "container {name} keeps restarting ({} restarts)",
                container.restart_count
            ),
            Problem::Unhealthy => {
                let output = container
                    .health_output
                    .as_deref()
                    .map(|o| format!(" (last check: {})", o.lines().next().unwrap_or(o)))
                    .unwrap_or_default();
                format!("container {name} is unhealthy{output}")
            }
        }
    }
}

/// Why `container` counts as failed, if it does.
fn broken(container: &Container, initial_restarts: i64) -> Option<Problem> {
    if container.oom_killed {
        return Some(Problem::OutOfMemory);
    }
    if matches!(container.status.as_str(), "exited" | "dead") {
        return Some(Problem::Exited);
    }
    if container.restarting {
        return Some(Problem::Restarting);
    }
    if container.restart_count > initial_restarts {
        return Some(Problem::RestartedUnknownStatus);
    }
    if container.health.as_deref() == Some("unhealthy") {
        return Some(Problem::Unhealthy);
    }
    None
}

/// Bring the previous version back after `failure`; the error to report.
async fn roll_back(
    compose: &Compose,
    settings: &ComposeSettings,
    previous: Option<Previous>,
    failure: Failure,
    log: &LogSink,
) -> DeployError {
    let variable = settings.variable.name();
    let why = failure.describe(settings);
    log.info(format!("deployment failed: {why}"));
    let restored = match previous {
        None => format!(
            "service {} had no earlier container, so there is nothing to roll back to",
            settings.service
        ),
        Some(Previous {
            container,
            value: None,
        }) => format!(
            "not rolled back: {variable} could not be read back from the earlier image {}",
            container.image
        ),
        Some(Previous {
            container,
            value: Some(old),
        }) => {
            // The rollback runs even when the deployment was cancelled: a
            // shutdown must not leave a broken service behind.
            let limits = Limits::new(
                settings.health_timeout + ROLLBACK_EXTRA,
                CancellationToken::new(),
            );
            log.info(format!("rolling back to {variable}={old}"));
            match restore(compose, settings, &container, &old, log, &limits).await {
                Ok(state) => format!(
                    "rolled back: service {} runs {variable}={old} again ({state})",
                    settings.service
                ),
                Err(error) => format!("the rollback to {variable}={old} failed too: {error}"),
            }
        }
    };
    log.info(restored.clone());
    match failure {
        Failure::Cancelled => DeployError::Cancelled(restored),
        _ => DeployError::Failed(format!("{why}; {restored}")),
    }
}

async fn restore(
    compose: &Compose,
    settings: &ComposeSettings,
    container: &Container,
    old: &str,
    log: &LogSink,
    limits: &Limits,
) -> Result<String, String> {
    // Point the old reference at the old image again: if the tag was
    // re-pushed, `up` must not pick up the broken image under the old name.
    if reference::split(&container.image).digest.is_none()
        && container.image_id.starts_with("sha256:")
    {
        if let Err(error) = tools::tag(&container.image_id, &container.image, log, limits).await {
            log.info(format!("could not re-tag the earlier image: {error}"));
        }
    }
    compose
        .run(
            old,
            &["up", "-d", "--no-deps", &settings.service],
            log,
            limits,
        )
        .await
        .map_err(|e| e.to_string())?;
    match wait_ready(compose, settings, old, log, limits).await {
        Ok(state) => Ok(state),
        Err(Failure::Reason(reason)) => Err(reason),
        Err(Failure::TimedOut) => Err("it was not ready in time".into()),
        Err(Failure::Cancelled) => Err("cancelled".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(status: &str, restarting: bool, exit_code: i64, restarts: i64) -> Container {
        Container {
            id: "0123".into(),
            name: "shop_web_1".into(),
            image: "r/web:v2".into(),
            image_id: "sha256:aa".into(),
            status: status.into(),
            running: status == "running",
            restarting,
            exit_code,
            oom_killed: false,
            restart_count: restarts,
            health: None,
            health_output: None,
            ports: Default::default(),
        }
    }

    #[test]
    fn a_restart_reports_an_exit_status_only_when_docker_still_has_it() {
        let between_runs = container("restarting", true, 3, 1);
        assert_eq!(broken(&between_runs, 0), Some(Problem::Restarting));
        assert_eq!(
            Problem::Restarting.describe(&between_runs),
            "container shop_web_1 keeps restarting (last exit status 3)"
        );
        // Running again: inspect says 0, which is not why it crashed.
        let running_again = container("running", false, 0, 2);
        assert_eq!(
            broken(&running_again, 0),
            Some(Problem::RestartedUnknownStatus)
        );
        assert!(!Problem::RestartedUnknownStatus
            .describe(&running_again)
            .contains("status 0"));
        assert_eq!(broken(&running_again, 2), None);
        let exited = container("exited", false, 3, 0);
        assert_eq!(broken(&exited, 0), Some(Problem::Exited));
    }
}

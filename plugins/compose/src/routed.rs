//! A compose service behind a route (`[compose.route]`), replaced without
//! an outage the way docker-rollout does it: scale the service to one more
//! container than it has (`up -d --no-deps --no-recreate --scale`), so the
//! new version starts beside the old; wait until the new container is ready
//! and answers on its published route port; switch the proxy to it; let the
//! old one drain; stop and remove it.
//!
//! Nothing of the running version is touched before the switch: a new
//! container that fails is removed, and the route goes on serving the old
//! one, so there is nothing to roll back. The proxy's table is the record
//! of which container serves: a deployment cut short by a crash leaves
//! extra containers, which the next run (the same deployment re-run at
//! start, or the next one) drains and removes before it scales.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wharf_plugin_api::probe;
use wharf_plugin_api::process::Limits;
use wharf_plugin_api::routes::{Route, RouteMode, Routed, Upstream};
use wharf_plugin_api::{
    CancellationToken, DeployContext, DeployError, DeployOutcome, DeployRequest, LogSink,
};

use crate::deploy::{untouched, wait_for, Failure};
use crate::settings::ComposeSettings;
use crate::tools::{self, Compose, Container};

/// How often the new container's route port is tried.
const PROBE_POLL: Duration = Duration::from_millis(100);
/// Time for removing containers after the deployment's own limit.
const CLEANUP_LIMIT: Duration = Duration::from_secs(60);

/// Deploy `request` to a routed service.
///
/// # Errors
/// `Unavailable` when compose or the proxy cannot be used; `Failed`,
/// `TimedOut` or `Cancelled` otherwise, always with the route still on the
/// container it served before.
pub async fn run(
    settings: &ComposeSettings,
    route: &Route,
    request: &DeployRequest,
    context: &DeployContext,
) -> Result<DeployOutcome, DeployError> {
    let started = Instant::now();
    let log = &context.log;
    let limits = Limits::new(settings.timeout, context.cancel.clone());
    let value = settings.variable.value_for(request);
    let variable = settings.variable.name();
    let service = &settings.service;
    let routed = Routed::new(route, context, "compose", &request.project, &request.stage)?;

    let compose = Compose::detect(settings, log, &limits)
        .await
        .map_err(|e| untouched(settings, e, "finding compose"))?;
    log.info(format!(
        "{} {} deploys service '{service}' of {} with {variable}={value} behind route {}; timeout {}",
        compose.flavor.display(),
        compose.version,
        settings.file.display(),
        route.listen,
        wharf_plugin_api::duration::format(settings.timeout)
    ));
    let serving = routed.serving_before_deploy().await?;
    let ids = compose
        .container_ids(&value, log, &limits)
        .await
        .map_err(|e| untouched(settings, e, "listing the service's containers"))?;
    let containers = tools::inspect(&ids, log, &limits)
        .await
        .map_err(|e| untouched(settings, e, "inspecting the service's containers"))?;
    let current = current_and_leftovers(&containers, serving.as_deref());
    if !current.leftovers.is_empty() {
        log.info(format!(
            "the route serves {}; removing {} container(s) an interrupted deployment left: {}",
            current
                .serving
                .first()
                .map_or("nothing", |c| c.name.as_str()),
            current.leftovers.len(),
            names(&current.leftovers)
        ));
        retire(&routed, &current.leftovers, log).await;
    }
    let old = current.serving;
    match old.as_slice() {
        [] => log.info(format!(
            "service {service} runs no container yet: the new one will be the route's first"
        )),
        running => log.info(format!(
            "the route now serves {}; it keeps serving until the new container is ready",
            names(running)
        )),
    }

    compose
        .run(&value, &["pull", service], log, &limits)
        .await
        .map_err(|e| untouched(settings, e, "pulling the new image"))?;

    let before: HashSet<&str> = old.iter().map(|c| c.id.as_str()).collect();
    let scale = format!("{service}={}", old.len() + 1);
    let started_new = compose
        .run(
            &value,
            &[
                "up",
                "-d",
                "--no-deps",
                "--no-recreate",
                "--scale",
                &scale,
                service,
            ],
            log,
            &limits,
        )
        .await;
    // Whatever happened, what is new is ours to keep or remove.
    let new_ids: Vec<String> = match compose.container_ids(&value, log, &limits).await {
        Ok(ids) => ids
            .into_iter()
            .filter(|id| !before.contains(id.as_str()))
            .collect(),
        Err(error) => {
            return Err(Failure::from_tool(error, "listing the new container")
                .into_error(settings, &[], &old, log)
                .await)
        }
    };
    let switched = match started_new {
        Err(error) => Err(Failure::from_tool(error, "starting the new version")),
        Ok(_) if new_ids.is_empty() => Err(Failure::Reason(format!(
            "compose started no new container for service {service}"
        ))),
        Ok(_) => bring_up(settings, route, &routed, &new_ids, log, &limits).await,
    };
    let new = match switched {
        Ok(new) => new,
        Err(failure) => return Err(failure.into_error(settings, &new_ids, &old, log).await),
    };

    // From here the new version serves: the old one only finishes what it
    // has in flight.
    retire(&routed, &old, log).await;
    let summary = format!(
        "service {service} runs {variable}={value} in {} behind route {}",
        new.name, route.listen
    );
    log.info(format!(
        "{summary}, {:.1}s after the deployment started",
        started.elapsed().as_secs_f64()
    ));
    Ok(DeployOutcome { summary })
}

/// The containers the route serves, and the service's others.
struct Current {
    serving: Vec<Container>,
    leftovers: Vec<Container>,
}

/// With the route on one of `containers`, the others are what an
/// interrupted deployment left. With the route on none of them (the
/// first routed deployment, or a route still unset), all of them are the
/// running version.
fn current_and_leftovers(containers: &[Container], serving: Option<&str>) -> Current {
    match serving.filter(|id| containers.iter().any(|c| c.id == *id)) {
        Some(id) => {
            let (serving, leftovers) = containers.iter().cloned().partition(|c| c.id == id);
            Current { serving, leftovers }
        }
        None => Current {
            serving: containers.to_vec(),
            leftovers: Vec::new(),
        },
    }
}

fn names(containers: &[Container]) -> String {
    containers
        .iter()
        .map(|c| format!("{} ({})", c.name, c.short_id()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Wait for the new container, check that it answers on the route's port,
/// and switch the route to it.
async fn bring_up(
    settings: &ComposeSettings,
    route: &Route,
    routed: &Routed<'_>,
    new_ids: &[String],
    log: &LogSink,
    limits: &Limits,
) -> Result<Container, Failure> {
    let state = wait_for(new_ids, settings, log, limits).await?;
    let containers = tools::inspect(new_ids, log, limits)
        .await
        .map_err(|e| Failure::from_tool(e, "inspecting the new container"))?;
    let [new] = containers.as_slice() else {
        return Err(Failure::Reason(format!(
            "compose started {} new containers for service {}, expected one",
            containers.len(),
            settings.service
        )));
    };
    let Some(address) = new.published(route.port) else {
        return Err(Failure::Reason(format!(
            "the new container {} publishes no port {} for the route",
            new.name, route.port
        )));
    };
    log.info(format!(
        "new container {} is ready ({state}); its port {} is published on {address}",
        new.name, route.port
    ));
    if route.mode == RouteMode::Http {
        answers_http(address, settings, log, limits).await?;
    }
    let switched = routed
        .switch(Upstream {
            address,
            container_id: new.id.clone(),
            container: new.name.clone(),
            image: new.image.clone(),
        })
        .await;
    if let Err(e) = switched {
        // The proxy may have switched and only its answer was lost: then
        // the new container serves, and removing it would be an outage.
        if routed.serving().await.ok().flatten().as_deref() != Some(new.id.as_str()) {
            return Err(Failure::Reason(format!("switching the route: {e}")));
        }
        log.info(format!(
            "the proxy's answer to the switch was lost ({e}), but the route serves the new container"
        ));
    }
    log.info(format!(
        "route {} switched to {} ({address})",
        route.listen, new.name
    ));
    Ok(new.clone())
}

/// Wait until `address` answers an HTTP request with a status line (any
/// status: the application's own health is its healthcheck's or `grace`'s
/// to judge). A container that is running is not yet listening: the
/// engine's port forwarder accepts connections either way.
async fn answers_http(
    address: SocketAddr,
    settings: &ComposeSettings,
    log: &LogSink,
    limits: &Limits,
) -> Result<(), Failure> {
    let wait = crate::deploy::health_limits(settings, limits);
    let started = Instant::now();
    loop {
        let last = match probe::http_status(address, "/").await {
            Ok(status) => {
                log.info(format!(
                    "{address} answers HTTP {status} ({:.1}s)",
                    started.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            Err(e) => e,
        };
        tokio::select! {
            _ = tokio::time::sleep(PROBE_POLL) => {}
            _ = wait.cancel.cancelled() => return Err(Failure::Cancelled),
        }
        if tokio::time::Instant::now() >= wait.deadline {
            if limits.remaining().is_zero() {
                return Err(Failure::TimedOut);
            }
            return Err(Failure::Reason(format!(
                "the new container did not answer HTTP on {address} within {} ({last})",
                wharf_plugin_api::duration::format(settings.health_timeout)
            )));
        }
    }
}

/// Drain each of `containers` that has the route's port in flight, then
/// stop and remove them. A failure is logged, not returned: the route no
/// longer sends them anything.
async fn retire(routed: &Routed<'_>, containers: &[Container], log: &LogSink) {
    if containers.is_empty() {
        return;
    }
    for container in containers {
        if let Some(address) = container.published(routed.route.port) {
            routed.drain(address, log).await;
        }
    }
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    let limits = Limits::new(CLEANUP_LIMIT, CancellationToken::new());
    if let Err(error) = tools::remove(&ids, false, log, &limits).await {
        log.info(format!(
            "could not remove {}: {error}; the route does not use it, remove it by hand",
            names(containers)
        ));
    }
}

impl Failure {
    /// Remove the new containers and say what the route still serves.
    async fn into_error(
        self,
        settings: &ComposeSettings,
        new_ids: &[String],
        old: &[Container],
        log: &LogSink,
    ) -> DeployError {
        let why = self.describe(settings);
        log.info(format!("deployment failed: {why}"));
        let limits = Limits::new(CLEANUP_LIMIT, CancellationToken::new());
        if !new_ids.is_empty() {
            if let Ok(containers) = tools::inspect(new_ids, log, &limits).await {
                for container in containers
                    .iter()
                    .filter(|c| !c.running || c.restart_count > 0)
                {
                    tools::log_tail(container, log, &limits).await;
                }
            }
            if let Err(error) = tools::remove(new_ids, true, log, &limits).await {
                log.info(format!("could not remove the new container: {error}"));
            }
        }
        let kept = match old {
            [] => "the route serves nothing yet".to_string(),
            running => format!("the route still serves {}", names(running)),
        };
        log.info(kept.clone());
        match self {
            Failure::Cancelled => DeployError::Cancelled(format!("{why}; {kept}")),
            Failure::TimedOut | Failure::Reason(_) => DeployError::Failed(format!("{why}; {kept}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str) -> Container {
        Container {
            id: id.into(),
            name: format!("shop_web_{id}"),
            image: "r/web:v1".into(),
            image_id: "sha256:aa".into(),
            status: "running".into(),
            running: true,
            restarting: false,
            exit_code: 0,
            oom_killed: false,
            restart_count: 0,
            health: None,
            health_output: None,
            ports: Default::default(),
        }
    }

    #[test]
    fn the_proxys_table_says_which_container_is_the_running_version() {
        let both = [container("1"), container("2")];
        let current = current_and_leftovers(&both, Some("2"));
        assert_eq!(current.serving, [container("2")]);
        assert_eq!(current.leftovers, [container("1")]);
        // A route on a container the service no longer has, or no route
        // yet: nothing is a leftover.
        for serving in [Some("9"), None] {
            let current = current_and_leftovers(&both, serving);
            assert_eq!(current.serving.len(), 2);
            assert!(current.leftovers.is_empty());
        }
    }
}

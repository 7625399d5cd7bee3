//! Rolling a swarm service to the pushed image, and following the swarm
//! until it says how that went.
//!
//! wharf does not replace containers here: the swarm does, with the
//! service's own `UpdateConfig` (parallelism, order, monitor window,
//! failure action). wharf changes the image, forces the update, and reads
//! the service's `UpdateStatus` until it is `completed` (succeeded) or
//! `rollback_completed` (the swarm gave up and put the previous spec back:
//! failed). An update that pauses, outlives `timeout` or is cancelled is
//! rolled back by wharf itself, as `docker service rollback` would, so a
//! failed deployment never leaves a half-updated service behind.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use wharf_engine::swarm::{Membership, NewService, Service, Swarm, Task, UpdateState};
use wharf_engine::EngineError;
use wharf_plugin_api::{DeployContext, DeployError, DeployRequest, LogSink};
use wharf_registry::auth::{self, Credentials};
use wharf_registry::reference;

use crate::settings::{Create, Plan};

/// How often the service and its tasks are looked at while they change.
const POLL: Duration = Duration::from_millis(500);
/// How long an update may go without any `UpdateStatus` before wharf looks
/// at the tasks instead (the swarm records none when no task had to change).
const NO_STATUS_GRACE: Duration = Duration::from_secs(10);
/// How long a cancelled deployment waits for the rollback it asked for:
/// wharf is shutting down, so it must not wait out a whole rollback.
const CANCEL_ROLLBACK_WAIT: Duration = Duration::from_secs(10);
/// How long a completed rollback's tasks may take to run again: the swarm
/// calls a rollback complete once it has replaced the tasks, which may
/// still be starting.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// What a successful deployment changed on one swarm, so that a failure on
/// a later engine can undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An existing service was updated: undo is the swarm's rollback to its
    /// previous spec.
    Updated { service: String, id: String },
    /// The service was created by this deployment: undo removes it.
    Created { service: String },
}

/// Deploy `request` to the service `plan` names, through `swarm`. Returns
/// the summary and what changed.
///
/// # Errors
/// `Unavailable` when the engine is not a swarm manager or cannot be
/// reached; `Failed` when the swarm (or wharf) rolled the update back, or a
/// new service did not come up; `Cancelled` after rolling back on shutdown.
pub async fn deploy(
    swarm: &Swarm,
    plan: &Plan,
    request: &DeployRequest,
    context: &DeployContext,
) -> Result<(String, Change), DeployError> {
    let started = Instant::now();
    let log = &context.log;
    let membership = swarm
        .membership()
        .await
        .map_err(|e| engine_error("cannot ask the engine about its swarm", e))?;
    check_manager(swarm.host(), &membership)?;

    let current = swarm
        .service(&plan.service)
        .await
        .map_err(|e| engine_error(&format!("cannot inspect service {}", plan.service), e))?;
    if current.is_none() && plan.create.is_none() {
        return Err(DeployError::Failed(format!(
            "no swarm service {} (add [swarm.create] to let wharf create it)",
            plan.service
        )));
    }
    let credentials = if plan.registry_auth {
        // Sent with the update so that every node can pull
        // (`--with-registry-auth`).
        auth::for_repository(
            &request.repository,
            log,
            "the nodes pull with their own credentials",
        )
    } else {
        None
    };
    let image = resolve_image(swarm, request, credentials.as_ref(), log).await;

    let (running, change) = match (current, &plan.create) {
        (Some(service), _) => {
            let change = Change::Updated {
                service: service.name.clone(),
                id: service.id.clone(),
            };
            let running = update(
                swarm,
                plan,
                request,
                context,
                service,
                &image,
                credentials.as_ref(),
            )
            .await?;
            (running, change)
        }
        (None, Some(create)) => {
            let running = create_service(
                swarm,
                plan,
                create,
                request,
                context,
                &image,
                credentials.as_ref(),
            )
            .await?;
            let change = Change::Created {
                service: plan.service.clone(),
            };
            (running, change)
        }
        (None, None) => unreachable!("checked above"),
    };
    let summary = format!(
        "service {} runs {} ({running} running task{}) after {:.1}s",
        plan.service,
        request.image(),
        if running == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64()
    );
    Ok((summary, change))
}

/// Undo a successful deployment on `swarm` because a later engine failed:
/// roll an updated service back to its previous spec, remove a service
/// this deployment created. Returns what happened, for the reason.
pub async fn undo(swarm: &Swarm, change: &Change, limit: Duration, log: &LogSink) -> String {
    match change {
        Change::Updated { service, id } => {
            let mut tasks = TaskLog::new(swarm, id, log).await;
            roll_back(swarm, service, &mut tasks, true, limit).await
        }
        Change::Created { service } => match swarm.remove(service).await {
            Ok(()) => format!("service {service}, created by this deployment, was removed"),
            Err(e) => format!(
                "service {service}, created by this deployment, could not be removed ({e}); `docker service rm {service}`"
            ),
        },
    }
}

/// Only a manager of an active swarm takes service calls; anything else is
/// a setup problem worth its own message, before anything is touched.
fn check_manager(host: &str, membership: &Membership) -> Result<(), DeployError> {
    if membership.is_active_manager() {
        return Ok(());
    }
    let why = match membership.state.as_str() {
        "inactive" => {
            "it is in no swarm (run `docker swarm init` there, or point wharf at a manager)"
                .to_string()
        }
        "active" => "it is a worker node; services can only be changed on a manager".to_string(),
        "locked" => "its swarm is locked (`docker swarm unlock`)".to_string(),
        state => format!("its swarm state is '{state}'"),
    };
    let error = if membership.error.is_empty() {
        String::new()
    } else {
        format!(" ({})", membership.error)
    };
    Err(DeployError::Unavailable(format!(
        "{host} is not a swarm manager: {why}{error}; nothing was changed"
    )))
}

fn engine_error(what: &str, error: EngineError) -> DeployError {
    match error {
        EngineError::Unreachable { host, message } => DeployError::Unavailable(format!(
            "cannot reach the Docker engine at {host} (is dockerd running, and may wharf use its socket?): {message}"
        )),
        other => DeployError::Failed(format!("{what}: {other}")),
    }
}

/// `repository:tag@digest` when the digest is known (from the push, else
/// from the registry), so every node runs the very same image even if the
/// tag moves meanwhile; `repository:tag` when the registry cannot say.
async fn resolve_image(
    swarm: &Swarm,
    request: &DeployRequest,
    credentials: Option<&Credentials>,
    log: &LogSink,
) -> String {
    let tagged = request.image();
    if let Some(digest) = &request.digest {
        return format!("{tagged}@{digest}");
    }
    match swarm.registry_digest(&tagged, credentials).await {
        Ok(digest) => {
            log.info(format!("{tagged} is {digest} in the registry"));
            format!("{tagged}@{digest}")
        }
        Err(e) => {
            log.info(format!(
                "cannot resolve {tagged} to a digest ({e}); the nodes pull the tag as it is when they start a task"
            ));
            tagged
        }
    }
}

/// `wharf.*` labels for a service wharf manages.
fn wharf_labels(request: &DeployRequest) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert("wharf.project".into(), request.project.clone());
    labels.insert("wharf.stage".into(), request.stage.clone());
    labels.insert("wharf.deployment".into(), request.deployment_id.clone());
    labels.insert("wharf.image".into(), request.image());
    labels
}

/// Update an existing service and follow the rolling update. Returns the
/// number of tasks running the new image.
async fn update(
    swarm: &Swarm,
    plan: &Plan,
    request: &DeployRequest,
    context: &DeployContext,
    service: Service,
    image: &str,
    credentials: Option<&Credentials>,
) -> Result<usize, DeployError> {
    let log = &context.log;
    let name = service.name.clone();
    let previous_status = service.update.as_ref().and_then(|u| u.started_at.clone());
    let mut tasks = TaskLog::new(swarm, &service.id, log).await;
    // A service wharf created keeps its labels current; an operator's own
    // service is left as the operator labelled it.
    let labels = if service.labels.contains_key("wharf.project") {
        wharf_labels(request)
    } else {
        BTreeMap::new()
    };
    log.info(format!(
        "updating service {name} from {} to {image}",
        short_image(&service.image)
    ));
    let warnings = swarm
        .update_image(&service, image, &labels, credentials)
        .await
        .map_err(|e| {
            engine_error(
                &format!("the swarm refused the update of {name}; nothing was changed"),
                e,
            )
        })?;
    for warning in warnings {
        log.info(format!("swarm: {warning}"));
    }

    let started = Instant::now();
    let deadline = started + plan.timeout;
    let expect_tasks = service.replicas != Some(0);
    // The swarm's reason for a rollback is in the status while it runs;
    // once it completes, the message only says "rollback completed".
    let mut rollback_reason: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = context.cancel.cancelled() => {
                let outcome = roll_back(swarm, &name, &mut tasks, expect_tasks, CANCEL_ROLLBACK_WAIT).await;
                return Err(DeployError::Cancelled(format!(
                    "stopped while service {name} was updating; {outcome}"
                )));
            }
        }
        let current = inspect(swarm, &name).await?;
        let list = tasks.observe().await;
        let status = current
            .update
            .filter(|u| u.started_at.is_some() && u.started_at != previous_status);
        let Some(status) = status else {
            if started.elapsed() >= NO_STATUS_GRACE {
                // The swarm starts no update when no task has to change
                // (a service scaled to 0): then the tasks say it all.
                let wanted: Vec<&Task> = list.iter().filter(|t| t.desired == "running").collect();
                if wanted
                    .iter()
                    .all(|t| t.state == "running" && t.image == image)
                {
                    log.info(format!(
                        "the swarm recorded no rolling update for {name}; {} task(s) run {}",
                        wanted.len(),
                        short_image(image)
                    ));
                    return Ok(wanted.len());
                }
            }
            if Instant::now() >= deadline {
                let outcome = roll_back(swarm, &name, &mut tasks, expect_tasks, plan.timeout).await;
                return Err(DeployError::Failed(format!(
                    "the update of service {name} did not start within {}{}; {outcome}",
                    wharf_plugin_api::duration::format(plan.timeout),
                    tasks.last_error()
                )));
            }
            continue;
        };
        match status.state {
            UpdateState::Completed => {
                let running = running_with(&list, image);
                log.info(format!(
                    "update of {name} completed: {running} task(s) run {}",
                    short_image(image)
                ));
                return Ok(running);
            }
            UpdateState::RollbackStarted if rollback_reason.is_none() => {
                log.info(format!("the swarm rolls {name} back: {}", status.message));
                rollback_reason = Some(status.message);
            }
            UpdateState::RollbackCompleted => {
                let reason = rollback_reason.unwrap_or(status.message);
                let serving = tasks.settle(expect_tasks, SETTLE_LIMIT, &name).await;
                return Err(DeployError::Failed(format!(
                    "the swarm rolled service {name} back ({reason}); {serving}{}",
                    tasks.last_error()
                )));
            }
            UpdateState::RollbackPaused => {
                return Err(DeployError::Failed(format!(
                    "the swarm's rollback of service {name} paused ({}); it needs attention: docker service ps {name}{}",
                    status.message,
                    tasks.last_error()
                )));
            }
            UpdateState::Paused => {
                let outcome = roll_back(swarm, &name, &mut tasks, expect_tasks, plan.timeout).await;
                return Err(DeployError::Failed(format!(
                    "the update of service {name} paused ({}){}; {outcome}",
                    status.message,
                    tasks.last_error()
                )));
            }
            UpdateState::Updating | UpdateState::RollbackStarted | UpdateState::Other(_) => {}
        }
        if Instant::now() >= deadline {
            let outcome = roll_back(swarm, &name, &mut tasks, expect_tasks, plan.timeout).await;
            return Err(DeployError::Failed(format!(
                "the update of service {name} did not complete within {}{}; {outcome}",
                wharf_plugin_api::duration::format(plan.timeout),
                tasks.last_error()
            )));
        }
    }
}

async fn inspect(swarm: &Swarm, name: &str) -> Result<Service, DeployError> {
    swarm
        .service(name)
        .await
        .map_err(|e| engine_error(&format!("cannot inspect service {name}"), e))?
        .ok_or_else(|| {
            DeployError::Failed(format!(
                "service {name} was removed while wharf deployed to it"
            ))
        })
}

/// Ask the swarm to put the previous spec back and wait up to `limit` for
/// it to finish. Returns what happened, for the deployment's reason.
async fn roll_back(
    swarm: &Swarm,
    name: &str,
    tasks: &mut TaskLog<'_>,
    expect_tasks: bool,
    limit: Duration,
) -> String {
    let log = tasks.log;
    let service = match swarm.service(name).await {
        Ok(Some(service)) => service,
        Ok(None) => return format!("service {name} is gone, so nothing was rolled back"),
        Err(e) => {
            return format!("wharf could not roll it back ({e}); check `docker service ps {name}`")
        }
    };
    let before = service.update.as_ref().and_then(|u| u.started_at.clone());
    log.info(format!("asking the swarm to roll service {name} back"));
    if let Err(e) = swarm.roll_back(&service).await {
        return format!(
            "wharf's rollback request was refused ({e}); check `docker service ps {name}`"
        );
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        tasks.observe().await;
        let Ok(Some(current)) = swarm.service(name).await else {
            continue;
        };
        let Some(status) = current
            .update
            .filter(|u| u.started_at.is_some() && u.started_at != before)
        else {
            continue;
        };
        match status.state {
            UpdateState::RollbackCompleted => {
                log.info(format!("service {name} rolled back"));
                let serving = tasks.settle(expect_tasks, SETTLE_LIMIT, name).await;
                return format!("wharf rolled it back: {serving}");
            }
            UpdateState::RollbackPaused => {
                return format!(
                "wharf asked for a rollback, which paused ({}); check `docker service ps {name}`",
                status.message
            )
            }
            _ => {}
        }
    }
    format!(
        "wharf asked the swarm to roll it back, which had not finished after {}; check `docker service ps {name}`",
        wharf_plugin_api::duration::format(limit)
    )
}

/// Create the service from `[swarm.create]` and wait until all its replicas
/// run. Returns the number of running tasks.
async fn create_service(
    swarm: &Swarm,
    plan: &Plan,
    create: &Create,
    request: &DeployRequest,
    context: &DeployContext,
    image: &str,
    credentials: Option<&Credentials>,
) -> Result<usize, DeployError> {
    let log = &context.log;
    let name = &plan.service;
    let mut labels = create.labels.clone();
    labels.extend(wharf_labels(request));
    let new = NewService {
        name: name.clone(),
        image: image.to_string(),
        replicas: create.replicas,
        env: create.env.clone(),
        labels,
        stop_grace_period: create.stop_grace_period,
        ports: create.ports.clone(),
        update: create.update.clone(),
        rollback: create.rollback.clone(),
    };
    log.info(format!(
        "service {name} does not exist: creating it from [swarm.create] with {} replica(s) of {image}",
        create.replicas
    ));
    let id = swarm
        .create(&new, credentials)
        .await
        .map_err(|e| engine_error(&format!("the swarm refused to create service {name}"), e))?;
    let mut tasks = TaskLog::new(swarm, &id, log).await;
    let wanted = usize::try_from(create.replicas).unwrap_or(usize::MAX);
    let deadline = Instant::now() + plan.timeout;
    loop {
        let list = tasks.observe().await;
        let running = running_with(&list, image);
        if running >= wanted {
            log.info(format!("service {name} created: {running} task(s) running"));
            return Ok(running);
        }
        if Instant::now() >= deadline {
            return Err(DeployError::Failed(format!(
                "service {name} was created, but only {running} of {wanted} task(s) run after {}{}; wharf leaves it in place (docker service ps {name}; docker service rm {name} to start over)",
                wharf_plugin_api::duration::format(plan.timeout),
                tasks.last_error()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = context.cancel.cancelled() => {
                return Err(DeployError::Cancelled(format!(
                    "stopped while service {name} was starting; it stays in place"
                )));
            }
        }
    }
}

/// Tasks that should run, do, and run `image`.
fn running_with(tasks: &[Task], image: &str) -> usize {
    tasks
        .iter()
        .filter(|t| t.desired == "running" && t.state == "running" && t.image == image)
        .count()
}

/// `registry/acme/web:v2@sha256:…` → `web:v2`: what a reader of the log
/// recognizes.
fn short_image(image: &str) -> String {
    reference::split(image).short()
}

/// Writes each task's state change to the deployment log once.
struct TaskLog<'a> {
    swarm: &'a Swarm,
    service_id: String,
    log: &'a LogSink,
    /// Task id → the state last logged (or seen before the deployment).
    seen: HashMap<String, String>,
    nodes: HashMap<String, String>,
    /// The newest failed task's line, for the deployment's reason.
    last_error: Option<String>,
}

impl<'a> TaskLog<'a> {
    /// Remember the tasks as they are, so only what changes from here on is
    /// logged.
    async fn new(swarm: &'a Swarm, service_id: &str, log: &'a LogSink) -> TaskLog<'a> {
        let mut task_log = TaskLog {
            swarm,
            service_id: service_id.to_string(),
            log,
            seen: HashMap::new(),
            nodes: swarm.node_names().await.unwrap_or_default(),
            last_error: None,
        };
        if let Ok(tasks) = swarm.tasks(service_id).await {
            for task in tasks {
                task_log.seen.insert(task.id.clone(), task.state.clone());
            }
        }
        task_log
    }

    /// The current tasks, after logging what changed. A failed listing is
    /// an empty list: the next poll tries again.
    async fn observe(&mut self) -> Vec<Task> {
        let Ok(mut tasks) = self.swarm.tasks(&self.service_id).await else {
            return Vec::new();
        };
        tasks.sort_by_key(|t| (t.slot, t.id.clone()));
        for task in &tasks {
            if self.seen.get(&task.id) == Some(&task.state) {
                continue;
            }
            self.seen.insert(task.id.clone(), task.state.clone());
            let line = self.describe(task);
            // A pending task's error ("no suitable node") is a wait, not
            // the failure an operator needs to read in the reason.
            if matches!(task.state.as_str(), "failed" | "rejected") {
                self.last_error = Some(line.clone());
            }
            self.log.info(line);
        }
        tasks
    }

    fn describe(&self, task: &Task) -> String {
        let slot = task.slot.map(|s| format!(" {s}")).unwrap_or_default();
        let node = self
            .nodes
            .get(&task.node_id)
            .cloned()
            .unwrap_or_else(|| task.node_id.chars().take(12).collect());
        let node = if node.is_empty() {
            String::new()
        } else {
            format!(" on {node}")
        };
        let mut line = format!(
            "task{slot}{node}: {} ({})",
            task.state,
            short_image(&task.image)
        );
        if !task.error.is_empty() {
            line.push_str(&format!(": {}", task.error));
        }
        line
    }

    /// Wait up to `limit` until every task the swarm wants running runs
    /// (and, with `expect_tasks`, there is at least one). Returns what to
    /// tell the operator.
    async fn settle(&mut self, expect_tasks: bool, limit: Duration, service: &str) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let tasks = self.observe().await;
            let wanted: Vec<&Task> = tasks.iter().filter(|t| t.desired == "running").collect();
            if (!expect_tasks || !wanted.is_empty()) && wanted.iter().all(|t| t.state == "running")
            {
                return "the previous image serves again".into();
            }
            if Instant::now() >= deadline {
                return format!(
                    "the previous spec is back, but not all its tasks run yet (docker service ps {service})"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `; last task error: …` when a task failed, else nothing.
    fn last_error(&self) -> String {
        self.last_error
            .as_ref()
            .map(|e| format!("; last task error: {e}"))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_shortened_to_what_a_reader_recognizes() {
        assert_eq!(
            short_image("127.0.0.1:5000/acme/web:v2@sha256:abc"),
            "web:v2"
        );
        assert_eq!(short_image("nginx:1.27"), "nginx:1.27");
    }

    #[test]
    fn only_an_active_manager_may_deploy() {
        let membership = |state: &str, manager: bool| Membership {
            state: state.into(),
            manager,
            error: String::new(),
        };
        assert!(check_manager("unix:///s", &membership("active", true)).is_ok());
        for (state, manager, expected) in [
            ("inactive", false, "in no swarm"),
            ("active", false, "worker node"),
            ("locked", false, "locked"),
            ("pending", false, "'pending'"),
        ] {
            match check_manager("unix:///s", &membership(state, manager)) {
                Err(DeployError::Unavailable(message)) => {
                    assert!(
                        message.starts_with("unix:///s is not a swarm manager"),
                        "{message}"
                    );
                    assert!(message.contains(expected), "{message}");
                }
                other => panic!("{state}: expected Unavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn only_tasks_meant_to_run_the_image_count() {
        let task = |desired: &str, state: &str, image: &str| Task {
            id: format!("{desired}{state}{image}"),
            slot: Some(1),
            node_id: "n".into(),
            state: state.into(),
            desired: desired.into(),
            image: image.into(),
            error: String::new(),
        };
        let tasks = [
            task("running", "running", "web:v2"),
            task("running", "starting", "web:v2"),
            task("shutdown", "running", "web:v2"),
            task("running", "running", "web:v1"),
        ];
        assert_eq!(running_with(&tasks, "web:v2"), 1);
    }
}

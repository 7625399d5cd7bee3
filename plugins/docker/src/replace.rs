//! Replacing a stage's container behind a health gate.
//!
//! The promise: a broken image never takes the service down. So nothing is
//! touched until the new image is on the engine and its container created;
//! the old container is only stopped (never removed) until the new one is
//! healthy; and on any failure the new container's last output goes to the
//! deployment log, it is removed, and the old one is renamed back and
//! started again.
//!
//! The old container waits under the name `<name>-wharf-old` until the new
//! one has passed the health gate. That moment, the **commit point**, is
//! recorded on the engine itself: the old container is renamed
//! `<name>-wharf-retired` before it is stopped (start-first) and removed.
//! A rename is atomic on the engine, so whenever wharf dies, the names say
//! which side of the commit point it died on, and the next deployment of
//! the stage puts things back in order first ([`recover`]): a backup means
//! the new container was never verified (it goes, the backup comes back); a
//! retired container means the new one was (the retired one goes). That is
//! what makes a re-run safe.
//!
//! A stage with a route ([`crate::routed`]) always starts the new container
//! beside the old one; after the health gate the proxy is switched to it,
//! and the old one drains before it goes. The proxy's table then outranks
//! the names: a backup whose route already serves `<name>` is past the
//! commit point.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use wharf_engine::{
    ContainerInfo, ContainerSpec, Engine, EngineError, HealthState, Machine, PullEvent, PullLimits,
};
use wharf_plugin_api::{DeployContext, DeployError, DeployRequest, LogSink, LogStream};
use wharf_registry::auth;
use wharf_registry::reference::repository_of;

use crate::routed::{self, Routed};
use crate::settings::{Plan, Strategy};

/// Suffix of the name the old container waits under during a replacement,
/// until the new one passed its health gate.
pub const BACKUP_SUFFIX: &str = "-wharf-old";
/// Suffix of the name the old container takes at the commit point, when the
/// new one passed its health gate and the old one may go.
pub const RETIRED_SUFFIX: &str = "-wharf-retired";
/// How many lines of a failed container's output go to the deployment log.
const FAILED_LOG_LINES: usize = 50;
/// How often the health gate looks at the new container in its first
/// [`POLL_FAST_FOR`]: most containers are ready within a second or two, and
/// with a route every millisecond between ready and switched is added to
/// the deployment. One inspect and one GET every 25 ms is nothing to the
/// engine.
const POLL_FAST: Duration = Duration::from_millis(25);
/// How long the health gate polls at [`POLL_FAST`].
const POLL_FAST_FOR: Duration = Duration::from_secs(3);
/// How often the health gate looks after that: a container that boots
/// slowly gains little from being watched closely, and the engine is asked
/// four times a second at most for as long as `health.timeout` allows.
const POLL: Duration = Duration::from_millis(250);
/// How often pull progress is summarized in the log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The test hook's environment variable; see [`pause_at`].
pub const PAUSE_VARIABLE: &str = "WHARF_TEST_PAUSE_AT";

/// A test hook, and nothing else: with `WHARF_TEST_PAUSE_AT=docker:<step>`
/// in wharf's environment, a replacement reaching `<step>` says so in the
/// deployment log and waits there until it is cancelled, so that an
/// end-to-end test can SIGKILL wharf at exactly that step and check what
/// the recovery makes of it. Unset (as always outside the tests), it only
/// reads the variable.
async fn pause_at(step: &str, context: &DeployContext) {
    let wanted = std::env::var(PAUSE_VARIABLE).unwrap_or_default();
    if wanted.strip_prefix("docker:") != Some(step) {
        return;
    }
    context.log.info(format!(
        "test hook {PAUSE_VARIABLE}: pausing at docker:{step}"
    ));
    context.cancel.cancelled().await;
}

/// Replace the stage's container on `engine` and wait until the new one is
/// healthy. The old container is kept (stopped, or still running with
/// `start-first`) until [`Replaced::commit`], so that a deployment to several
/// engines can still [`Replaced::undo`] this one when a later engine fails.
///
/// # Errors
/// `Failed` (the previous container is serving again, or there was none),
/// `Cancelled` (rolled back the same way), `Settings` for an unreadable
/// `env_file`.
pub async fn stage(
    engine: &Engine,
    plan: &Plan,
    request: &DeployRequest,
    context: &DeployContext,
) -> Result<Replaced, DeployError> {
    let log = &context.log;
    let name = plan.container_name(&request.project, &request.stage);
    let backup = format!("{name}{BACKUP_SUFFIX}");

    let routed = Routed::of(
        plan.route.as_ref(),
        context,
        "docker",
        &request.project,
        &request.stage,
    )?;
    let serving = match &routed {
        Some(routed) => routed.serving_before_deploy().await?,
        None => None,
    };
    recover(engine, &name, log, serving.as_deref())
        .await
        .map_err(|e| {
            failed(
                "cannot put back the containers of an interrupted deployment",
                e,
            )
        })?;
    if let Some(routed) = &routed {
        reconcile_route(engine, routed, &name, serving.as_deref(), log).await;
    }

    let image = if plan.pull {
        tokio::select! {
            pulled = pull(engine, plan, request, log) => pulled?,
            _ = context.cancel.cancelled() => {
                return Err(DeployError::Cancelled("stopped while pulling; nothing was changed".into()))
            }
        }
    } else {
        let image = request.pull_reference();
        match engine.image(&image).await {
            Ok(Some(_)) => image,
            Ok(None) => {
                return Err(DeployError::Failed(format!(
                    "image {image} is not on the engine and pull = false; nothing was changed"
                )))
            }
            Err(e) => return Err(failed("cannot inspect the image; nothing was changed", e)),
        }
    };
    let spec = container_spec(plan, request, &name, &image)?;
    replace(
        engine,
        plan,
        &spec,
        &backup,
        context,
        routed,
        &request.image(),
    )
    .await
}

/// After a recovery, make the route point at the stage's container if it
/// points elsewhere (or nowhere): the container under the stable name is
/// the last verified one. A container from before the stage had a route
/// publishes no route port; the deployment then creates the route.
async fn reconcile_route(
    engine: &Engine,
    routed: &Routed<'_>,
    name: &str,
    serving: Option<&str>,
    log: &LogSink,
) {
    let Ok(Some(current)) = engine.container(name).await else {
        return;
    };
    if serving == Some(current.id.as_str())
        || !current.running
        || routed::address_of(routed, &current).is_none()
    {
        return;
    }
    let image = current
        .labels
        .get("wharf.image")
        .cloned()
        .unwrap_or_default();
    match routed::switch_to(routed, &current, name, &image).await {
        Ok(address) => log.info(format!(
            "the route {} pointed elsewhere; it serves {name} ({address}) again",
            routed.route.listen
        )),
        Err(e) => log.info(format!("could not point the route at {name}: {e}")),
    }
}

/// A replacement whose new container passed the health gate, with the old
/// one still kept under the backup name.
#[derive(Debug)]
pub struct Replaced {
    engine: Engine,
    name: String,
    backup: String,
    new: String,
    old: Option<ContainerInfo>,
    /// Whether the old container was stopped for the new one (stop-first).
    stopped_old: bool,
    /// With a route: where the proxy reached the old container, to drain.
    old_upstream: Option<SocketAddr>,
}

impl Replaced {
    /// Keep the new version: pass the commit point (the old container is
    /// renamed from the backup name to the retired one), stop (start-first)
    /// and remove the old container, then prune old images. Returns the
    /// summary line. Failures here are logged, never fatal: the new version
    /// serves.
    pub async fn commit(
        self,
        plan: &Plan,
        request: &DeployRequest,
        context: &DeployContext,
    ) -> String {
        let log = &context.log;
        let Replaced {
            engine,
            name,
            backup,
            new,
            old,
            stopped_old,
            old_upstream,
        } = self;
        if let Some(old_upstream) = old_upstream {
            if let Ok(Some(routed)) = Routed::of(
                plan.route.as_ref(),
                context,
                "docker",
                &request.project,
                &request.stage,
            ) {
                routed.drain(old_upstream, log).await;
            }
        }
        if let Some(old) = &old {
            let retired = format!("{name}{RETIRED_SUFFIX}");
            if let Err(e) = engine.rename(&old.id, &retired).await {
                // Still named as the backup: removing it below passes the
                // commit point all the same; only if that fails too would
                // the next recovery take it for the last verified version.
                log.info(format!(
                    "could not rename the previous container {backup} to {retired}: {e}"
                ));
            }
            pause_at("after-commit", context).await;
            // start-first: the old one still runs; let it finish its
            // requests as a `docker stop` would.
            if !stopped_old && old.running {
                if let Err(e) = engine.stop(&old.id, plan.stop_timeout).await {
                    log.info(format!("could not stop the previous container: {e}"));
                }
            }
            match engine.remove(&old.id).await {
                Ok(()) => log.info(format!("removed the previous container ({})", short(&old.id))),
                // The new version serves; the leftover is cleaned up by
                // the next deployment's recovery.
                Err(e) => log.info(format!(
                    "could not remove the previous container ({}): {e}; the next deployment removes it",
                    short(&old.id)
                )),
            }
        }
        if plan.keep_images > 0 {
            prune_images(&engine, &request.repository, &new, plan.keep_images, log).await;
        }
        format!(
            "{name} runs {} (container {})",
            request.image(),
            short(&new)
        )
    }

    /// Go back: remove the new container, put the old one back under its
    /// name and start it again. Returns what happened, for the error.
    pub async fn undo(self, log: &LogSink) -> String {
        let swap = Swap {
            engine: &self.engine,
            name: &self.name,
            backup: &self.backup,
            old: self.old.clone(),
            log,
        };
        swap.restore(Some(&self.new), self.stopped_old).await
    }
}

fn failed(what: &str, error: EngineError) -> DeployError {
    DeployError::Failed(format!("{what}: {error}"))
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Put a stage's containers back in order after a deployment that did not
/// finish (wharf was killed mid-way), so that the last verified container
/// serves. The names on the engine say how far it got:
/// - `<name>-wharf-retired`: past the commit point, `<name>` passed its
///   health gate and is kept; the retired one is removed (or, should
///   `<name>` be gone, restored: it is the only verified one left);
/// - `<name>-wharf-old` while the stage's route (`serving`: the container
///   id the proxy sends traffic to) already serves `<name>`: the route was
///   switched, so `<name>` passed its health gate; the backup is removed;
/// - `<name>-wharf-old` otherwise: before the commit point, whatever `<name>` is
///   (created, starting, running, healthy so far) it was never verified: it
///   is removed, and the backup gets its name back and is started.
///
/// Each step leaves names that this same rule reads correctly, so a crash
/// during the recovery itself is recovered by the next one.
///
/// # Errors
/// The engine failed.
pub async fn recover(
    engine: &Engine,
    name: &str,
    log: &LogSink,
    serving: Option<&str>,
) -> Result<(), EngineError> {
    let backup = format!("{name}{BACKUP_SUFFIX}");
    let retired = format!("{name}{RETIRED_SUFFIX}");
    if let Some(old) = engine.container(&retired).await? {
        if engine.container(name).await?.is_some() {
            log.info(format!(
                "found {retired}: an interrupted deployment had passed its health gate, so {name} is the verified version and {retired} is removed"
            ));
            engine.remove(&old.id).await?;
        } else {
            log.info(format!(
                "found {retired} left by an interrupted deployment and no {name}: restoring it"
            ));
            restore_as(engine, &old, name).await?;
        }
    }
    let Some(old) = engine.container(&backup).await? else {
        return Ok(());
    };
    match engine.container(name).await? {
        None => log.info(format!(
            "found {backup} left by an interrupted deployment and no {name}: restoring it"
        )),
        // The route was switched to the new container: it passed its
        // health gate, whatever the names say.
        Some(current) if serving == Some(current.id.as_str()) => {
            log.info(format!(
                "found {backup} left by an interrupted deployment whose route already serves {name} ({}): {name} is the verified version and {backup} is removed",
                short(&current.id)
            ));
            return engine.remove(&old.id).await;
        }
        Some(current) => {
            log.info(format!(
                "found {backup} left by an interrupted deployment before its health gate passed: removing the unverified {name} ({}) and restoring {backup}",
                short(&current.id)
            ));
            engine.remove(&current.id).await?;
        }
    }
    restore_as(engine, &old, name).await
}

/// Give a container left by an interrupted deployment its name back and
/// make sure it runs.
async fn restore_as(engine: &Engine, old: &ContainerInfo, name: &str) -> Result<(), EngineError> {
    engine.rename(&old.id, name).await?;
    if !old.running {
        engine.start(&old.id).await?;
    }
    Ok(())
}

/// Pull the exact tag (or digest), with credentials from the Docker config
/// file, and report progress in a condensed form.
async fn pull(
    engine: &Engine,
    plan: &Plan,
    request: &DeployRequest,
    log: &LogSink,
) -> Result<String, DeployError> {
    let credentials = auth::for_repository(&request.repository, log, "it pulls anonymously");
    let reference = request.pull_reference();
    let version = request.digest.as_deref().unwrap_or(&request.tag);
    log.info(format!("pulling {reference}"));
    let started = Instant::now();
    let mut progress = PullProgress::new(log.clone());
    let result = engine
        .pull(
            &request.repository,
            version,
            credentials.as_ref(),
            PullLimits {
                overall: plan.pull_timeout,
                idle: plan.pull_idle_timeout,
            },
            |event| progress.event(event),
        )
        .await;
    progress.finish();
    match result {
        Ok(()) => {
            log.info(format!(
                "pulled {reference} in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            Ok(reference)
        }
        Err(EngineError::Unreachable { host, message }) => Err(DeployError::Unavailable(format!(
            "cannot reach the Docker engine at {host} to pull {reference}: {message}"
        ))),
        Err(e) => Err(DeployError::Failed(format!(
            "cannot pull {reference}: {e}; the running container was not touched"
        ))),
    }
}

/// Turns the engine's byte-by-byte pull events into a few log lines: the
/// registry's own messages, a summary every few seconds while layers
/// download, and a count of layers at the end.
struct PullProgress {
    log: LogSink,
    layers: BTreeMap<String, (i64, i64)>,
    done: usize,
    present: usize,
    last_summary: Instant,
}

impl PullProgress {
    fn new(log: LogSink) -> Self {
        PullProgress {
            log,
            layers: BTreeMap::new(),
            done: 0,
            present: 0,
            last_summary: Instant::now(),
        }
    }

    fn event(&mut self, event: PullEvent) {
        let layer = event.layer.clone().unwrap_or_default();
        match event.status.as_str() {
            "Pulling fs layer" | "Waiting" | "Verifying Checksum" | "Download complete" => {}
            "Downloading" => {
                if let (Some(current), Some(total)) = (event.current, event.total) {
                    self.layers.insert(layer, (current, total));
                }
                if self.last_summary.elapsed() >= PROGRESS_EVERY {
                    self.last_summary = Instant::now();
                    let (current, total) = self
                        .layers
                        .values()
                        .fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
                    self.log.info(format!(
                        "downloading: {} of {} ({} layers in progress, {} done)",
                        human_bytes(current),
                        human_bytes(total),
                        self.layers.len(),
                        self.done
                    ));
                }
            }
            "Extracting" => {}
            "Pull complete" => {
                self.layers.remove(&layer);
                self.done += 1;
            }
            "Already exists" => self.present += 1,
            status => self.log.info(status.to_string()),
        }
    }

    fn finish(&self) {
        if self.done + self.present > 0 {
            self.log.info(format!(
                "layers: {} pulled, {} already present",
                self.done, self.present
            ));
        }
    }
}

fn human_bytes(bytes: i64) -> String {
    let bytes = bytes.max(0) as f64;
    if bytes >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", bytes / (1024.0 * 1024.0 * 1024.0))
    } else if bytes >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", bytes / 1024.0)
    }
}

/// The container to create, from the plan and the request.
fn container_spec(
    plan: &Plan,
    request: &DeployRequest,
    name: &str,
    image: &str,
) -> Result<ContainerSpec, DeployError> {
    let mut env = BTreeMap::new();
    if let Some(path) = &plan.env_file {
        let text = wharf_plugin_api::files::read_limited_to_string(path).map_err(|e| {
            DeployError::Failed(format!(
                "cannot read env_file {}: {e}; the running container was not touched",
                path.display()
            ))
        })?;
        env.extend(parse_env_file(&text));
    }
    env.extend(plan.env.clone());
    let mut labels = plan.labels.clone();
    labels.insert("wharf.project".into(), request.project.clone());
    labels.insert("wharf.stage".into(), request.stage.clone());
    labels.insert("wharf.deployment".into(), request.deployment_id.clone());
    labels.insert("wharf.image".into(), request.image());
    if let Some(digest) = &request.digest {
        labels.insert("wharf.digest".into(), digest.clone());
    }
    let mut ports: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for port in &plan.ports {
        ports.entry(port.key()).or_default().push((
            port.host_ip.clone(),
            port.host_port.map(|p| p.to_string()).unwrap_or_default(),
        ));
    }
    // The route's upstream: loopback only, a port of its own (never
    // `listen`, which the proxy owns), so old and new run side by side.
    // wharf picks the port rather than the engine: an engine-chosen port
    // changes each time the container restarts (a crash under a restart
    // policy, dockerd restarting, a reboot), and the route would point at
    // nothing; a fixed one is kept by the engine across restarts.
    if let Some(route) = &plan.route {
        let host_port = free_loopback_port().map_err(|e| {
            DeployError::Unavailable(format!(
                "cannot find a free loopback port for the route's upstream: {e}; nothing was changed"
            ))
        })?;
        ports
            .entry(format!("{}/tcp", route.port))
            .or_default()
            .push(("127.0.0.1".into(), host_port.to_string()));
    }
    let network = plan
        .primary_network
        .as_ref()
        .map(|n| (n.clone(), plan.networks.get(n).cloned().unwrap_or_default()));
    Ok(ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        command: plan.command.clone(),
        entrypoint: plan.entrypoint.clone(),
        labels,
        ports,
        binds: plan.volumes.clone(),
        network,
        restart: plan.restart.name.clone(),
        restart_max: plan.restart.max_retries,
        memory: plan.memory,
        nano_cpus: plan.nano_cpus,
        stop_timeout: i64::try_from(plan.stop_timeout.as_secs()).ok(),
    })
}

/// A loopback port free right now, as the kernel picks one for a listener
/// (the same ephemeral range the engine would choose from).
fn free_loopback_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Docker's env-file format: `KEY=VALUE` lines, `#` comments and blank lines
/// skipped, a bare `KEY` taken from wharf's own environment when set.
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|line| line.trim_start())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| match line.split_once('=') {
            Some((key, value)) => Some((key.trim_end().to_string(), value.to_string())),
            None => std::env::var(line.trim_end())
                .ok()
                .map(|value| (line.trim_end().to_string(), value)),
        })
        .collect()
}

/// Swap the containers, up to a healthy new one.
async fn replace(
    engine: &Engine,
    plan: &Plan,
    spec: &ContainerSpec,
    backup: &str,
    context: &DeployContext,
    routed: Option<Routed<'_>>,
    image: &str,
) -> Result<Replaced, DeployError> {
    let log = &context.log;
    let name = spec.name.as_str();
    let old = engine.container(name).await.map_err(|e| {
        failed(
            "cannot inspect the current container; nothing was changed",
            e,
        )
    })?;
    let swap = Swap {
        engine,
        name,
        backup,
        old: old.clone(),
        log,
    };
    if let Some(old) = &old {
        engine.rename(&old.id, backup).await.map_err(|e| {
            failed(
                &format!("cannot rename {name} to {backup}; nothing was changed"),
                e,
            )
        })?;
        pause_at("after-rename", context).await;
    }

    // Created before the old one stops: a spec the engine refuses (unknown
    // network, bad volume) costs no downtime.
    let new = match engine.create(spec).await {
        Ok(id) => id,
        Err(e) => {
            let restored = swap.restore(None, false).await;
            return Err(DeployError::Failed(format!(
                "cannot create the new container: {e}; {restored}"
            )));
        }
    };
    for (network, aliases) in &plan.networks {
        if Some(network) == plan.primary_network.as_ref() {
            continue;
        }
        if let Err(e) = engine.join_network(&new, network, aliases).await {
            let restored = swap.restore(Some(&new), false).await;
            return Err(DeployError::Failed(format!(
                "cannot join network {network}: {e}; {restored}"
            )));
        }
    }
    log.info(format!(
        "created {name} ({}) from {}",
        short(&new),
        spec.image
    ));

    let stopped_old = plan.strategy == Strategy::StopFirst;
    if let (true, Some(old)) = (stopped_old, &old) {
        if old.running {
            log.info(format!(
                "stopping the previous container ({})",
                short(&old.id)
            ));
            if let Err(e) = engine.stop(&old.id, plan.stop_timeout).await {
                let restored = swap.restore(Some(&new), true).await;
                return Err(DeployError::Failed(format!(
                    "cannot stop the previous container: {e}; {restored}"
                )));
            }
            pause_at("after-stop", context).await;
        }
    }
    if let Err(e) = engine.start(&new).await {
        let restored = swap.restore(Some(&new), stopped_old).await;
        return Err(DeployError::Failed(format!(
            "the new container did not start: {e}; {restored}"
        )));
    }
    log.info(format!("started {name}; waiting until it is healthy"));
    pause_at("health-gate", context).await;

    let gate = tokio::select! {
        verdict = health_gate(engine, plan, &new, log) => verdict,
        _ = context.cancel.cancelled() => Gate::Cancelled,
    };
    match gate {
        Gate::Healthy(how) => {
            log.info(format!("{name} is healthy: {how}"));
            let mut old_upstream = None;
            if let Some(routed) = &routed {
                let switched = match engine.container(&new).await {
                    Ok(Some(info)) => routed::switch_to(routed, &info, name, image).await,
                    Ok(None) => Err("the new container disappeared".into()),
                    Err(e) => Err(format!("cannot inspect the new container: {e}")),
                };
                match switched {
                    Ok(address) => log.info(format!(
                        "route {} switched to {name} ({address}): new requests go to the new container",
                        routed.route.listen
                    )),
                    Err(why) => {
                        let restored = swap.restore(Some(&new), stopped_old).await;
                        return Err(DeployError::Failed(format!(
                            "cannot switch route {} to the new container: {why}; the route was left as it was; {restored}",
                            routed.route.listen
                        )));
                    }
                }
                old_upstream = old.as_ref().and_then(|old| routed::address_of(routed, old));
                pause_at("after-switch", context).await;
            }
            Ok(Replaced {
                engine: engine.clone(),
                name: name.to_string(),
                backup: backup.to_string(),
                new,
                old,
                stopped_old,
                old_upstream,
            })
        }
        Gate::Unhealthy(why) => {
            swap.capture_output(&new).await;
            let restored = swap.restore(Some(&new), stopped_old).await;
            Err(DeployError::Failed(format!("{why}; {restored}")))
        }
        Gate::Cancelled => {
            let restored = swap.restore(Some(&new), stopped_old).await;
            Err(DeployError::Cancelled(format!(
                "stopped while waiting for the new container to become healthy; {restored}"
            )))
        }
    }
}

/// The state of a replacement in progress, and how to undo it.
struct Swap<'a> {
    engine: &'a Engine,
    name: &'a str,
    backup: &'a str,
    old: Option<ContainerInfo>,
    log: &'a LogSink,
}

impl Swap<'_> {
    /// The failed container's last lines, into the deployment log.
    async fn capture_output(&self, new: &str) {
        match self.engine.tail(new, FAILED_LOG_LINES).await {
            Ok(lines) if lines.is_empty() => self.log.info("the new container wrote no output"),
            Ok(lines) => {
                self.log.info(format!(
                    "last {} lines of the new container's output:",
                    lines.len()
                ));
                for (is_stderr, text) in lines {
                    let stream = if is_stderr {
                        LogStream::Stderr
                    } else {
                        LogStream::Stdout
                    };
                    self.log.line(stream, text);
                }
            }
            Err(e) => self
                .log
                .info(format!("could not read the new container's output: {e}")),
        }
    }

    /// Remove the new container and put the old one back under its name,
    /// started again when it was running (and `stopped` says we stopped it).
    /// Returns what happened, for the error message.
    async fn restore(&self, new: Option<&str>, stopped: bool) -> String {
        if let Some(new) = new {
            if let Err(e) = self.engine.remove(new).await {
                self.log
                    .info(format!("could not remove the new container: {e}"));
            } else {
                self.log
                    .info(format!("removed the new container ({})", short(new)));
            }
        }
        let Some(old) = &self.old else {
            return "there was no previous container to restore".into();
        };
        if let Err(e) = self.engine.rename(&old.id, self.name).await {
            return format!(
                "restoring the previous container failed ({e}); it is left as {} and the next deployment restores it",
                self.backup
            );
        }
        if old.running && stopped {
            if let Err(e) = self.engine.start(&old.id).await {
                return format!("the previous container could not be started again: {e}");
            }
        }
        let message = if old.running {
            format!(
                "the previous container ({}) was restored and serves again",
                short(&old.id)
            )
        } else {
            format!(
                "the previous container ({}) was restored (it was not running before)",
                short(&old.id)
            )
        };
        self.log.info(message.clone());
        message
    }
}

enum Gate {
    Healthy(String),
    Unhealthy(String),
    Cancelled,
}

/// Wait until the new container is healthy: its HEALTHCHECK reports
/// healthy and the HTTP check (when configured) answers the expected
/// status; with neither, it must keep running for `health.grace`. It fails
/// at once when the container exits or the engine restarts it.
async fn health_gate(engine: &Engine, plan: &Plan, id: &str, log: &LogSink) -> Gate {
    let started = Instant::now();
    let deadline = started + plan.health.timeout;
    let http = plan.health.http.as_ref();
    let mut has_healthcheck = None;
    let mut last_wait = String::new();
    let mut announced = false;
    loop {
        let info = match engine.container(id).await {
            Ok(Some(info)) => info,
            Ok(None) => return Gate::Unhealthy("the new container disappeared".into()),
            Err(e) => return Gate::Unhealthy(format!("cannot inspect the new container: {e}")),
        };
        if let Some(why) = ended(&info) {
            return Gate::Unhealthy(why);
        }
        let healthcheck = *has_healthcheck.get_or_insert(info.health.is_some());
        if !announced {
            announced = true;
            log.info(match (healthcheck, http) {
                (true, Some(h)) => format!("health: the image's HEALTHCHECK, then HTTP GET {} on port {} = {}", h.path, h.port, h.status),
                (true, None) => "health: the image's HEALTHCHECK".into(),
                (false, Some(h)) => format!("health: HTTP GET {} on port {} = {}", h.path, h.port, h.status),
                (false, None) => format!(
                    "health: no HEALTHCHECK and no health.http; the container must keep running for {}",
                    wharf_plugin_api::duration::format(plan.health.grace)
                ),
            });
        }
        let mut passed = true;
        match info.health {
            Some(HealthState::Unhealthy) => {
                return Gate::Unhealthy(format!(
                    "the new container is unhealthy (HEALTHCHECK: {})",
                    info.last_health_output.as_deref().unwrap_or("no output")
                ))
            }
            Some(HealthState::Starting) => {
                passed = false;
                last_wait = "its HEALTHCHECK still reports starting".into();
            }
            Some(HealthState::Healthy) | None => {}
        }
        if let (true, Some(check)) = (passed, http) {
            match probe_target(&info, check.port, engine.machine()) {
                None => {
                    return Gate::Unhealthy(format!(
                        "health.http.port {} is neither published where wharf can reach it nor reachable on a container network",
                        check.port
                    ))
                }
                Some(addr) => match wharf_plugin_api::probe::http_status(addr, &check.path).await {
                    Ok(status) if status == check.status => {}
                    Ok(status) => {
                        passed = false;
                        last_wait = format!(
                            "GET {} on {addr} answered {status}, expected {}",
                            check.path, check.status
                        );
                    }
                    Err(why) => {
                        passed = false;
                        last_wait = why;
                    }
                },
            }
        }
        if passed && !healthcheck && http.is_none() && started.elapsed() < plan.health.grace {
            passed = false;
            last_wait = "the grace period is not over".into();
        }
        if passed {
            let how = match (healthcheck, http) {
                (true, Some(_)) => "HEALTHCHECK healthy and HTTP check passed",
                (true, None) => "HEALTHCHECK healthy",
                (false, Some(_)) => "HTTP check passed",
                (false, None) => "still running after the grace period",
            };
            return Gate::Healthy(format!(
                "{how} after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
        if Instant::now() >= deadline {
            return Gate::Unhealthy(format!(
                "the new container was not healthy within {} ({last_wait})",
                wharf_plugin_api::duration::format(plan.health.timeout)
            ));
        }
        tokio::time::sleep(poll_after(started.elapsed())).await;
    }
}

/// How long the health gate waits before its next look, `elapsed` into it:
/// closely at first, then backing off, never past [`POLL`].
fn poll_after(elapsed: Duration) -> Duration {
    if elapsed < POLL_FAST_FOR {
        return POLL_FAST;
    }
    // Doubling from POLL_FAST each further second, up to POLL.
    let doublings = elapsed.saturating_sub(POLL_FAST_FOR).as_secs().min(8);
    (POLL_FAST * (1u32 << doublings)).min(POLL)
}

/// Why a container counts as failed however its checks look: it exited, or
/// the engine restarted it (a crash loop under a restart policy).
fn ended(info: &ContainerInfo) -> Option<String> {
    if info.restart_count > 0 || info.restarting {
        // While the engine restarts it, the exit code may already be reset.
        let code = match info.exit_code {
            0 => String::new(),
            code => format!("exit code {code}, "),
        };
        return Some(format!(
            "the new container keeps exiting ({code}restarted {} time(s) by the engine)",
            info.restart_count.max(1)
        ));
    }
    if !info.running {
        let mut why = format!("the new container exited with code {}", info.exit_code);
        if info.oom_killed {
            why.push_str(" (killed: out of memory)");
        }
        if !info.error.is_empty() {
            why.push_str(&format!(" ({})", info.error));
        }
        return Some(why);
    }
    None
}

/// Where to reach a container's port from wharf: its published host port
/// (a wildcard binding through loopback, or through the engine's machine
/// when the engine is remote), else — on this machine only — its address on
/// a network.
pub(crate) fn probe_target(
    info: &ContainerInfo,
    port: u16,
    machine: Machine,
) -> Option<SocketAddr> {
    let key = format!("{port}/tcp");
    if let Some((_, ip, host_port)) = info.published.iter().find(|(k, _, _)| *k == key) {
        let bound = ip.parse::<IpAddr>().ok();
        let ip = match (machine, bound) {
            (Machine::Local, Some(IpAddr::V4(v4))) if v4.is_unspecified() => {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
            (Machine::Local, Some(IpAddr::V6(v6))) if v6.is_unspecified() => {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            }
            (Machine::Local, Some(ip)) => ip,
            (Machine::Local, None) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            // Bound to the remote machine's loopback: out of wharf's reach.
            (Machine::Remote(_), Some(ip)) if ip.is_loopback() => return None,
            (Machine::Remote(_), Some(ip)) if !ip.is_unspecified() => ip,
            (Machine::Remote(address), _) => address?,
        };
        return Some(SocketAddr::new(ip, *host_port));
    }
    if machine != Machine::Local {
        return None;
    }
    info.addresses
        .iter()
        .find_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
}

/// After a success: keep the image the new container runs and the newest
/// others of `repository` up to `keep` in all; remove the rest, never one
/// that a container (running or not) uses, and only by this repository's
/// names. Failures are logged, never fatal: the deployment already succeeded.
async fn prune_images(
    engine: &Engine,
    repository: &str,
    new_container: &str,
    keep: usize,
    log: &LogSink,
) {
    let listed = (
        engine.images().await,
        engine.images_in_use().await,
        engine.container(new_container).await,
    );
    let (images, in_use, current) = match listed {
        (Ok(images), Ok(in_use), Ok(current)) => (images, in_use, current),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            log.info(format!("keep_images: cannot list images: {e}"));
            return;
        }
    };
    let current = current.map(|c| c.image_id).unwrap_or_default();
    let mut mine: Vec<_> = images
        .into_iter()
        .filter(|image| image.id != current)
        .filter(|image| {
            image
                .references
                .iter()
                .any(|r| repository_of(r).is_ok_and(|r| r == repository))
        })
        .collect();
    mine.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
    for image in mine.into_iter().skip(keep.saturating_sub(1)) {
        if in_use.contains(&image.id) {
            continue;
        }
        let names: Vec<_> = image
            .references
            .iter()
            .filter(|r| repository_of(r).is_ok_and(|r| r == repository))
            .collect();
        for name in names {
            match engine.remove_image(name).await {
                Ok(()) => log.info(format!("keep_images: removed {name}")),
                Err(EngineError::NotFound(_)) => {}
                Err(e) => log.info(format!("keep_images: could not remove {name}: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_read_like_docker() {
        std::env::set_var("WHARF_DOCKER_TEST_INHERITED", "from-wharf");
        let parsed = parse_env_file(
            "# comment\n\nA=1\n  B = two words \nC==x\nWHARF_DOCKER_TEST_INHERITED\nWHARF_DOCKER_TEST_UNSET\n",
        );
        assert_eq!(
            parsed,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), " two words ".to_string()),
                ("C".to_string(), "=x".to_string()),
                (
                    "WHARF_DOCKER_TEST_INHERITED".to_string(),
                    "from-wharf".to_string()
                ),
            ]
        );
    }

    #[test]
    fn probes_go_to_the_published_port_or_the_network_address() {
        let mut info = ContainerInfo {
            published: vec![("80/tcp".into(), "0.0.0.0".into(), 8080)],
            addresses: vec!["172.17.0.5".into()],
            ..Default::default()
        };
        let local = Machine::Local;
        let remote = Machine::Remote(Some("10.0.0.5".parse().unwrap()));
        assert_eq!(
            probe_target(&info, 80, local),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            probe_target(&info, 80, remote),
            Some("10.0.0.5:8080".parse().unwrap())
        );
        assert_eq!(
            probe_target(&info, 9000, local),
            Some("172.17.0.5:9000".parse().unwrap())
        );
        // A remote engine's container networks are not reachable from here.
        assert_eq!(probe_target(&info, 9000, remote), None);
        info.published = vec![("80/tcp".into(), "127.0.0.2".into(), 18080)];
        assert_eq!(
            probe_target(&info, 80, local),
            Some("127.0.0.2:18080".parse().unwrap())
        );
        assert_eq!(probe_target(&info, 80, remote), None);
        info.addresses.clear();
        assert_eq!(probe_target(&info, 9000, local), None);
    }

    #[test]
    fn the_gate_polls_closely_at_first_then_backs_off() {
        let at = |ms| poll_after(Duration::from_millis(ms));
        assert_eq!(at(0), POLL_FAST);
        assert_eq!(at(2_999), POLL_FAST);
        assert_eq!(at(3_000), POLL_FAST);
        assert_eq!(at(4_000), POLL_FAST * 2);
        assert_eq!(at(6_500), POLL_FAST * 8);
        assert_eq!(at(7_000), POLL);
        assert_eq!(at(600_000), POLL);
        assert!((0..120_000).step_by(100).all(|ms| at(ms) <= POLL));
    }

    #[test]
    fn crash_loops_and_exits_end_the_gate() {
        let running = ContainerInfo {
            running: true,
            ..Default::default()
        };
        assert_eq!(ended(&running), None);
        let restarted = ContainerInfo {
            running: true,
            restart_count: 2,
            exit_code: 1,
            ..Default::default()
        };
        assert!(ended(&restarted).unwrap().contains("keeps exiting"));
        let exited = ContainerInfo {
            exit_code: 137,
            oom_killed: true,
            ..Default::default()
        };
        assert!(ended(&exited).unwrap().contains("out of memory"));
    }
}

//! Runs deployments: one worker per (project, stage), a global bound on how
//! many run at once, recovery after a crash, and a graceful shutdown.
//!
//! The store is the queue. A worker claims the newest `queued` deployment of
//! its stage (older ones become `superseded`), runs it, records the outcome,
//! and looks again; when nothing is queued it ends. [`Engine::kick`] starts a
//! worker for a stage unless one is already running, and the check that ends
//! a worker and the check in `kick` happen under one lock, after the
//! deployment was committed, so a push can never fall between the two.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};
use wharf_plugin_api::{
    CancellationToken, DeployContext, DeployError, DeployRequest, LogLine, LogSink, Registry,
    Routes,
};

use super::store::{now_ms, Deployment, NewDeployment, Status, Store, StoreError};
use crate::config::catalog::Catalog;
use crate::config::reload::LiveCatalog;
use crate::metrics::Metrics;

/// How long a finished deployment's log writer may take to flush.
const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// Pause before a worker retries after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Tries of an outcome write (a full disk may free up): about 6 s in all.
const OUTCOME_RETRIES: u32 = 6;
/// Changes a slow live view may fall behind by before it skips some (it is
/// told so and reloads what it shows).
const CHANGES_BUFFER: usize = 256;

type StageKey = (String, String);

/// Shared by the HTTP API, the workers and the shutdown path.
pub struct Engine {
    store: Store,
    catalog: LiveCatalog,
    registry: Registry,
    permits: Arc<Semaphore>,
    active: Mutex<HashSet<StageKey>>,
    accepting: AtomicBool,
    tracker: TaskTracker,
    /// Cancelled when the shutdown grace period is over.
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
    /// Every deployment that reached a final status, for notifications.
    finished: mpsc::UnboundedSender<Deployment>,
    /// Every change of a deployment (recorded, approved, running, ended),
    /// for the dashboard's live view. Sent only while someone listens.
    changes: broadcast::Sender<Deployment>,
    /// The route proxy, handed to every deployment.
    routes: Option<Arc<dyn Routes>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(
        store: Store,
        catalog: LiveCatalog,
        registry: Registry,
        max_concurrent: usize,
        metrics: Arc<Metrics>,
        finished: mpsc::UnboundedSender<Deployment>,
        routes: Option<Arc<dyn Routes>>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            catalog,
            registry,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            active: Mutex::new(HashSet::new()),
            accepting: AtomicBool::new(true),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            metrics,
            finished,
            changes: broadcast::channel(CHANGES_BUFFER).0,
            routes,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load()
    }

    /// A receiver of every deployment change from now on (see `changes`).
    pub fn subscribe(&self) -> broadcast::Receiver<Deployment> {
        self.changes.subscribe()
    }

    /// Tell live views about a changed deployment; nothing is cloned when
    /// no one listens.
    fn changed(&self, deployment: &Deployment) {
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(deployment.clone());
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Re-read these project files into the live catalog now, rather than
    /// when the file watcher gets to them: an auto-created project must match
    /// the very push that created it. The reload task does it (it alone
    /// writes the catalog); returns the catalog then in force.
    pub async fn reload_files(&self, paths: Vec<std::path::PathBuf>) -> Arc<Catalog> {
        self.catalog.load_files(paths).await
    }

    /// False once shutdown began: new pushes get 503 and stay with the sender.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Stop taking new work: webhooks get 503, workers stop claiming.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Record deployments durably, then start their stages' workers.
    /// `None` when the event ids were seen before (a redelivery).
    ///
    /// # Errors
    /// The store refused the write: nothing was recorded.
    pub async fn submit(
        self: &Arc<Self>,
        deployments: Vec<NewDeployment>,
        event_ids: Vec<String>,
    ) -> Result<Option<Vec<Deployment>>, StoreError> {
        let Some(recorded) = self.store.insert_batched(deployments, event_ids).await? else {
            return Ok(None);
        };
        for deployment in &recorded.deployments {
            self.changed(deployment);
            if deployment.status == Status::Queued {
                self.kick(&deployment.project, &deployment.stage);
            }
        }
        for superseded in recorded.superseded {
            self.ended(superseded);
        }
        Ok(Some(recorded.deployments))
    }

    /// Queue an `awaiting_approval` deployment; `None` when it was not
    /// awaiting approval (or does not exist).
    ///
    /// # Errors
    /// The store failed.
    pub async fn approve(self: &Arc<Self>, id: &str) -> Result<Option<Deployment>, StoreError> {
        let approved = self.decide(id, Status::Queued, "approved").await?;
        if let Some(deployment) = &approved {
            self.changed(deployment);
            self.kick(&deployment.project, &deployment.stage);
        }
        Ok(approved)
    }

    /// Reject an `awaiting_approval` deployment; `None` as for `approve`.
    ///
    /// # Errors
    /// The store failed.
    pub async fn reject(self: &Arc<Self>, id: &str) -> Result<Option<Deployment>, StoreError> {
        let rejected = self
            .decide(id, Status::Rejected, "rejected by an operator")
            .await?;
        if let Some(deployment) = &rejected {
            self.ended(deployment.clone());
        }
        Ok(rejected)
    }

    /// Move an `awaiting_approval` deployment to `to`, only if it still awaits.
    async fn decide(
        &self,
        id: &str,
        to: Status,
        reason: &'static str,
    ) -> Result<Option<Deployment>, StoreError> {
        let id = id.to_string();
        self.store
            .call(move |store| {
                if store.transition(&id, Status::AwaitingApproval, to, Some(reason))? {
                    store.get(&id)
                } else {
                    Ok(None)
                }
            })
            .await
    }

    /// Start a worker for a stage unless one runs.
    pub fn kick(self: &Arc<Self>, project: &str, stage: &str) {
        if !self.is_accepting() {
            return;
        }
        let key = (project.to_string(), stage.to_string());
        let fresh = self.lock_active().insert(key.clone());
        if fresh {
            let engine = self.clone();
            let span = tracing::info_span!("stage", project = %key.0, stage = %key.1);
            self.tracker
                .spawn(async move { engine.work_stage(key).await }.instrument(span));
        }
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashSet<StageKey>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// End the worker of `key` unless something is queued for it. Done under
    /// the `active` lock so that a concurrent `kick` either sees the worker
    /// alive (and the worker then sees the new row) or starts a new one.
    /// The lock and the store query are taken on the blocking pool, not on
    /// an async worker thread; if that fails the worker goes on (looks again).
    async fn retire(self: &Arc<Self>, key: &StageKey) -> bool {
        let engine = self.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || engine.retire_now(&key))
            .await
            .unwrap_or(false)
    }

    fn retire_now(&self, key: &StageKey) -> bool {
        let mut active = self.lock_active();
        let more = self.is_accepting() && self.store.has_queued(&key.0, &key.1).unwrap_or(true);
        if !more {
            active.remove(key);
        }
        !more
    }

    async fn work_stage(self: Arc<Self>, key: StageKey) {
        loop {
            if !self.is_accepting() {
                self.lock_active().remove(&key);
                return;
            }
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                return;
            };
            if !self.is_accepting() {
                self.lock_active().remove(&key);
                return;
            }
            let (project, stage) = key.clone();
            let claimed = self
                .store
                .call(move |store| store.claim_next(&project, &stage))
                .await;
            match claimed {
                Ok(Some(claimed)) => {
                    for superseded in claimed.superseded {
                        self.ended(superseded);
                    }
                    self.changed(&claimed.deployment);
                    self.run(claimed.deployment).await;
                    drop(permit);
                }
                Ok(None) => {
                    drop(permit);
                    if self.retire(&key).await {
                        return;
                    }
                }
                Err(e) => {
                    drop(permit);
                    error!(error = %e, "cannot claim the next deployment; retrying");
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
    }

    /// Run one claimed deployment to its end and record the outcome.
    async fn run(self: &Arc<Self>, deployment: Deployment) {
        let span = tracing::info_span!("deployment", id = %deployment.id, tag = %deployment.tag);
        async {
            let (log, lines) = LogSink::channel();
            let writer = tokio::spawn(write_log(self.store.clone(), deployment.seq, lines));
            let started = Instant::now();
            let (status, reason, deployer) = self.execute(&deployment, &log).await;
            let elapsed = started.elapsed();
            log.info(format!(
                "{} after {:.1}s: {reason}",
                status.as_str(),
                elapsed.as_secs_f64()
            ));
            drop(log);
            let flush = writer.abort_handle();
            if tokio::time::timeout(LOG_FLUSH_LIMIT, writer).await.is_err() {
                flush.abort();
            }
            let seq = deployment.seq;
            let saved = retried("record the outcome", OUTCOME_RETRIES, || {
                let reason = reason.clone();
                self.store
                    .call(move |store| store.finish(seq, status, &reason))
            })
            .await;
            if let Err(e) = saved {
                // The row stays `running`. Newer deployments of the stage may
                // go ahead; the next start sees them and marks this one
                // `interrupted` instead of running it over them.
                error!(error = %e, "cannot record the outcome, even after retries");
            }
            match status {
                Status::Succeeded => info!(%deployer, "deployment succeeded: {reason}"),
                Status::Queued => info!(%deployer, "deployment left queued: {reason}"),
                _ => warn!(%deployer, status = status.as_str(), "deployment ended: {reason}"),
            }
            if status.is_final() {
                self.metrics.deployment_finished(status, &deployer, elapsed);
                let mut ended = deployment;
                ended.status = status;
                ended.reason = Some(reason);
                ended.finished_ms = Some(now_ms());
                self.ended(ended);
            }
        }
        .instrument(span)
        .await
    }

    /// Find the stage's current plan (prepared by its plugin when the
    /// project file loaded) and run it. Returns the status to record, why,
    /// and the deployer's name.
    async fn execute(&self, deployment: &Deployment, log: &LogSink) -> (Status, String, String) {
        let catalog = self.catalog.load();
        let Some(stage) = catalog
            .project(&deployment.project)
            .and_then(|p| p.stages.get(&deployment.stage))
        else {
            let why = format!(
                "project '{}' stage '{}' is no longer configured",
                deployment.project, deployment.stage
            );
            return (Status::Failed, why, deployment.deployer.clone());
        };
        let deployer = stage.deployer.clone();
        let plan = stage.plan.clone();
        let request = DeployRequest {
            deployment_id: deployment.id.clone(),
            project: deployment.project.clone(),
            stage: deployment.stage.clone(),
            repository: deployment.repository.clone(),
            tag: deployment.tag.clone(),
            digest: deployment.digest.clone(),
        };
        log.info(format!(
            "deploying {} to {}/{} with the {deployer} deployer",
            request.pull_reference(),
            request.project,
            request.stage
        ));
        let context = DeployContext {
            log: log.clone(),
            cancel: self.cancel.child_token(),
            routes: self.routes.clone(),
        };
        let rerun_safe = plan.rerun_is_safe();
        // Its own task, so a panicking plugin fails one deployment, not wharf.
        let outcome = tokio::spawn(async move { plan.deploy(&request, &context).await }).await;
        let (status, reason) = match outcome {
            Ok(Ok(outcome)) => (Status::Succeeded, outcome.summary),
            Ok(Err(DeployError::Cancelled(why))) if rerun_safe => (
                Status::Queued,
                format!("{why}; it runs again when wharf starts"),
            ),
            Ok(Err(DeployError::Cancelled(why))) => (Status::Interrupted, why),
            Ok(Err(error)) => (Status::Failed, error.to_string()),
            Err(join) => (
                Status::Failed,
                format!("the {deployer} deployer crashed: {join}"),
            ),
        };
        (status, reason, deployer)
    }

    fn ended(&self, deployment: Deployment) {
        self.changed(&deployment);
        let _ = self.finished.send(deployment);
    }

    /// After a restart: deployments left `running` are re-run where their
    /// plugin says that is safe, else marked `interrupted`; then every stage
    /// with something `queued` gets its worker.
    ///
    /// # Errors
    /// The store failed.
    pub async fn recover(self: &Arc<Self>) -> Result<(), StoreError> {
        let catalog = self.catalog.load();
        let interrupted = self
            .store
            .call(move |store| {
                let mut interrupted = Vec::new();
                for deployment in store.running()? {
                    if let Some(newer) = store.newer_started_in_stage(&deployment)? {
                        // Its outcome was never recorded, and the stage moved
                        // on: running it now would put it over a newer version.
                        let why = format!(
                            "wharf could not record how this deployment ended, and a newer deployment of the stage ({}, tag {}) went ahead; it is not run again",
                            newer.id, newer.tag
                        );
                        store.append_log(deployment.seq, &[(now_ms(), "wharf", &why)])?;
                        if store.transition(&deployment.id, Status::Running, Status::Interrupted, Some(&why))? {
                            interrupted.push(store.get(&deployment.id)?);
                        }
                        warn!(id = %deployment.id, project = %deployment.project, stage = %deployment.stage, "{why}");
                        continue;
                    }
                    let rerun = catalog
                        .project(&deployment.project)
                        .and_then(|p| p.stages.get(&deployment.stage))
                        .is_some_and(|s| s.plan.rerun_is_safe());
                    let (to, why) = if rerun {
                        (
                            Status::Queued,
                            "wharf stopped while this deployment ran; running it again".to_string(),
                        )
                    } else {
                        (
                            Status::Interrupted,
                            format!(
                                "wharf stopped while this deployment ran, and the {} deployer cannot safely run it again; redeploy with `wharf deploy {} {} {}`",
                                deployment.deployer, deployment.project, deployment.stage, deployment.tag
                            ),
                        )
                    };
                    store.append_log(deployment.seq, &[(now_ms(), "wharf", &why)])?;
                    if store.transition(&deployment.id, Status::Running, to, Some(&why))?
                        && to == Status::Interrupted
                    {
                        interrupted.push(store.get(&deployment.id)?);
                    }
                    warn!(id = %deployment.id, project = %deployment.project, stage = %deployment.stage, "{why}");
                }
                Ok(interrupted)
            })
            .await?;
        for deployment in interrupted.into_iter().flatten() {
            self.ended(deployment);
        }
        let stages = self.store.call(|store| store.queued_stages()).await?;
        for (project, stage) in stages {
            self.kick(&project, &stage);
        }
        Ok(())
    }

    /// Stop starting deployments; give running ones `grace` to finish, then
    /// cancel them (their plugins roll back) and record them for the next
    /// start. Queued ones stay queued.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop_accepting();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                "deployments still running after the {}s grace period: cancelling them",
                grace.as_secs()
            );
            self.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), self.tracker.wait()).await;
        }
    }
}

/// Run a store write until it succeeds, up to `tries` times, with a pause
/// that doubles from 100 ms: a write that fails once (a full disk, a lock
/// held too long) must not leave a deployment's outcome unrecorded.
async fn retried<T, F, Fut>(what: &str, tries: u32, mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match write().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < tries => {
                warn!(error = %e, attempt, "cannot {what}; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Drain a deployment's log channel into the store in batches.
async fn write_log(store: Store, seq: i64, mut lines: mpsc::UnboundedReceiver<LogLine>) {
    let mut batch: Vec<LogLine> = Vec::with_capacity(64);
    while lines.recv_many(&mut batch, 256).await > 0 {
        let now = now_ms();
        let taken = std::mem::take(&mut batch);
        for line in &taken {
            tracing::debug!(stream = line.stream.as_str(), "{}", line.text);
        }
        let result = store
            .call(move |store| {
                let rows: Vec<_> = taken
                    .iter()
                    .map(|l| (now, l.stream.as_str(), l.text.as_str()))
                    .collect();
                store.append_log(seq, &rows)
            })
            .await;
        if let Err(e) = result {
            error!(error = %e, "cannot store deployment log lines");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test]
    async fn a_failing_write_is_retried_until_it_succeeds_or_the_tries_run_out() {
        let calls = AtomicU32::new(0);
        let flaky = || {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if call < 3 {
                    Err(StoreError::Io(std::io::Error::other("disk full")))
                } else {
                    Ok(call)
                }
            }
        };
        assert_eq!(retried("write", 6, flaky).await.unwrap(), 3);
        calls.store(0, Ordering::SeqCst);
        assert!(retried("write", 2, flaky).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

//! `wharf serve`: wire the pieces together and run until SIGTERM/SIGINT.
//!
//! Order matters: secrets and projects are loaded and the store is opened
//! (and recovered) before the listener binds, so the first request already
//! sees a complete daemon; on shutdown the listener stops first, then
//! running deployments get their grace period.
//!
//! [`readiness`] tells systemd when wharf is ready, reloading or stopping;
//! [`logging`] picks the log format for a terminal, a pipe or the journal.

pub mod lock;
pub mod logging;
pub mod readiness;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::{self, App};
use crate::config::catalog::Catalog;
use crate::config::reload::{self, Live, LiveCatalog, LoadFiles, Reload, Watcher};
use crate::config::settings::Secrets;
use crate::config::DaemonConfig;
use crate::deploy::engine::Engine;
use crate::deploy::notify;
use crate::deploy::store::Store;
use crate::metrics::Metrics;
use crate::plugins;
use crate::proxy::client::ProxyClient;
use readiness::Notifier;

/// How long a sender's event id is remembered to drop redeliveries: a week.
const SEEN_EVENTS_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// Run the daemon until it is told to stop.
///
/// # Errors
/// Start-up failed: unreadable settings, a store that cannot be opened, an
/// address that cannot be bound.
pub async fn serve(mut config: DaemonConfig, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    for (what, dir) in [
        ("projects_dir", &mut config.projects_dir),
        ("state_dir", &mut config.state_dir),
    ] {
        std::fs::create_dir_all(&*dir)
            .with_context(|| format!("cannot create {what} {}", dir.display()))?;
        // One spelling of every path, the one the file watcher reports.
        *dir = std::fs::canonicalize(&*dir)
            .with_context(|| format!("cannot resolve {what} {}", dir.display()))?;
    }
    // Before anything in the state dir is read or written: a second daemon
    // must leave the first one's deployments and files alone.
    let _lock = lock::StateLock::acquire(&config.state_dir)?;
    let secrets = Secrets::load_or_create(&config.state_dir)?;
    let registry = plugins::registry(&config.hosts);
    let catalog = Catalog::load_dir(&config.projects_dir, &registry);
    for error in catalog.errors() {
        warn!(file = %error.file.display(), line = error.line, "project not loaded: {}", error.message);
    }
    info!(
        projects = catalog.len(),
        dir = %config.projects_dir.display(),
        "projects loaded"
    );
    let store = Store::open(&config.state_dir, config.store.synchronous_full())
        .context("cannot open the deployment store")?;
    if let Err(e) = store.prune_seen_events(SEEN_EVENTS_KEPT_MS) {
        warn!(error = %e, "cannot prune old sender event ids");
    }
    let metrics = Arc::new(Metrics::default());
    let (finished, ended) = mpsc::unbounded_channel();
    let notifications = tokio::spawn(notify::run(config.notify.clone(), ended));
    let catalog = Arc::new(ArcSwap::from_pointee(catalog));
    let secrets = Arc::new(ArcSwap::from_pointee(secrets));
    let config = Arc::new(config);
    let notifier = Notifier::default();
    let (live_catalog, load_requests) = LiveCatalog::new(catalog.clone());
    let _watcher = start_reloader(
        Live {
            config: config.clone(),
            config_file,
            registry: registry.clone(),
            catalog: catalog.clone(),
            secrets: secrets.clone(),
        },
        load_requests,
        notifier.clone(),
    );
    let readiness = notifier.fairing(catalog.clone());
    let routes = if config.proxy.manage {
        ProxyClient::managing(&config.state_dir)
    } else {
        ProxyClient::new(&config.state_dir)
    };
    // A stage with a route needs the proxy even before its next
    // deployment (its address must answer now): start it, if it is ours to.
    if config.proxy.manage && catalog.load().has_routes() {
        if let Err(e) = routes.list().await {
            warn!(error = %e, "the route proxy is not running; routed stages fail to deploy until it is");
        }
    }
    // Routes follow the catalog and their containers between deployments.
    tokio::spawn(crate::proxy::upkeep::run(routes.clone(), catalog.clone()));
    let engine = Engine::new(
        store,
        live_catalog,
        registry,
        config.deploy.max_concurrent,
        metrics.clone(),
        finished,
        Some(Arc::new(routes.clone())),
    );
    engine
        .recover()
        .await
        .context("cannot recover deployments")?;

    let polls = Arc::new(crate::poll::status::PollStatus::default());
    crate::poll::start(
        engine.clone(),
        metrics.clone(),
        polls.clone(),
        config.insecure_registries.clone(),
    );
    let app = App::new(
        config.clone(),
        secrets,
        engine.clone(),
        metrics,
        polls,
        routes,
    );
    let rocket = api::build(app, api::rocket_figment(&config))
        .attach(readiness)
        .ignite()
        .await
        .context("cannot start the HTTP server")?;
    // Rocket listens for SIGTERM only once it serves, after liftoff — after
    // READY=1. A SIGTERM in between (`systemctl start wharf && systemctl
    // stop wharf`) must still be a graceful stop, not the default death.
    let shutdown = rocket.shutdown();
    let mut terms = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::spawn(async move {
        if terms.recv().await.is_some() {
            shutdown.notify();
        }
    });
    let rocket = rocket.launch().await.map_err(|e| {
        // Rocket's error type prints its own report on drop; keep ours short.
        anyhow::anyhow!("cannot serve on {}: {e}", config.listen)
    })?;
    drop(rocket);
    let stopping = format!(
        "shutting down: waiting up to {}s for running deployments",
        config.deploy.shutdown_grace.as_secs()
    );
    readiness::stopping(&stopping);
    info!("{stopping}");
    engine.shutdown(config.deploy.shutdown_grace).await;
    drop(engine);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), notifications).await;
    info!("stopped");
    Ok(())
}

/// Start the one reload task, fed by the file watcher, the look at
/// settings.toml, SIGHUP and auto-create's [`LoadFiles`] requests. Returns
/// the watcher, which must live as long as the daemon. systemd hears
/// `RELOADING=1` when SIGHUP arrives and `READY=1` when that reload is done.
fn start_reloader(
    live: Live,
    load_requests: mpsc::UnboundedReceiver<LoadFiles>,
    notifier: Notifier,
) -> Option<Watcher> {
    let (reloads, receiver) = mpsc::unbounded_channel();
    tokio::spawn({
        let (config, reloads) = (live.config.clone(), reloads.clone());
        async move { reload::poll_settings(&config, reloads).await }
    });
    let watcher = match reload::watch(&live.config, reloads.clone()) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            warn!(error = %e, "cannot watch the projects folder: project edits apply on SIGHUP only");
            None
        }
    };
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            let notifier = notifier.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    notifier.reloading();
                    if reloads.send(Reload::All).is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot listen for SIGHUP"),
    }
    tokio::spawn(reload::run(
        live,
        receiver,
        load_requests,
        move |reload, catalog| {
            tracing::debug!(?reload, projects = catalog.len(), "reload applied");
            // A SIGHUP reload always ends as `All`, even coalesced with others.
            notifier.reloaded(*reload == Reload::All, catalog);
        },
    ));
    watcher
}

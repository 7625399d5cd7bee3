//! Hot reload: projects and secrets follow their files while wharf runs.
//!
//! The file watcher and SIGHUP feed one channel, consumed by one task, so
//! reloads never race each other. Each reload parses and validates first and
//! then swaps a whole new snapshot; on error the previous good version stays
//! in force and the error is logged once (and shown by the admin API).
//!
//! That task is the only writer of the live catalog. Auto-create, which must
//! see its new file loaded before it answers the push, asks it through a
//! [`LiveCatalog`] and waits for the reply, instead of storing a catalog of
//! its own (a second writer could lose a reload that ran meanwhile, or have
//! its project dropped by one). Parsing and reading files run on the
//! blocking pool, never on an async worker thread.
//!
//! The projects folder is watched, not its files: editors save by writing a
//! temporary file and renaming it over the old one, which replaces the inode
//! a file watch would follow. Events are debounced, so a `git pull` touching
//! fifty files is one reload.
//!
//! `settings.toml` is not watched but looked at twice a second
//! ([`poll_settings`]): its folder also holds the deployment store, and a
//! watch on it would wake the watcher's threads for every committed push
//! (measured: about a tenth of the daemon's CPU under a burst of webhooks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify_debouncer_full::notify::event::ModifyKind;
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use wharf_plugin_api::Registry;

use super::catalog::{is_project_file, Catalog};
use super::settings::{Secrets, SETTINGS_FILE};
use super::DaemonConfig;

/// Quiet time before a burst of file events becomes one reload.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// How often `settings.toml` is looked at (one `stat`).
const SETTINGS_POLL: Duration = Duration::from_millis(500);

/// What to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// These project files changed (added, edited, renamed, deleted).
    Projects(Vec<PathBuf>),
    /// `settings.toml` changed.
    Settings,
    /// Everything (SIGHUP): all projects, secrets, and a check of wharf.toml.
    All,
}

/// What the reloader swaps.
pub struct Live {
    pub config: Arc<DaemonConfig>,
    /// The config file the daemon started with, re-read on SIGHUP to report
    /// keys that need a restart.
    pub config_file: Option<PathBuf>,
    pub registry: Registry,
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub secrets: Arc<ArcSwap<Secrets>>,
}

/// A request to the reload task: load these project files now and answer
/// with the catalog then in force.
pub struct LoadFiles {
    paths: Vec<PathBuf>,
    reply: oneshot::Sender<Arc<Catalog>>,
}

/// The live catalog as everyone but the reload task holds it: read the
/// current snapshot, or have the reload task (the one writer) load files now.
#[derive(Clone)]
pub struct LiveCatalog {
    current: Arc<ArcSwap<Catalog>>,
    requests: mpsc::UnboundedSender<LoadFiles>,
}

impl std::fmt::Debug for LiveCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveCatalog")
    }
}

impl LiveCatalog {
    /// A handle on `current`, and the receiver to give [`run`].
    pub fn new(
        current: Arc<ArcSwap<Catalog>>,
    ) -> (LiveCatalog, mpsc::UnboundedReceiver<LoadFiles>) {
        let (requests, receiver) = mpsc::unbounded_channel();
        (LiveCatalog { current, requests }, receiver)
    }

    /// The snapshot in force now.
    pub fn load(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Have the reload task re-read these project files now, rather than
    /// when the file watcher gets to them, and return the catalog then in
    /// force. Without a reload task (shutdown) nothing is loaded and the
    /// current catalog is returned.
    pub async fn load_files(&self, paths: Vec<PathBuf>) -> Arc<Catalog> {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(LoadFiles { paths, reply }).is_err() {
            warn!("the reload task is gone: project files are not loaded");
            return self.load();
        }
        match answer.await {
            Ok(catalog) => catalog,
            Err(_) => {
                warn!("the reload task stopped before loading the project files");
                self.load()
            }
        }
    }
}

/// Keeps the watcher alive; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

/// Watch `projects_dir`, sending the project files that changed to
/// `reloads`.
///
/// # Errors
/// The OS refused the watch (inotify limits, a missing folder).
pub fn watch(
    config: &DaemonConfig,
    reloads: mpsc::UnboundedSender<Reload>,
) -> Result<Watcher, notify_debouncer_full::notify::Error> {
    let projects_dir = canonical(&config.projects_dir);
    // Followed by [`poll_settings`], even when it sits among the projects.
    let settings_file = canonical(&config.state_dir).join(SETTINGS_FILE);
    let classify_dir = projects_dir.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let events = match result {
            Ok(events) => events,
            Err(errors) => {
                for e in errors {
                    warn!(error = %e, "file watcher error");
                }
                return;
            }
        };
        let mut projects = Vec::new();
        // Reads (wharf's own, an operator's `cat`) and chmod are not edits:
        // reacting to them would make every reload trigger the next.
        let edits = events.iter().filter(|e| {
            !matches!(
                e.kind,
                EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))
            )
        });
        for path in edits.flat_map(|e| e.paths.iter()) {
            if *path != settings_file
                && path.parent() == Some(classify_dir.as_path())
                && is_project_file(path)
                && !projects.contains(path)
            {
                projects.push(path.clone());
            }
        }
        if !projects.is_empty() {
            let _ = reloads.send(Reload::Projects(projects));
        }
    })?;
    debouncer.watch(&projects_dir, RecursiveMode::NonRecursive)?;
    Ok(Watcher {
        _debouncer: debouncer,
    })
}

/// What tells one version of a file from the next without reading it: a
/// rename over it changes the inode, an edit in place the size or times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileVersion {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
    changed: (i64, i64),
}

impl FileVersion {
    /// `None` when the file cannot be looked at (missing, unreadable
    /// folder): a file that comes back counts as changed.
    fn of(path: &Path) -> Option<FileVersion> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileVersion {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// Send [`Reload::Settings`] whenever `settings.toml` changes, until
/// `reloads` is closed. One `stat` every [`SETTINGS_POLL`].
pub async fn poll_settings(config: &DaemonConfig, reloads: mpsc::UnboundedSender<Reload>) {
    let path = canonical(&config.state_dir).join(SETTINGS_FILE);
    let mut seen = FileVersion::of(&path);
    let mut ticks = tokio::time::interval(SETTINGS_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if reloads.is_closed() {
            return;
        }
        let now = FileVersion::of(&path);
        if now != seen {
            seen = now;
            if reloads.send(Reload::Settings).is_err() {
                return;
            }
        }
    }
}

/// Paths in events are absolute; compare against the canonical folder.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Apply reloads and [`LoadFiles`] requests one at a time until every sender
/// of both is gone. `done` is told after each reload (readiness
/// notification, tests).
pub async fn run(
    live: Live,
    mut reloads: mpsc::UnboundedReceiver<Reload>,
    mut requests: mpsc::UnboundedReceiver<LoadFiles>,
    done: impl Fn(&Reload, &Catalog) + Send,
) {
    let live = Arc::new(live);
    loop {
        tokio::select! {
            Some(first) = reloads.recv() => {
                // Coalesce what queued up meanwhile into one pass.
                let mut batch = vec![first];
                while let Ok(more) = reloads.try_recv() {
                    batch.push(more);
                }
                let reload = coalesce(batch);
                let reload_ref = reload.clone();
                let outcome = blocking(&live, move |live| apply(live, &reload_ref)).await;
                done(&reload, &outcome);
            }
            Some(LoadFiles { paths, reply }) = requests.recv() => {
                let outcome = blocking(&live, move |live| load_files(live, &paths)).await;
                // The asker may have given up (its request was cancelled).
                let _ = reply.send(outcome);
            }
            else => break,
        }
    }
}

/// Run `work` on the blocking pool: parsing thousands of files, reading
/// them and `settings.toml` is blocking work. If it panicked, the catalog
/// stays as it was.
async fn blocking(
    live: &Arc<Live>,
    work: impl FnOnce(&Live) -> Arc<Catalog> + Send + 'static,
) -> Arc<Catalog> {
    let shared = live.clone();
    match tokio::task::spawn_blocking(move || work(&shared)).await {
        Ok(catalog) => catalog,
        Err(e) => {
            error!("a reload failed, the previous configuration stays in force: {e}");
            live.catalog.load_full()
        }
    }
}

fn coalesce(batch: Vec<Reload>) -> Reload {
    if batch.contains(&Reload::All) {
        return Reload::All;
    }
    let settings = batch.contains(&Reload::Settings);
    let mut files: Vec<PathBuf> = Vec::new();
    for reload in batch {
        if let Reload::Projects(paths) = reload {
            for path in paths {
                if !files.contains(&path) {
                    files.push(path);
                }
            }
        }
    }
    match (settings, files.is_empty()) {
        (true, true) => Reload::Settings,
        (false, _) => Reload::Projects(files),
        // Both: rare; a full reload covers it.
        (true, false) => Reload::All,
    }
}

/// Apply one reload; returns the catalog now in force.
pub fn apply(live: &Live, reload: &Reload) -> Arc<Catalog> {
    match reload {
        Reload::Projects(paths) => reload_projects(live, Some(paths)),
        Reload::Settings => {
            reload_settings(live);
            live.catalog.load_full()
        }
        Reload::All => {
            info!("reloading everything (SIGHUP)");
            report_restart_required(live);
            reload_settings(live);
            reload_projects(live, None)
        }
    }
}

fn reload_projects(live: &Live, paths: Option<&[PathBuf]>) -> Arc<Catalog> {
    let before = live.catalog.load_full();
    let after = match paths {
        Some(paths) => before.with_files_reloaded(paths, &live.registry),
        None => before.with_dir_reloaded(&live.config.projects_dir, &live.registry),
    };
    report_changes(&before, &after);
    let after = Arc::new(after);
    live.catalog.store(after.clone());
    after
}

/// Auto-create's request: these files now, on top of the catalog in force.
/// Not reported like a reload; auto-create logs what it made of them.
fn load_files(live: &Live, paths: &[PathBuf]) -> Arc<Catalog> {
    let after = Arc::new(
        live.catalog
            .load()
            .with_files_reloaded(paths, &live.registry),
    );
    live.catalog.store(after.clone());
    after
}

/// Log what a reload changed, and each error once (when it is new or
/// different from the one already reported for that file).
fn report_changes(before: &Catalog, after: &Catalog) {
    let old: BTreeMap<&str, _> = before.projects().map(|p| (p.name.as_str(), p)).collect();
    let new: BTreeMap<&str, _> = after.projects().map(|p| (p.name.as_str(), p)).collect();
    for (name, project) in &new {
        match old.get(name) {
            None => info!(project = name, image = %project.repository, "project added"),
            Some(previous) if !Arc::ptr_eq(previous, project) => {
                info!(project = name, image = %project.repository, "project reloaded")
            }
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        info!(project = name, "project removed");
    }
    let old_errors: Vec<_> = before.errors().collect();
    for error in after.errors().filter(|e| !old_errors.contains(e)) {
        let kept = after
            .project(&super::catalog::project_name(&error.file).unwrap_or_default())
            .is_some();
        error!(
            file = %error.file.display(),
            line = error.line,
            "project file rejected{}: {}",
            if kept { ", the previous version stays active" } else { "" },
            error.message
        );
    }
}

fn reload_settings(live: &Live) {
    match Secrets::load(&live.config.state_dir) {
        Ok(secrets) => {
            if **live.secrets.load() != secrets {
                live.secrets.store(Arc::new(secrets));
                info!("settings.toml reloaded: new secrets in force");
            }
        }
        Err(e) => error!("settings.toml rejected, the previous secrets stay in force: {e}"),
    }
}

/// wharf.toml is read once at start; on SIGHUP, say which keys changed and
/// that they need a restart rather than apply half of them.
fn report_restart_required(live: &Live) {
    let Some(file) = &live.config_file else {
        return;
    };
    match DaemonConfig::load(Some(file)) {
        Ok(fresh) => {
            let changed = changed_keys(&live.config, &fresh);
            if !changed.is_empty() {
                warn!(
                    file = %file.display(),
                    "wharf.toml changed ({}): restart required, the running values stay",
                    changed.join(", ")
                );
            }
        }
        Err(e) => warn!(file = %file.display(), "wharf.toml is invalid (restart would fail): {e}"),
    }
}

fn changed_keys(old: &DaemonConfig, new: &DaemonConfig) -> Vec<String> {
    let old = serde_json::to_value(old).unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return Vec::new();
    };
    old.iter()
        .filter(|(key, value)| new.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_coalesce() {
        let a = PathBuf::from("/p/a.toml");
        let b = PathBuf::from("/p/b.toml");
        assert_eq!(
            coalesce(vec![
                Reload::Projects(vec![a.clone()]),
                Reload::Projects(vec![a.clone(), b.clone()])
            ]),
            Reload::Projects(vec![a.clone(), b])
        );
        assert_eq!(coalesce(vec![Reload::Settings]), Reload::Settings);
        assert_eq!(
            coalesce(vec![Reload::Settings, Reload::Projects(vec![a])]),
            Reload::All
        );
        assert_eq!(coalesce(vec![Reload::All, Reload::Settings]), Reload::All);
    }

    #[test]
    fn restart_required_keys_are_named() {
        let old = DaemonConfig::default();
        let mut new = DaemonConfig {
            listen: "127.0.0.1:9".parse().unwrap(),
            ..DaemonConfig::default()
        };
        new.webhook.body_limit = 1;
        assert_eq!(changed_keys(&old, &new), ["listen", "webhook"]);
    }
}

//! The route table: one [`Route`] per listen address, each pointing at one
//! upstream at a time, persisted to `<state_dir>/routes.json`.
//!
//! A switch is one atomic store of the route's current upstream
//! ([`ArcSwap`]): a request or connection takes the upstream current when it
//! starts ([`Route::acquire`]) and counts itself in flight on it until it
//! ends, so the daemon can tell when an old upstream has drained.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{error, info};
use wharf_plugin_api::routes::{Draining, RouteMode, RouteSpec, RouteState};

use crate::config::atomic::write_atomic;

/// How long a restored route waits for its address to be free.
const RESTART_BIND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The table's file in the state dir.
pub const TABLE_FILE: &str = "routes.json";

/// An upstream while it is (or was) current, with what is in flight on it.
#[derive(Debug)]
pub struct Live {
    pub spec: RouteSpec,
    in_flight: AtomicU64,
}

/// Proof that one request or connection is in flight on an upstream; the
/// count drops with it.
#[derive(Debug)]
pub struct InFlight(Arc<Live>);

impl InFlight {
    pub fn upstream(&self) -> SocketAddr {
        self.0.spec.upstream.address
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One route: its listener task and its current upstream.
#[derive(Debug)]
pub struct Route {
    pub listen: SocketAddr,
    pub mode: RouteMode,
    current: ArcSwap<Live>,
    /// Earlier upstreams; alive while a request still holds them.
    retired: Mutex<Vec<Weak<Live>>>,
    requests: Mutex<BTreeMap<String, u64>>,
    switches: AtomicU64,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Route {
    fn new(spec: RouteSpec) -> Route {
        Route {
            listen: spec.listen,
            mode: spec.mode,
            current: ArcSwap::from_pointee(Live {
                spec,
                in_flight: AtomicU64::new(0),
            }),
            retired: Mutex::new(Vec::new()),
            requests: Mutex::new(BTreeMap::new()),
            switches: AtomicU64::new(0),
            listener: Mutex::new(None),
        }
    }

    /// Count a new request or connection in flight on the current upstream.
    ///
    /// The count is raised, then the upstream checked again: a switch that
    /// happened in between sends this request to the new upstream instead.
    /// So once [`Table::set`] has returned, the old upstream's count only
    /// goes down, and "0 in flight" means drained.
    pub fn acquire(&self) -> InFlight {
        loop {
            let live = self.current.load_full();
            live.in_flight.fetch_add(1, Ordering::SeqCst);
            if Arc::ptr_eq(&self.current.load(), &live) {
                return InFlight(live);
            }
            live.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Count one answered request by its status (or `tcp`).
    pub fn count(&self, status: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry(status.to_string()).or_default() += 1;
    }

    fn switch(&self, spec: RouteSpec) {
        let changed = self.current.load().spec.upstream != spec.upstream;
        let old = self.current.swap(Arc::new(Live {
            spec,
            in_flight: AtomicU64::new(0),
        }));
        if changed {
            self.switches.fetch_add(1, Ordering::SeqCst);
        }
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|w| w.strong_count() > 0);
        retired.push(Arc::downgrade(&old));
    }

    pub fn spec(&self) -> RouteSpec {
        self.current.load().spec.clone()
    }

    pub fn state(&self) -> RouteState {
        let current = self.current.load_full();
        let mut draining: BTreeMap<SocketAddr, u64> = BTreeMap::new();
        for live in self
            .retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
        {
            let n = live.in_flight.load(Ordering::SeqCst);
            let address = live.spec.upstream.address;
            if n > 0 && address != current.spec.upstream.address {
                *draining.entry(address).or_default() += n;
            }
        }
        // The same address may come back (a restored container): what is
        // still in flight on its earlier entry counts as current.
        let in_flight = current.in_flight.load(Ordering::SeqCst)
            + self
                .retired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|l| l.spec.upstream.address == current.spec.upstream.address)
                .map(|l| l.in_flight.load(Ordering::SeqCst))
                .sum::<u64>();
        RouteState {
            spec: current.spec.clone(),
            in_flight,
            draining: draining
                .into_iter()
                .map(|(address, in_flight)| Draining { address, in_flight })
                .collect(),
            requests: self
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            switches: self.switches.load(Ordering::SeqCst),
        }
    }

    /// Stop accepting; returns once the listening socket is closed, so
    /// the address is free when this returns.
    async fn stop_listening(&self) {
        let task = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

/// The file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    routes: Vec<RouteSpec>,
}

/// Starts the listener of a route; returns its accept loop.
pub type Listen = dyn Fn(Arc<Route>) -> std::io::Result<JoinHandle<()>> + Send + Sync;

/// All routes, swapped whole on every change.
pub struct Table {
    file: PathBuf,
    routes: ArcSwap<BTreeMap<SocketAddr, Arc<Route>>>,
    /// One change at a time, persisted before the next.
    changes: tokio::sync::Mutex<()>,
    listen: Box<Listen>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Why a change to the table was refused.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot save the route table {}: {source}", file.display())]
    Save {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the route table {}: {message}", file.display())]
    Load { file: PathBuf, message: String },
}

impl Table {
    /// The table saved in `state_dir`, each route listening again. A route
    /// whose address cannot be bound any more is kept (and logged), so that
    /// the next deployment of its stage can say why.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed; nothing is overwritten.
    pub fn restore(state_dir: &Path, listen: Box<Listen>) -> Result<Table, TableError> {
        let file = state_dir.join(TABLE_FILE);
        let saved: Saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TableError::Load {
                file: file.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => {
                return Err(TableError::Load {
                    file,
                    message: e.to_string(),
                })
            }
        };
        let table = Table {
            file,
            routes: ArcSwap::from_pointee(BTreeMap::new()),
            changes: tokio::sync::Mutex::new(()),
            listen,
        };
        let mut routes = BTreeMap::new();
        for spec in saved.routes {
            let route = Arc::new(Route::new(spec));
            match table.listen_again(&route) {
                Ok(task) => {
                    info!(listen = %route.listen, upstream = %route.spec().upstream.address, "route restored");
                    *route.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
                }
                Err(e) => {
                    error!(listen = %route.listen, error = %e, "cannot listen for a restored route")
                }
            }
            routes.insert(route.listen, route);
        }
        table.routes.store(Arc::new(routes));
        Ok(table)
    }

    /// Bind a restored route, waiting a little while its address is still
    /// in use: the proxy before this one may be letting go of it.
    fn listen_again(&self, route: &Arc<Route>) -> std::io::Result<JoinHandle<()>> {
        let deadline = std::time::Instant::now() + RESTART_BIND_WAIT;
        loop {
            match (self.listen)(route.clone()) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    pub fn states(&self) -> Vec<RouteState> {
        self.routes.load().values().map(|r| r.state()).collect()
    }

    /// Create a route or switch its upstream; persisted before it returns.
    ///
    /// # Errors
    /// A new listen address cannot be bound, or the file cannot be written
    /// (then the change is undone).
    pub async fn set(&self, spec: RouteSpec) -> Result<(), TableError> {
        let _one = self.changes.lock().await;
        let routes = self.routes.load_full();
        match routes.get(&spec.listen) {
            Some(route) if route.mode == spec.mode => {
                let previous = route.spec();
                route.switch(spec);
                if let Err(e) = self.save(&self.routes.load()) {
                    route.switch(previous);
                    return Err(e);
                }
                info!(listen = %route.listen, upstream = %route.spec().upstream.address, container = %route.spec().upstream.container, "route switched");
            }
            existing => {
                let route = Arc::new(Route::new(spec));
                let task = (self.listen)(route.clone()).map_err(|source| TableError::Bind {
                    listen: route.listen,
                    source,
                });
                // A mode change rebinds: the old listener must let go first.
                let task = match (task, existing) {
                    (Err(_), Some(old)) => {
                        old.stop_listening().await;
                        (self.listen)(route.clone()).map_err(|source| TableError::Bind {
                            listen: route.listen,
                            source,
                        })?
                    }
                    (task, Some(old)) => {
                        old.stop_listening().await;
                        task?
                    }
                    (task, None) => task?,
                };
                *route.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
                let mut next = (*routes).clone();
                next.insert(route.listen, route.clone());
                if let Err(e) = self.save(&next) {
                    route.stop_listening().await;
                    return Err(e);
                }
                self.routes.store(Arc::new(next));
                info!(listen = %route.listen, upstream = %route.spec().upstream.address, "route created");
            }
        }
        Ok(())
    }

    /// Point the route on `listen` at `address`, but only while its
    /// upstream is still the container `container_id`: the same container
    /// republished elsewhere after its engine restarted it. A deployment
    /// that switched the route meanwhile wins. Returns whether it moved.
    ///
    /// # Errors
    /// The file cannot be written (the route stays as it was).
    pub async fn relocate(
        &self,
        listen: SocketAddr,
        container_id: &str,
        address: SocketAddr,
    ) -> Result<bool, TableError> {
        let _one = self.changes.lock().await;
        let routes = self.routes.load_full();
        let Some(route) = routes.get(&listen) else {
            return Ok(false);
        };
        let previous = route.spec();
        if previous.upstream.container_id != container_id || previous.upstream.address == address {
            return Ok(false);
        }
        let mut moved = previous.clone();
        moved.upstream.address = address;
        route.switch(moved);
        if let Err(e) = self.save(&routes) {
            route.switch(previous);
            return Err(e);
        }
        info!(listen = %listen, from = %previous.upstream.address, to = %address, container = %previous.upstream.container, "route's container republished; route moved");
        Ok(true)
    }

    /// Remove the route on `listen`; returns whether there was one.
    ///
    /// # Errors
    /// The file cannot be written (the route stays).
    pub async fn remove(&self, listen: SocketAddr) -> Result<bool, TableError> {
        let _one = self.changes.lock().await;
        let routes = self.routes.load_full();
        let Some(route) = routes.get(&listen).cloned() else {
            return Ok(false);
        };
        let mut next = (*routes).clone();
        next.remove(&listen);
        self.save(&next)?;
        self.routes.store(Arc::new(next));
        route.stop_listening().await;
        info!(listen = %listen, "route removed");
        Ok(true)
    }

    /// Stop accepting on every route (their addresses are free for the
    /// next proxy at once); what is in flight goes on.
    pub async fn stop_listening(&self) {
        for route in self.routes.load().values() {
            route.stop_listening().await;
        }
    }

    /// Requests and connections in flight on every route, old upstreams
    /// included.
    pub fn in_flight(&self) -> u64 {
        self.states()
            .iter()
            .map(|s| s.in_flight + s.draining.iter().map(|d| d.in_flight).sum::<u64>())
            .sum()
    }

    fn save(&self, routes: &BTreeMap<SocketAddr, Arc<Route>>) -> Result<(), TableError> {
        let saved = Saved {
            routes: routes.values().map(|r| r.spec()).collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&saved).unwrap_or_default();
        bytes.push(b'\n');
        write_atomic(&self.file, &bytes, 0o600).map_err(|source| TableError::Save {
            file: self.file.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_plugin_api::routes::Upstream;

    fn spec(listen: &str, upstream: &str) -> RouteSpec {
        RouteSpec {
            listen: listen.parse().unwrap(),
            mode: RouteMode::Http,
            project: "web".into(),
            stage: "prod".into(),
            upstream: Upstream {
                address: upstream.parse().unwrap(),
                container_id: format!("id-{upstream}"),
                container: "wharf-web-prod".into(),
                image: "web:1".into(),
            },
        }
    }

    fn idle() -> Box<Listen> {
        Box::new(|_| Ok(tokio::spawn(async {})))
    }

    #[tokio::test]
    async fn a_switch_leaves_requests_on_the_old_upstream_until_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table::restore(dir.path(), idle()).unwrap();
        table
            .set(spec("127.0.0.1:1", "127.0.0.1:1001"))
            .await
            .unwrap();
        let route = table.routes.load().values().next().unwrap().clone();
        let slow = route.acquire();
        table
            .set(spec("127.0.0.1:1", "127.0.0.1:1002"))
            .await
            .unwrap();
        let fresh = route.acquire();
        assert_eq!(slow.upstream(), "127.0.0.1:1001".parse().unwrap());
        assert_eq!(fresh.upstream(), "127.0.0.1:1002".parse().unwrap());
        let state = route.state();
        assert_eq!(state.in_flight, 1);
        assert_eq!(state.in_flight_on("127.0.0.1:1001".parse().unwrap()), 1);
        assert_eq!(state.switches, 1);
        drop(slow);
        assert_eq!(
            route
                .state()
                .in_flight_on("127.0.0.1:1001".parse().unwrap()),
            0
        );
        drop(fresh);
    }

    #[tokio::test]
    async fn the_table_survives_a_restart_and_a_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table::restore(dir.path(), idle()).unwrap();
        table
            .set(spec("127.0.0.1:1", "127.0.0.1:1001"))
            .await
            .unwrap();
        table
            .set(spec("127.0.0.1:2", "127.0.0.1:1002"))
            .await
            .unwrap();
        assert!(table.remove("127.0.0.1:2".parse().unwrap()).await.unwrap());
        drop(table);
        let again = Table::restore(dir.path(), idle()).unwrap();
        let states = again.states();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].spec, spec("127.0.0.1:1", "127.0.0.1:1001"));
        std::fs::write(dir.path().join(TABLE_FILE), "{not json").unwrap();
        let error = Table::restore(dir.path(), idle()).unwrap_err();
        assert!(error.to_string().contains("routes.json"), "{error}");
    }
}

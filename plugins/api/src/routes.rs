//! Routes: a stable address whose traffic wharf's proxy sends to one
//! container at a time, switched only once a new container is healthy.
//!
//! The proxy is its own process (`wharf proxy`) so that the daemon can stop,
//! crash or be upgraded without interrupting routed traffic. A deployer
//! reaches it through [`Routes`], handed over in the
//! [`DeployContext`](crate::DeployContext); the types here are also the
//! proxy's wire format (one JSON object per line on its control socket), so
//! the daemon, the proxy and the plugins agree on them by construction.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{DeployContext, DeployError, LogSink};

/// How long requests in flight on the old container may take after a
/// switch, unless `route.drain` says otherwise.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// How often a drain looks at the old upstream's in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// What the proxy forwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    /// HTTP/1.1 reverse proxy: a switch applies to the next request, even
    /// on a kept-alive client connection.
    #[default]
    Http,
    /// Raw TCP: a switch applies to new connections only.
    Tcp,
}

/// The container a route sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// Where the container's port is published (engine-chosen, loopback).
    pub address: SocketAddr,
    /// The container's id, which survives renames: recovery compares it.
    pub container_id: String,
    /// The container's stable name, for people.
    pub container: String,
    /// `repository:tag` the container runs.
    pub image: String,
}

/// A route as the daemon sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub listen: SocketAddr,
    #[serde(default)]
    pub mode: RouteMode,
    pub project: String,
    pub stage: String,
    pub upstream: Upstream,
}

/// Requests in flight on an upstream that is no longer current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draining {
    pub address: SocketAddr,
    pub in_flight: u64,
}

/// A route as the proxy reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteState {
    #[serde(flatten)]
    pub spec: RouteSpec,
    /// Requests (HTTP) or connections (TCP) in flight on the current upstream.
    pub in_flight: u64,
    /// Earlier upstreams that still have requests in flight.
    #[serde(default)]
    pub draining: Vec<Draining>,
    /// Requests answered, by status code (`"200"`, `"502"`; `"tcp"` counts
    /// TCP connections), since the proxy started.
    #[serde(default)]
    pub requests: std::collections::BTreeMap<String, u64>,
    /// How many times the upstream changed since the proxy started.
    #[serde(default)]
    pub switches: u64,
}

impl RouteState {
    /// What is in flight on `address`, current or draining.
    pub fn in_flight_on(&self, address: SocketAddr) -> u64 {
        if self.spec.upstream.address == address {
            return self.in_flight;
        }
        self.draining
            .iter()
            .filter(|d| d.address == address)
            .map(|d| d.in_flight)
            .sum()
    }
}

/// Why the proxy could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No proxy answers (not running, no socket, no answer in time); the
    /// message says where it was looked for.
    #[error("{0}")]
    Unreachable(String),
    /// The proxy answered and refused (it cannot bind `listen`, or cannot
    /// save its table); the message is its reason.
    #[error("{0}")]
    Refused(String),
}

/// The proxy, as a deployer sees it.
#[async_trait]
pub trait Routes: Send + Sync + fmt::Debug {
    /// The route on `listen`, if the proxy has one.
    ///
    /// # Errors
    /// The proxy does not answer; the message says where it was looked for.
    async fn get(&self, listen: SocketAddr) -> Result<Option<RouteState>, RouteError>;

    /// Create the route or point it at a new upstream, atomically: requests
    /// that started keep their upstream, every later one gets the new one.
    /// The proxy has persisted the change when this returns.
    ///
    /// # Errors
    /// The proxy does not answer or refused (e.g. cannot bind `listen`).
    async fn set(&self, route: &RouteSpec) -> Result<(), RouteError>;
}

/// A plugin's `route` table as written (`[docker.route]`,
/// `[compose.route]`); [`Route::parse`] checks it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub listen: String,
    pub port: u16,
    #[serde(default)]
    pub drain: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// A stage's route, checked: a stable address served by wharf's proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The address clients use; the proxy owns it.
    pub listen: SocketAddr,
    /// The container port traffic goes to, published on an engine-chosen
    /// loopback port.
    pub port: u16,
    /// How long the old container may finish what is in flight.
    pub drain: Duration,
    pub mode: RouteMode,
}

impl Route {
    /// Check a route table on its own (each plugin then checks it against
    /// its own ports; the daemon against every other stage's).
    ///
    /// # Errors
    /// A message naming the key: an address that is not one, port 0, a
    /// drain that is not a duration, an unknown mode.
    pub fn parse(raw: &RawRoute) -> Result<Route, String> {
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            format!(
                "listen '{}' is not an address like \"127.0.0.1:8080\" or \"[::1]:8080\"",
                raw.listen
            )
        })?;
        if listen.port() == 0 {
            return Err(format!(
                "listen '{}': port 0 is not a stable address; give the port clients use",
                raw.listen
            ));
        }
        if raw.port == 0 {
            return Err("port = 0: give the container port traffic goes to".into());
        }
        let drain = match &raw.drain {
            None => DEFAULT_DRAIN,
            Some(text) => crate::duration::parse(text).map_err(|e| format!("drain {e}"))?,
        };
        let mode = match raw.mode.as_deref() {
            None | Some("http") => RouteMode::Http,
            Some("tcp") => RouteMode::Tcp,
            Some(other) => return Err(format!("mode '{other}': expected \"http\" or \"tcp\"")),
        };
        Ok(Route {
            listen,
            port: raw.port,
            drain,
            mode,
        })
    }
}

/// A host address a stage's settings take for themselves, so that the
/// daemon can keep two stages off one address: only there are all stages
/// seen together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A route's `listen`: the proxy binds it.
    Route(SocketAddr),
    /// A fixed host port the stage's containers publish (all interfaces
    /// as `0.0.0.0`).
    Published(SocketAddr),
}

impl Claim {
    pub fn address(&self) -> SocketAddr {
        match self {
            Claim::Route(address) | Claim::Published(address) => *address,
        }
    }

    /// Whether two claims need the same host address: same port, and IPs
    /// that overlap (equal, or either one all interfaces).
    pub fn overlaps(&self, other: &Claim) -> bool {
        let (a, b) = (self.address(), other.address());
        a.port() == b.port()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    }
}

/// A route and the proxy that serves it, for one stage: what a deployer
/// needs to switch, drain and recover, whatever runs its containers.
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    pub route: &'a Route,
    pub routes: &'a dyn Routes,
    pub project: &'a str,
    pub stage: &'a str,
}

impl<'a> Routed<'a> {
    /// The route of a stage that has one, with the proxy from the context.
    /// `table` names the plugin's table for the message (`docker`).
    ///
    /// # Errors
    /// `Unavailable` when the daemon gave no proxy handle.
    pub fn of(
        route: Option<&'a Route>,
        context: &'a DeployContext,
        table: &str,
        project: &'a str,
        stage: &'a str,
    ) -> Result<Option<Routed<'a>>, DeployError> {
        route
            .map(|route| Routed::new(route, context, table, project, stage))
            .transpose()
    }

    /// [`Routed::of`] for a stage known to have `route`.
    ///
    /// # Errors
    /// `Unavailable` when the daemon gave no proxy handle.
    pub fn new(
        route: &'a Route,
        context: &'a DeployContext,
        table: &str,
        project: &'a str,
        stage: &'a str,
    ) -> Result<Routed<'a>, DeployError> {
        let Some(routes) = context.routes.as_deref() else {
            return Err(DeployError::Unavailable(format!(
                "this stage has a [{table}.route] but wharf runs without its route proxy; nothing was changed"
            )));
        };
        Ok(Routed {
            route,
            routes,
            project,
            stage,
        })
    }

    /// Point the route at `upstream`, atomically.
    ///
    /// # Errors
    /// The proxy does not answer or refused.
    pub async fn switch(&self, upstream: Upstream) -> Result<(), RouteError> {
        self.routes
            .set(&RouteSpec {
                listen: self.route.listen,
                mode: self.route.mode,
                project: self.project.to_string(),
                stage: self.stage.to_string(),
                upstream,
            })
            .await
    }

    /// The id of the container the route serves now, if it has one.
    ///
    /// # Errors
    /// The proxy does not answer.
    pub async fn serving(&self) -> Result<Option<String>, RouteError> {
        Ok(self
            .routes
            .get(self.route.listen)
            .await?
            .map(|state| state.spec.upstream.container_id))
    }

    /// [`Routed::serving`], asked before a deployment touches anything: a
    /// proxy that does not answer refuses the deployment (the proxy must be
    /// there to switch to the new version).
    ///
    /// # Errors
    /// [`DeployError::Unavailable`]: the proxy does not answer.
    pub async fn serving_before_deploy(&self) -> Result<Option<String>, DeployError> {
        self.serving().await.map_err(|e| {
            DeployError::Unavailable(format!(
                "{e}; the route's proxy must answer before its stage deploys; nothing was changed"
            ))
        })
    }

    /// Wait until nothing is in flight on `old`, or `drain` has passed.
    /// A proxy that stops answering ends the wait early (logged): the old
    /// container's requests are then its own.
    pub async fn drain(&self, old: SocketAddr, log: &LogSink) {
        let started = Instant::now();
        loop {
            let in_flight = match self.routes.get(self.route.listen).await {
                Ok(Some(state)) => state.in_flight_on(old),
                Ok(None) => 0,
                Err(e) => {
                    log.info(format!(
                        "cannot read what is in flight on the previous container: {e}"
                    ));
                    return;
                }
            };
            if in_flight == 0 {
                log.info(format!(
                    "the previous container drained in {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
                return;
            }
            if started.elapsed() >= self.route.drain {
                log.info(format!(
                    "route.drain {} is over with {in_flight} request(s) still in flight on the previous container; stopping it",
                    crate::duration::format(self.route.drain)
                ));
                return;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

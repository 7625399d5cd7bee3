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

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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

/// The proxy, as a deployer sees it.
#[async_trait]
pub trait Routes: Send + Sync + fmt::Debug {
    /// The route on `listen`, if the proxy has one.
    ///
    /// # Errors
    /// The proxy does not answer; the message says where it was looked for.
    async fn get(&self, listen: SocketAddr) -> Result<Option<RouteState>, String>;

    /// Create the route or point it at a new upstream, atomically: requests
    /// that started keep their upstream, every later one gets the new one.
    /// The proxy has persisted the change when this returns.
    ///
    /// # Errors
    /// The proxy does not answer or refused (e.g. cannot bind `listen`).
    async fn set(&self, route: &RouteSpec) -> Result<(), String>;
}

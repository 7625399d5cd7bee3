//! The connection to one engine: the local one as the `docker` CLI finds
//! it, or one `[hosts]` names (tcp with TLS client certificates, unix, ssh),
//! with the API version negotiated down to what the engine offers.

use std::net::IpAddr;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{Docker, API_DEFAULT_VERSION};

use crate::error::{classify, with_causes, EngineError};
use crate::hosts::Endpoint;

/// How long connecting and negotiating the API version may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one engine, with the API version agreed on.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    host: String,
    machine: Machine,
}

/// Where the engine's published ports are reached from wharf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// This machine: the local engine or a `unix://` socket.
    Local,
    /// Another machine, at this address when its name resolved.
    Remote(Option<IpAddr>),
}

/// The first address of a host name (or the address itself).
async fn resolve(name: &str) -> Option<IpAddr> {
    if let Ok(ip) = name.parse() {
        return Some(ip);
    }
    let mut addresses = tokio::net::lookup_host((name, 0)).await.ok()?;
    addresses.next().map(|a| a.ip())
}

/// A bollard client for `endpoint`, not yet connected.
fn client(endpoint: &Endpoint, timeout: Duration) -> Result<Docker, BollardError> {
    let Endpoint::Remote(remote) = endpoint else {
        return Docker::connect_with_defaults();
    };
    let url = remote.url.as_str();
    let seconds = timeout.as_secs().max(1);
    match (&remote.tls, url.split_once("://").map_or("", |(s, _)| s)) {
        (Some(tls), _) => {
            // rustls needs one process-wide crypto provider; wharf builds
            // with ring only. A second call finds it installed: fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Docker::connect_with_ssl(
                url,
                &tls.key,
                &tls.cert,
                &tls.ca,
                seconds,
                API_DEFAULT_VERSION,
            )
        }
        (None, "unix") => Docker::connect_with_unix(url, seconds, API_DEFAULT_VERSION),
        (None, "ssh") => Docker::connect_with_ssh(
            url,
            seconds,
            API_DEFAULT_VERSION,
            remote.ssh_key.as_ref().map(|k| k.display().to_string()),
        ),
        (None, _) => Docker::connect_with_http(url, seconds, API_DEFAULT_VERSION),
    }
}

impl Engine {
    /// Connect as the `docker` CLI would (`DOCKER_HOST`, else the local
    /// socket) and agree on an API version. `timeout` bounds every call that
    /// waits for the engine's answer (a stop waits up to its own timeout).
    ///
    /// # Errors
    /// [`EngineError::Unreachable`] with the host and the cause.
    pub async fn connect(timeout: Duration) -> Result<Engine, EngineError> {
        Engine::connect_to(&Endpoint::Local, timeout).await
    }

    /// Connect to `endpoint` and agree on an API version.
    ///
    /// # Errors
    /// [`EngineError::Unreachable`] with the host and the cause.
    pub async fn connect_to(endpoint: &Endpoint, timeout: Duration) -> Result<Engine, EngineError> {
        let host = match endpoint {
            Endpoint::Local => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
            Endpoint::Remote(_) => endpoint.describe(),
        };
        let unreachable = |message: String| EngineError::Unreachable {
            host: host.clone(),
            message,
        };
        let docker = client(endpoint, timeout)
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(timeout);
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(unreachable(with_causes(&e))),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let machine = match endpoint.machine() {
            None => Machine::Local,
            Some(name) => match resolve(&name).await {
                // tcp://127.0.0.1:… is an engine on this very machine.
                Some(ip) if ip.is_loopback() => Machine::Local,
                address => Machine::Remote(address),
            },
        };
        Ok(Engine {
            docker,
            host,
            machine,
        })
    }

    /// Where this engine's published ports are reached from wharf.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// The address this engine was reached at, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The API version agreed on, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let version = self.docker.client_version();
        format!("{}.{}", version.major_version, version.minor_version)
    }

    /// A bollard error in the terms the deploy flows decide on.
    pub(crate) fn classify(&self, error: BollardError) -> EngineError {
        classify(&self.host, error)
    }
}

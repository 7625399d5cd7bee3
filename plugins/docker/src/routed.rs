//! The docker deployer's side of a route (`[docker.route]`): the new
//! container publishes `route.port` on an engine-chosen loopback port; once
//! it passed the health gate the proxy is switched to it; the old one
//! drains (nothing in flight on it, or `drain` elapsed) before it is
//! stopped.
//!
//! For crash recovery the proxy's table is the record of which container
//! serves: [`serving`] says whether the route already points at a
//! container, whatever the names on the engine say.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wharf_plugin_api::routes::{RouteSpec, Upstream};
use wharf_plugin_api::{DeployContext, DeployError, LogSink, Routes};

use crate::engine::{ContainerInfo, Machine};
use crate::settings::Route;

/// How often the drain looks at the old upstream's in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// A route and the proxy that serves it, for one stage.
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    pub route: &'a Route,
    pub routes: &'a dyn Routes,
    pub project: &'a str,
    pub stage: &'a str,
}

impl<'a> Routed<'a> {
    /// The route of a stage that has one, with the proxy from the context.
    ///
    /// # Errors
    /// `Unavailable` when the daemon gave no proxy handle.
    pub fn of(
        route: Option<&'a Route>,
        context: &'a DeployContext,
        project: &'a str,
        stage: &'a str,
    ) -> Result<Option<Routed<'a>>, DeployError> {
        let Some(route) = route else {
            return Ok(None);
        };
        let Some(routes) = context.routes.as_deref() else {
            return Err(DeployError::Unavailable(
                "this stage has a [docker.route] but wharf runs without its route proxy; nothing was changed".into(),
            ));
        };
        Ok(Some(Routed {
            route,
            routes,
            project,
            stage,
        }))
    }

    /// Where the proxy reaches `container` for this route.
    pub fn address_of(&self, container: &ContainerInfo) -> Option<SocketAddr> {
        crate::replace::probe_target(container, self.route.port, Machine::Local)
    }

    /// Point the route at `container` (named `name`, running `image`).
    ///
    /// # Errors
    /// The container publishes no route port, or the proxy refused.
    pub async fn switch_to(
        &self,
        container: &ContainerInfo,
        name: &str,
        image: &str,
    ) -> Result<SocketAddr, String> {
        let address = self.address_of(container).ok_or_else(|| {
            format!(
                "the new container publishes no port {} for the route",
                self.route.port
            )
        })?;
        self.routes
            .set(&RouteSpec {
                listen: self.route.listen,
                mode: self.route.mode,
                project: self.project.to_string(),
                stage: self.stage.to_string(),
                upstream: Upstream {
                    address,
                    container_id: container.id.clone(),
                    container: name.to_string(),
                    image: image.to_string(),
                },
            })
            .await?;
        Ok(address)
    }

    /// The id of the container the route serves now, if it has one.
    ///
    /// # Errors
    /// The proxy does not answer.
    pub async fn serving(&self) -> Result<Option<String>, String> {
        Ok(self
            .routes
            .get(self.route.listen)
            .await?
            .map(|state| state.spec.upstream.container_id))
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
                    wharf_plugin_api::duration::format(self.route.drain)
                ));
                return;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

//! The docker deployer's side of a route (`[docker.route]`): the new
//! container publishes `route.port` on an engine-chosen loopback port; once
//! it passed the health gate the proxy is switched to it; the old one
//! drains (nothing in flight on it, or `drain` elapsed) before it is
//! stopped. Switching, draining and asking which container serves are the
//! same for every deployer ([`Routed`]); what is docker's own is where a
//! container publishes the route's port.
//!
//! For crash recovery the proxy's table is the record of which container
//! serves: [`Routed::serving`] says whether the route already points at a
//! container, whatever the names on the engine say.

use std::net::SocketAddr;

use wharf_engine::{ContainerInfo, Machine};
pub use wharf_plugin_api::routes::Routed;
use wharf_plugin_api::routes::Upstream;

/// Where the proxy reaches `container` for `routed`'s route.
pub fn address_of(routed: &Routed<'_>, container: &ContainerInfo) -> Option<SocketAddr> {
    crate::replace::probe_target(container, routed.route.port, Machine::Local)
}

/// Point the route at `container` (named `name`, running `image`).
///
/// # Errors
/// The container publishes no route port, or the proxy refused.
pub async fn switch_to(
    routed: &Routed<'_>,
    container: &ContainerInfo,
    name: &str,
    image: &str,
) -> Result<SocketAddr, String> {
    let address = address_of(routed, container).ok_or_else(|| {
        format!(
            "the new container publishes no port {} for the route",
            routed.route.port
        )
    })?;
    routed
        .switch(Upstream {
            address,
            container_id: container.id.clone(),
            container: name.to_string(),
            image: image.to_string(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(address)
}

//! The daemon's upkeep of the proxy's routes, between deployments.
//!
//! - **At start** the proxy's table is held against the catalog: a route
//!   that no loaded stage claims any more (its project file was deleted, or
//!   its `route` table removed) is removed, so its address is free again; a
//!   route whose project file does not load right now is kept (a typo must
//!   not take a site down); a stage whose route the proxy does not have is
//!   named (it gets one at its next deployment).
//! - **While it runs** each route's upstream is tried every
//!   [`CHECK_EVERY`]: an engine that restarts a container (its restart
//!   policy, the engine's own restart, a reboot) may publish it on another
//!   host port. When the upstream refuses connections, the stage's deployer
//!   says where that same container is published now, and the route moves
//!   there — only if it still serves that container, so a deployment that
//!   switched meanwhile wins.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tracing::{info, warn};
use wharf_plugin_api::routes::{Claim, RouteState};

use super::client::ProxyClient;
use crate::config::catalog::{project_name, Catalog};

/// How often each route's upstream is tried.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A connection attempt to an upstream on loopback answers at once; this
/// only bounds a wedged one.
const CONNECT_LIMIT: Duration = Duration::from_secs(1);

/// What the start-up check found and did, for the log and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Routes removed: no stage claims their address.
    pub removed: Vec<SocketAddr>,
    /// Routes kept although no loaded stage claims them: their project's
    /// file does not load now.
    pub kept: Vec<SocketAddr>,
    /// `project/stage` whose route the proxy lacks.
    pub missing: Vec<String>,
}

/// Hold the proxy's `routes` against `catalog` (see the module docs).
pub fn plan(catalog: &Catalog, routes: &[RouteState]) -> Reconciled {
    let claimed: HashMap<SocketAddr, String> = catalog
        .projects()
        .flat_map(|p| {
            p.stages.values().flat_map(move |s| {
                s.claims.iter().filter_map(move |c| match c {
                    Claim::Route(listen) => Some((*listen, format!("{}/{}", p.name, s.name))),
                    Claim::Published(_) => None,
                })
            })
        })
        .collect();
    let broken: BTreeSet<String> = catalog
        .errors()
        .filter_map(|e| project_name(&e.file))
        .collect();
    let mut reconciled = Reconciled::default();
    for route in routes {
        let listen = route.spec.listen;
        if claimed.contains_key(&listen) {
            continue;
        }
        if broken.contains(&route.spec.project) {
            reconciled.kept.push(listen);
        } else {
            reconciled.removed.push(listen);
        }
    }
    let present: BTreeSet<SocketAddr> = routes.iter().map(|r| r.spec.listen).collect();
    reconciled.missing = claimed
        .iter()
        .filter(|(listen, _)| !present.contains(listen))
        .map(|(listen, stage)| format!("{stage} ({listen})"))
        .collect();
    reconciled.missing.sort();
    reconciled
}

/// Apply [`plan`] to the proxy, whose table is `routes`; logs what it did.
pub async fn reconcile(
    catalog: &Catalog,
    routes: &[RouteState],
    client: &ProxyClient,
) -> Reconciled {
    let reconciled = plan(catalog, routes);
    for listen in &reconciled.removed {
        match client.remove(*listen).await {
            Ok(_) => info!(%listen, "removed a route no stage has any more"),
            Err(e) => warn!(%listen, error = %e, "cannot remove a route no stage has any more"),
        }
    }
    for listen in &reconciled.kept {
        warn!(%listen, "kept a route whose project file does not load: fix the file, or delete it to free the address");
    }
    for stage in &reconciled.missing {
        info!(stage = %stage, "the proxy has no route for this stage yet: its next deployment creates it");
    }
    reconciled
}

/// Keep the proxy's routes in step with the catalog and their containers
/// until the task is dropped: [`reconcile`] whenever a new catalog is in
/// force (the first tick, then after each reload), and each upstream
/// tried every [`CHECK_EVERY`]. Never starts a proxy: with none answering
/// there is nothing to keep.
pub async fn run(client: ProxyClient, catalog: Arc<ArcSwap<Catalog>>) {
    let mut interval = tokio::time::interval(CHECK_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reconciled: Option<Arc<Catalog>> = None;
    // An upstream already reported as lost, so the log says it once.
    let mut reported: BTreeSet<(SocketAddr, String)> = BTreeSet::new();
    loop {
        interval.tick().await;
        if !client.answers().await {
            continue;
        }
        // One listing per tick serves both the reconciliation and the
        // upstream checks.
        let snapshot = catalog.load_full();
        let pending = !reconciled
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &snapshot));
        let routes = match client.list().await {
            Ok(routes) => routes,
            Err(e) => {
                if pending && snapshot.has_routes() {
                    warn!(error = %e, "cannot hold the proxy's routes against the projects");
                }
                continue;
            }
        };
        if pending {
            reconcile(&snapshot, &routes, &client).await;
            reconciled = Some(snapshot.clone());
        }
        for route in &routes {
            follow_upstream(route, &snapshot, &client, &mut reported).await;
        }
    }
}

/// When `route`'s upstream refuses connections, ask its stage's plan
/// where that container is published now and move the route there.
async fn follow_upstream(
    route: &RouteState,
    catalog: &Catalog,
    client: &ProxyClient,
    reported: &mut BTreeSet<(SocketAddr, String)>,
) {
    let upstream = &route.spec.upstream;
    let listen = route.spec.listen;
    if answers(upstream.address).await {
        return;
    }
    let Some(stage) = catalog
        .project(&route.spec.project)
        .and_then(|p| p.stages.get(&route.spec.stage))
    else {
        return;
    };
    let key = (listen, upstream.container_id.clone());
    match stage.plan.locate_upstream(upstream).await {
        Ok(Some(address)) if address != upstream.address => {
            match client
                .relocate(listen, &upstream.container_id, address)
                .await
            {
                Ok(true) => {
                    info!(%listen, container = %upstream.container, from = %upstream.address, to = %address, "the route's container was republished; the route follows it");
                    reported.remove(&key);
                }
                Ok(false) => {}
                Err(e) => warn!(%listen, error = %e, "cannot move the route"),
            }
        }
        Ok(_) => {
            if reported.insert(key) {
                warn!(%listen, container = %upstream.container, address = %upstream.address, "the route's container does not answer and is not published anywhere else: its stage's next deployment replaces it");
            }
        }
        Err(e) => {
            if reported.insert(key) {
                warn!(%listen, error = %e, "the route's container does not answer, and its engine cannot be asked where it is");
            }
        }
    }
}

/// Whether something accepts connections on `address`.
async fn answers(address: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(address)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_plugin_api::routes::{RouteMode, RouteSpec, Upstream};

    fn state(listen: &str, project: &str) -> RouteState {
        RouteState {
            spec: RouteSpec {
                listen: listen.parse().unwrap(),
                mode: RouteMode::Http,
                project: project.into(),
                stage: "prod".into(),
                upstream: Upstream {
                    address: "127.0.0.1:40000".parse().unwrap(),
                    container_id: "c1".into(),
                    container: "wharf-x-prod".into(),
                    image: "x:v1".into(),
                },
            },
            in_flight: 0,
            draining: Vec::new(),
            requests: Default::default(),
            switches: 0,
        }
    }

    #[test]
    fn routes_no_stage_claims_go_unless_their_file_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let routed = |image: &str, listen: &str| {
            format!("image = \"{image}\"\n[stages.prod]\ntags = [\"v*\"]\n[docker]\n[docker.route]\nlisten = \"{listen}\"\nport = 80\n")
        };
        std::fs::write(dir.path().join("a.toml"), routed("a", "127.0.0.1:8080")).unwrap();
        std::fs::write(dir.path().join("b.toml"), routed("b", "127.0.0.1:8081")).unwrap();
        // c's file is broken now; d's file is gone; e moved its route.
        std::fs::write(dir.path().join("c.toml"), "image = \"c\"\n[stages.prod\n").unwrap();
        std::fs::write(dir.path().join("e.toml"), routed("e", "127.0.0.1:8095")).unwrap();
        let registry = crate::plugins::registry(&Default::default());
        let catalog = Catalog::load_dir(dir.path(), &registry);
        let routes = [
            state("127.0.0.1:8080", "a"),
            state("127.0.0.1:8082", "c"),
            state("127.0.0.1:8083", "d"),
            state("127.0.0.1:8084", "e"),
        ];
        let reconciled = plan(&catalog, &routes);
        assert_eq!(
            reconciled.removed,
            [
                "127.0.0.1:8083".parse().unwrap(),
                "127.0.0.1:8084".parse().unwrap()
            ]
        );
        assert_eq!(reconciled.kept, ["127.0.0.1:8082".parse().unwrap()]);
        assert_eq!(
            reconciled.missing,
            ["b/prod (127.0.0.1:8081)", "e/prod (127.0.0.1:8095)"]
        );
    }
}

//! The systemd readiness protocol (`sd_notify`), for `Type=notify` units.
//!
//! systemd reports `wharf.service` as started only when wharf says so:
//! `READY=1` is sent once the listener is bound and the projects are loaded,
//! so a unit ordered `After=wharf.service` (or a deploy script running
//! `systemctl start wharf && curl …`) never meets a refused connection.
//! Around a SIGHUP reload, `RELOADING=1` and then `READY=1` again, which
//! makes `systemctl reload wharf` wait for the reload to finish; `STOPPING=1`
//! when shutdown starts. `STATUS=` carries a one-line summary that
//! `systemctl status wharf` shows.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every function here does nothing.
//! The unit sets `NotifyAccess=main`, so scripts that inherit the variable
//! cannot speak for wharf.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use rocket::fairing::AdHoc;
use sd_notify::NotifyState;
use tracing::debug;

use crate::config::catalog::Catalog;

/// The one-line state `systemctl status` shows, e.g.
/// `listening on 127.0.0.1:8080; 3 projects, 1 file with errors`.
pub fn summary(listen: SocketAddr, catalog: &Catalog) -> String {
    let projects = catalog.len();
    let errors = catalog.errors().count();
    let mut line = format!(
        "listening on {listen}; {projects} project{}",
        if projects == 1 { "" } else { "s" }
    );
    if errors > 0 {
        line.push_str(&format!(
            ", {errors} file{} with errors (wharf check)",
            if errors == 1 { "" } else { "s" }
        ));
    }
    line
}

/// Started (or a reload finished): `READY=1` with the summary.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A full reload (SIGHUP) begins. `MONOTONIC_USEC` is what systemd ≥ 253
/// requires to match the `RELOADING=1` to the reload it asked for; older
/// versions ignore it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    states.extend(NotifyState::monotonic_usec_now().ok());
    states.push(NotifyState::Status("reloading"));
    send(&states);
}

/// Shutdown begins: systemd shows "deactivating" rather than a crash.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Only the summary changed (a project file was edited).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

fn send(states: &[NotifyState]) {
    // Failing to notify is not a reason to stop: under systemd the unit
    // then times out and says why; outside it there is nobody to tell.
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "cannot notify the service manager");
    }
}

/// Tells systemd about wharf's life once it is listening. Cloned into the
/// places that start, reload and stop; before the listener is bound it stays
/// silent, so a reload during start-up cannot announce READY too early.
#[derive(Clone, Default)]
pub struct Notifier {
    bound: Arc<OnceLock<SocketAddr>>,
}

impl Notifier {
    /// A liftoff fairing: Rocket runs it once the listener is bound, after
    /// wharf's own liftoff fairing, with the projects already loaded — so
    /// this is where wharf is ready. It also sends `STOPPING=1` the moment
    /// Rocket begins a graceful shutdown (SIGTERM, SIGINT).
    pub fn fairing(&self, catalog: Arc<ArcSwap<Catalog>>) -> AdHoc {
        let bound = self.bound.clone();
        AdHoc::on_liftoff("readiness", move |rocket| {
            Box::pin(async move {
                let address = SocketAddr::new(rocket.config().address, rocket.config().port);
                let _ = bound.set(address);
                ready(&summary(address, &catalog.load()));
                let shutdown = rocket.shutdown();
                tokio::spawn(async move {
                    shutdown.await;
                    stopping("stopping");
                });
            })
        })
    }

    /// A full reload (SIGHUP) is about to start.
    pub fn reloading(&self) {
        if self.bound.get().is_some() {
            reloading();
        }
    }

    /// A reload finished: `READY=1` after a full one (which sent
    /// `RELOADING=1`), else only the new summary.
    pub fn reloaded(&self, full: bool, catalog: &Catalog) {
        let Some(&address) = self.bound.get() else {
            return;
        };
        let line = summary(address, catalog);
        if full {
            ready(&line);
        } else {
            status(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_projects_and_errors() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let catalog =
            Catalog::load_dir(empty.path(), &crate::plugins::registry(&Default::default()));
        assert_eq!(
            summary(listen, &catalog),
            "listening on 127.0.0.1:8080; 0 projects"
        );
        std::fs::write(empty.path().join("bad.toml"), "image = \n").unwrap();
        let catalog =
            Catalog::load_dir(empty.path(), &crate::plugins::registry(&Default::default()));
        assert_eq!(
            summary(listen, &catalog),
            "listening on 127.0.0.1:8080; 0 projects, 1 file with errors (wharf check)"
        );
    }
}

//! `wharf proxy`: the route proxy, its own process so that stopping,
//! restarting, upgrading or killing the daemon never interrupts routed
//! traffic.
//!
//! - [`table`]: the routes, their current upstreams and in-flight counts,
//!   persisted to `<state_dir>/routes.json` and restored at start;
//! - [`http`]: the HTTP/1.1 reverse proxy; [`tcp`]: `mode = "tcp"`;
//! - [`control`]: the control socket `<state_dir>/proxy.sock`;
//! - [`client`]: the daemon's side of that socket; [`upkeep`]: the
//!   daemon keeping routes in step with its projects and containers.

pub mod client;
pub mod control;
pub mod http;
pub mod table;
pub mod tcp;
pub mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;
use wharf_plugin_api::routes::RouteMode;

use table::{Route, Table};

/// How long requests in flight may take to finish when the proxy stops.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The proxy's pid file in the state dir (for operators and tests).
pub const PID_FILE: &str = "proxy.pid";

/// Run the proxy for `state_dir` until SIGTERM or SIGINT; then it stops
/// accepting at once and gives requests in flight a few seconds. Between
/// this proxy letting go of its addresses and the next one binding them,
/// new connections are refused: that is why the daemon never restarts the
/// proxy itself.
///
/// # Errors
/// The state dir or the saved table cannot be read, or another proxy
/// serves the same state dir.
pub async fn run(state_dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create state_dir {}", state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&state_dir)
        .with_context(|| format!("cannot resolve state_dir {}", state_dir.display()))?;
    let control = control::bind(&state_dir).await?;
    let upstreams = http::client();
    let table = Table::restore(
        &state_dir,
        Box::new(move |route: Arc<Route>| {
            let listener = http::bind(route.listen)?;
            Ok(match route.mode {
                RouteMode::Http => tokio::spawn(http::serve(listener, route, upstreams.clone())),
                RouteMode::Tcp => tokio::spawn(tcp::serve(listener, route)),
            })
        }),
    )?;
    let table = Arc::new(table);
    write_pid(&state_dir);
    // Under systemd (wharf-proxy.service, Type=notify): ready once the
    // socket is bound and the saved routes listen. Outside it, a no-op.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    info!(
        state_dir = %state_dir.display(),
        routes = table.states().len(),
        "route proxy ready"
    );
    let mut terms = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut ints = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        () = control::serve(control, table.clone()) => {}
        _ = terms.recv() => {}
        _ = ints.recv() => {}
    }
    // A restart (systemd, an upgrade): let go of the socket and the
    // addresses first, so the next proxy can take them at once, then let
    // what is in flight finish.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = std::fs::remove_file(state_dir.join(control::SOCKET_FILE));
    table.stop_listening().await;
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while table.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The next proxy may already have written its own.
    let pid_file = state_dir.join(PID_FILE);
    if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == std::process::id().to_string())
    {
        let _ = std::fs::remove_file(&pid_file);
    }
    info!("route proxy stopped");
    Ok(())
}

fn write_pid(state_dir: &Path) {
    let path = state_dir.join(PID_FILE);
    if let Err(e) = crate::config::atomic::write_atomic(
        &path,
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
    ) {
        tracing::warn!(file = %path.display(), error = %e, "cannot write the pid file");
    }
}

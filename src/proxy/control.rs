//! The proxy's control socket, `<state_dir>/proxy.sock` (mode 0600): one
//! JSON object per line each way.
//!
//! - `{"op":"list"}` → `{"ok":true,"routes":[…]}` (each a
//!   [`RouteState`](wharf_plugin_api::routes::RouteState));
//! - `{"op":"set","route":{…}}` → `{"ok":true}` once switched and saved;
//! - `{"op":"remove","listen":"127.0.0.1:8080"}` → `{"ok":true,"removed":true}`;
//! - anything else → `{"ok":false,"error":"…"}`; the connection stays usable.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};
use wharf_plugin_api::routes::RouteSpec;

use super::table::Table;

/// The socket's file in the state dir.
pub const SOCKET_FILE: &str = "proxy.sock";
/// The longest request line: a route is a few hundred bytes.
pub const MAX_LINE: u64 = 64 * 1024;

/// A request on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    List,
    Set {
        route: RouteSpec,
    },
    /// Move a route to `address` if it still serves `container_id`.
    Relocate {
        listen: SocketAddr,
        container_id: String,
        address: SocketAddr,
    },
    Remove {
        listen: SocketAddr,
    },
}

/// Bind the socket, replacing a stale file left by a proxy that died.
///
/// # Errors
/// Another proxy answers on it, or it cannot be bound or restricted to
/// its owner.
pub async fn bind(state_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = state_dir.join(SOCKET_FILE);
    if UnixStream::connect(&path).await.is_ok() {
        anyhow::bail!(
            "another wharf proxy already answers on {} (one proxy per state_dir)",
            path.display()
        );
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot remove the stale socket {}: {e}", path.display()),
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow::anyhow!("cannot restrict {} to its owner: {e}", path.display()))?;
    Ok(listener)
}

/// Answer control connections until the task ends.
pub async fn serve(listener: UnixListener, table: Arc<Table>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, table.clone()));
            }
            Err(e) => {
                warn!(error = %e, "cannot accept on the control socket");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, table: Arc<Table>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        let n = match (&mut read).take(MAX_LINE).read_line(&mut line).await {
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "control connection ended");
                return;
            }
        };
        if n == 0 {
            return;
        }
        let answer = if !line.ends_with('\n') && n as u64 >= MAX_LINE {
            let answer =
                json!({"ok": false, "error": format!("request line longer than {MAX_LINE} bytes")});
            let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
            return;
        } else {
            handle(&table, line.trim()).await
        };
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn handle(table: &Table, line: &str) -> Value {
    let request: ControlRequest = match serde_json::from_str(line) {
        Ok(request) => request,
        Err(e) => return json!({"ok": false, "error": format!("not a control request: {e}")}),
    };
    match request {
        ControlRequest::List => json!({"ok": true, "routes": table.states()}),
        ControlRequest::Set { route } => match table.set(route).await {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        ControlRequest::Relocate {
            listen,
            container_id,
            address,
        } => match table.relocate(listen, &container_id, address).await {
            Ok(moved) => json!({"ok": true, "moved": moved}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        ControlRequest::Remove { listen } => match table.remove(listen).await {
            Ok(removed) => json!({"ok": true, "removed": removed}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
    }
}

//! `mode = "tcp"`: raw TCP forwarding. A connection is bound to the
//! upstream current when it was accepted and counts in flight until either
//! side closes; a switch applies to new connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::table::Route;

/// How long connecting to an upstream may take (it is on this machine).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accept connections for `route` until the task is aborted.
pub async fn serve(listener: TcpListener, route: Arc<Route>) {
    loop {
        let (mut client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(listen = %route.listen, error = %e, "cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let route = route.clone();
        tokio::spawn(async move {
            let in_flight = route.acquire();
            let upstream = in_flight.upstream();
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await;
            let mut server = match connected {
                Ok(Ok(server)) => server,
                Ok(Err(e)) => {
                    route.count("tcp_refused");
                    warn!(listen = %route.listen, upstream = %upstream, error = %e, "no upstream answers");
                    return;
                }
                Err(_) => {
                    route.count("tcp_refused");
                    warn!(listen = %route.listen, upstream = %upstream, "connecting to the upstream timed out");
                    return;
                }
            };
            route.count("tcp");
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                debug!(peer = %peer, error = %e, "tcp connection ended with an error");
            }
            drop(in_flight);
        });
    }
}

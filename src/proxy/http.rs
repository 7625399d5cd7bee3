//! The HTTP side of a route: an HTTP/1.1 server (keep-alive, header read
//! timeout) whose every request goes to the route's current upstream
//! through one pooled client, bodies streamed both ways, `Upgrade`
//! (websockets) spliced through, `X-Forwarded-*` added, and a JSON `502`
//! when the upstream does not answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::table::{InFlight, Route};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to an upstream may take (it is on this machine).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an upstream may take to start its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;
pub type Upstreams = Client<HttpConnector, ProxyBody>;

/// The pooled client all routes share (keyed by upstream address inside).
pub fn client() -> Upstreams {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Accept connections for `route` until the task is aborted.
pub async fn serve(listener: TcpListener, route: Arc<Route>, upstreams: Upstreams) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                warn!(listen = %route.listen, error = %e, "cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let route = route.clone();
        let upstreams = upstreams.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let route = route.clone();
                let upstreams = upstreams.clone();
                async move { Ok::<_, Infallible>(forward(&route, &upstreams, peer, request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                debug!(peer = %peer, error = %e, "client connection ended with an error");
            }
        });
    }
}

/// Headers that belong to one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Header names the proxy writes on every request, made once: a name
/// parsed from a `&str` costs a parse and an allocation per request.
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Headers the client named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(&KEEP_ALIVE);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// `X-Forwarded-For` gets the client appended; `-Proto` and `-Host` are
/// kept when a proxy in front (Caddy, nginx) set them, else filled in.
fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr) {
    let client = peer.ip().to_string();
    let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {client}"),
        None => client,
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(host) = headers.get(header::HOST).cloned() {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
    }
}

/// One request, start to end (the in-flight count is released when the
/// answer's body is done, or the upgraded connection closes).
async fn forward(
    route: &Route,
    upstreams: &Upstreams,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let in_flight = route.acquire();
    let upstream = in_flight.upstream();
    let upgrade = is_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = match format!("http://{upstream}{path}").parse() {
        Ok(uri) => uri,
        Err(_) => {
            return answer(
                route,
                StatusCode::BAD_REQUEST,
                "the request target is not valid",
            )
        }
    };
    strip_hop_by_hop(&mut parts.headers, upgrade);
    add_forwarded(&mut parts.headers, peer);
    // A safe request without a body can be sent again when the first
    // attempt met a pooled connection the upstream had just closed.
    let bodiless = body.is_end_stream()
        && !upgrade
        && matches!(
            parts.method,
            hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
        );
    let response = if bodiless {
        match send(upstreams, Request::from_parts(parts.clone(), empty())).await {
            Err(Failure::Send(e)) => {
                debug!(upstream = %upstream, error = %e, "retrying a bodiless request once");
                send(upstreams, Request::from_parts(parts, empty())).await
            }
            other => other,
        }
    } else {
        send(upstreams, Request::from_parts(parts, body.boxed())).await
    };
    let mut response = match response {
        Ok(response) => response,
        Err(Failure::Timeout) => {
            return answer(
                route,
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "the upstream did not answer within {}s",
                    RESPONSE_TIMEOUT.as_secs()
                ),
            )
        }
        Err(Failure::Send(e)) => {
            warn!(listen = %route.listen, upstream = %upstream, error = %e, "no answer from the upstream");
            return answer(
                route,
                StatusCode::BAD_GATEWAY,
                "no upstream answers for this route",
            );
        }
    };
    route.count(response.status().as_str());
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(splice(client_upgrade, upstream_upgrade, in_flight));
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, empty());
        }
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(
        parts,
        Counted {
            inner: body,
            _in_flight: in_flight,
        }
        .boxed(),
    )
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

enum Failure {
    Send(hyper_util::client::legacy::Error),
    Timeout,
}

async fn send(
    upstreams: &Upstreams,
    request: Request<ProxyBody>,
) -> Result<Response<Incoming>, Failure> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, upstreams.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(Failure::Send(e)),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Copy bytes both ways between an upgraded client and upstream.
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    in_flight: InFlight,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    drop(in_flight);
}

/// An answer of the proxy itself, as JSON.
fn answer(route: &Route, status: StatusCode, message: &str) -> Response<ProxyBody> {
    route.count(status.as_str());
    let body = serde_json::json!({ "error": message, "route": route.listen.to_string() });
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An upstream's body, holding the request's in-flight count until it is
/// sent or dropped.
struct Counted {
    inner: Incoming,
    _in_flight: InFlight,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bind `listen` for a route (reusing the address, so a restarted proxy
/// binds again at once).
///
/// # Errors
/// The address is in use or not ours.
pub fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_behind_and_forwarded_ones_are_added() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        strip_hop_by_hop(&mut headers, false);
        add_forwarded(&mut headers, "127.0.0.1:5555".parse().unwrap());
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key("x-secret-hop"));
        assert!(!headers.contains_key("keep-alive"));
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "example.com");
    }

    #[test]
    fn an_upgrade_keeps_its_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
    }
}

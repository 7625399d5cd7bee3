//! The route proxy on its own: the real `wharf proxy` process, its real
//! control socket, and upstreams served by this test on loopback ports
//! (hyper servers and a TCP echo), so what the proxy does to requests can
//! be seen byte for byte. No Docker needed.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A `wharf proxy` on a temp state dir; stopped on drop.
struct Proxy {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Proxy {
    fn start() -> Proxy {
        let mut proxy = Proxy {
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        proxy.launch();
        proxy
    }

    fn launch(&mut self) {
        let child = Command::new(support::BIN)
            .args(["proxy", "--state-dir"])
            .arg(self.dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "the proxy never answered");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            support::signal(child.id(), "TERM");
            assert!(child.wait().unwrap().success());
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("proxy.sock")
    }

    /// One control exchange on a fresh connection.
    fn call(&self, request: Value) -> Value {
        control(&self.socket(), &[request.to_string()]).remove(0)
    }

    fn set(&self, listen: u16, upstream: SocketAddr, mode: &str) {
        let answer = self.call(json!({"op": "set", "route": {
            "listen": format!("127.0.0.1:{listen}"),
            "mode": mode,
            "project": "web",
            "stage": "prod",
            "upstream": {
                "address": upstream.to_string(),
                "container_id": format!("id-{}", upstream.port()),
                "container": "wharf-web-prod",
                "image": format!("web:{}", upstream.port()),
            }
        }}));
        assert_eq!(answer["ok"], true, "{answer}");
    }

    fn route(&self) -> Value {
        self.call(json!({"op": "list"}))["routes"][0].clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Send `lines` on one control connection; one answer per line.
fn control(socket: &Path, lines: &[String]) -> Vec<Value> {
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    lines
        .iter()
        .map(|line| {
            stream.write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut answer = String::new();
            reader.read_line(&mut answer).unwrap();
            serde_json::from_str(&answer).unwrap()
        })
        .collect()
}

/// An upstream that says who it is and what it received: `GET /` answers
/// its name and the request headers as JSON; `/slow` after a second;
/// `/stream` in three chunks; `POST /` the length of the body; `/ws`
/// upgrades and echoes.
async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| answer(name, request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    address
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn answer(
    name: &'static str,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let full = |text: String| Full::new(Bytes::from(text)).boxed();
    match (request.method().as_str(), request.uri().path()) {
        ("GET", "/slow") => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Response::new(full(name.to_string())))
        }
        ("GET", "/stream") => {
            let chunks = futures_util::stream::iter(
                ["one ", "two ", "three"].map(|c| Ok(Frame::data(Bytes::from(c)))),
            );
            Ok(Response::new(StreamBody::new(chunks).boxed()))
        }
        ("GET", "/ws") => {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let mut io = TokioIo::new(upgrade.await.unwrap());
                let mut buffer = [0u8; 64];
                let n = io.read(&mut buffer).await.unwrap();
                io.write_all(&buffer[..n]).await.unwrap();
            });
            Ok(Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(full(String::new()))
                .unwrap())
        }
        ("POST", "/") => {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            Ok(Response::new(full(format!("{name} got {}", body.len()))))
        }
        _ => {
            let headers: serde_json::Map<String, Value> = request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                .collect();
            Ok(Response::new(full(
                json!({"name": name, "headers": headers}).to_string(),
            )))
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_pass_through_with_forwarded_headers_streams_and_upgrades() {
    let proxy = Proxy::start();
    let mode = std::fs::metadata(proxy.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket is the owner's only"
    );
    let listen = free_port();
    proxy.set(listen, upstream("a").await, "http");
    let base = format!("http://127.0.0.1:{listen}");
    let http = reqwest::Client::new();

    let seen: Value = http
        .get(format!("{base}/headers"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &seen["headers"];
    assert_eq!(seen["name"], "a");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], format!("127.0.0.1:{listen}"));
    assert_eq!(headers["host"], format!("127.0.0.1:{listen}"));
    assert!(
        headers.get("x-hop").is_none(),
        "hop-by-hop header forwarded: {headers}"
    );

    // Chunked both ways: a 1 MiB body streamed up, chunks streamed down.
    let mut upload = tokio::net::TcpStream::connect(("127.0.0.1", listen))
        .await
        .unwrap();
    upload
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        upload
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        upload.write_all(&chunk).await.unwrap();
        upload.write_all(b"\r\n").await.unwrap();
    }
    upload.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    upload.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(&format!("a got {}", 1024 * 1024)),
        "{answer}"
    );
    let streamed = http.get(format!("{base}/stream")).send().await.unwrap();
    assert_eq!(streamed.headers()["transfer-encoding"], "chunked");
    assert_eq!(streamed.text().await.unwrap(), "one two three");

    // An upgrade is spliced through: bytes go both ways after the 101.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", listen))
        .await
        .unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    drop(stream);

    // No upstream answers: a 502 with a JSON reason, counted by status.
    proxy.set(
        listen,
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        "http",
    );
    let refused = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(refused.status(), 502);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("no upstream"),
        "{body}"
    );
    let route = proxy.route();
    assert_eq!(route["requests"]["502"], 1, "{route}");
    assert_eq!(route["requests"]["200"], 3, "{route}");
    assert_eq!(route["requests"]["101"], 1, "{route}");
    assert_eq!(route["switches"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_sends_new_requests_to_the_new_upstream_and_lets_the_old_drain() {
    let proxy = Proxy::start();
    let listen = free_port();
    let (a, b) = (upstream("a").await, upstream("b").await);
    proxy.set(listen, a, "http");
    let base = format!("http://127.0.0.1:{listen}");
    // One kept-alive connection for everything below.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let name = |v: Value| v["name"].as_str().unwrap().to_string();
    let first: Value = http.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(name(first), "a");

    let slow = tokio::spawn({
        let url = format!("{base}/slow");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.set(listen, b, "http");
    let after: Value = http.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        name(after),
        "b",
        "the kept-alive connection follows the switch"
    );
    let route = proxy.route();
    assert_eq!(route["upstream"]["address"], b.to_string());
    assert_eq!(
        route["draining"],
        json!([{"address": a.to_string(), "in_flight": 1}])
    );
    assert_eq!(
        slow.await.unwrap(),
        "a",
        "the slow request finishes where it started"
    );
    assert_eq!(proxy.route()["draining"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_routes_forward_and_routes_survive_a_restart_of_the_proxy() {
    let mut proxy = Proxy::start();
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_address = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let (tcp, http) = (free_port(), free_port());
    proxy.set(tcp, echo_address, "tcp");
    proxy.set(http, upstream("a").await, "http");
    let round_trip = |port: u16| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).unwrap();
        back
    };
    assert_eq!(&round_trip(tcp), b"hello");

    // Bad control lines are answered and the connection stays usable.
    let answers = control(
        &proxy.socket(),
        &["{not json".into(), json!({"op": "list"}).to_string()],
    );
    assert_eq!(answers[0]["ok"], false);
    assert_eq!(answers[1]["routes"].as_array().unwrap().len(), 2);

    proxy.stop();
    proxy.launch();
    assert_eq!(
        &round_trip(tcp),
        b"hello",
        "the tcp route came back from the file"
    );
    let body: Value = reqwest::get(format!("http://127.0.0.1:{http}/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["name"], "a", "the http route came back from the file");
    let removed = proxy.call(json!({"op": "remove", "listen": format!("127.0.0.1:{tcp}")}));
    assert_eq!(removed["removed"], true);
    assert!(std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err());
    let saved = std::fs::read_to_string(proxy.dir.path().join("routes.json")).unwrap();
    assert!(!saved.contains(&format!(":{tcp}\"")), "{saved}");
}

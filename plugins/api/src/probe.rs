//! The HTTP probe: one `GET` over a plain TCP connection, the status line
//! read back. Small on purpose: a health endpoint on a container wharf just
//! started is plain HTTP/1.x on a known address, and this avoids an HTTP
//! client stack for one request line. The docker deployer's health gate
//! (`health.http`) and the compose deployer's check that a new container
//! answers on its route port both use it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One probe may take this long, connect to status line.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A status line longer than this is not HTTP.
const MAX_HEAD: usize = 1024;

/// `GET path` from `addr`; the response's status code.
///
/// # Errors
/// No connection, no answer in time, or an answer that is not HTTP; the
/// message says which, for the deployment log.
pub async fn http_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, get(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no HTTP answer from {addr} within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: wharf-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = Vec::with_capacity(128);
    let mut buffer = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_HEAD {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|e| format!("cannot read from {addr}: {e}"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(buffer.get(..read).unwrap_or(&buffer));
    }
    parse_status_line(&head)
        .ok_or_else(|| format!("{addr} did not answer with an HTTP status line"))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts
        .next()?
        .parse()
        .ok()
        .filter(|code| (100..=599).contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 abc\r\n"), None);
    }

    #[tokio::test]
    async fn probes_a_real_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let read = socket.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..read]).into_owned();
            socket
                .write_all(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            request
        });
        assert_eq!(http_status(addr, "/healthz?x=1").await, Ok(418));
        assert!(server
            .await
            .unwrap()
            .starts_with("GET /healthz?x=1 HTTP/1.1\r\n"));

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let error = http_status(addr, "/").await.unwrap_err();
        assert!(error.contains("cannot connect"), "{error}");
    }
}

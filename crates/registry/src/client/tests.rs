//! The client against a tiny HTTP server on a real loopback socket, for what
//! Debian's distribution 2.8 cannot show: the Bearer token challenge (it
//! issues no tokens without a token server), `Link` pagination (it ignores
//! `n` on tags/list), `429` with `Retry-After`, answers too large, and a
//! `HEAD` without `Docker-Content-Digest`.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    Answer {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_string(),
    }
}

type Handler = dyn Fn(&Seen, u16) -> Answer + Send + Sync;

/// Serve `handler` on a free loopback port (one request per connection);
/// the port and the log of every request.
async fn serve(handler: Arc<Handler>) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            let log = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buffer = [0u8; 4096];
                let head_end = loop {
                    let n = stream.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buffer[..n]);
                    if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at;
                    }
                };
                let head = String::from_utf8_lossy(&data[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut request_line = lines.next().unwrap().split(' ');
                let method = request_line.next().unwrap().to_string();
                let target = request_line.next().unwrap().to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|line| line.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = data[head_end + 4..].to_vec();
                while body.len() < length {
                    let n = stream.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&buffer[..n]);
                }
                let seen = Seen {
                    method,
                    target,
                    headers,
                    body: String::from_utf8_lossy(&body).to_string(),
                };
                log.lock().unwrap().push(seen.clone());
                let answer = handler(&seen, port);
                let mut out = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    answer.status,
                    answer.body.len()
                );
                for (key, value) in &answer.headers {
                    out.push_str(&format!("{key}: {value}\r\n"));
                }
                out.push_str("\r\n");
                if seen.method != "HEAD" {
                    out.push_str(&answer.body);
                }
                let _ = stream.write_all(out.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, log)
}

fn new_client() -> Client {
    Client::new(ClientConfig {
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
}

fn repository(port: u16, path: &str) -> Repository {
    Repository::parse(&format!("127.0.0.1:{port}/{path}")).unwrap()
}

fn login(user: &str, password: &str) -> Credentials {
    Credentials {
        username: Some(user.into()),
        password: Some(password.into()),
        identity_token: None,
        server: "127.0.0.1".into(),
    }
}

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A registry behind a token server, as Docker Hub, GHCR and Harbor are:
/// `401` with a Bearer challenge until a request carries `Bearer tok-N`,
/// where the realm hands out `tok-N` for `ci:pw` (basic) or for the
/// refresh token `rt` (POST), counting tokens.
fn token_registry() -> Arc<Handler> {
    let issued = Arc::new(Mutex::new(0u32));
    Arc::new(move |seen: &Seen, port: u16| {
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{port}/token",service="test-registry",scope="repository:acme/web:pull""#
        );
        if seen.target.starts_with("/token") {
            let basic = seen.header("authorization")
                == Some(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("ci:pw")
                ));
            let refresh = seen.method == "POST"
                && seen.body.contains("grant_type=refresh_token")
                && seen.body.contains("refresh_token=rt");
            let scoped = seen.target.contains("scope=repository%3Aacme%2Fweb%3Apull")
                || seen.body.contains("scope=repository%3Aacme%2Fweb%3Apull");
            if !(basic || refresh) || !scoped {
                return answer(401, &[], "{}");
            }
            let mut issued = issued.lock().unwrap();
            *issued += 1;
            let body = if refresh {
                format!(r#"{{"access_token":"tok-{issued}","expires_in":300}}"#)
            } else {
                format!(r#"{{"token":"tok-{issued}","expires_in":300}}"#)
            };
            return answer(200, &[], &body);
        }
        if !seen
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer tok-"))
        {
            return answer(
                401,
                &[("WWW-Authenticate", challenge.as_str())],
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            );
        }
        if seen.target.starts_with("/v2/acme/web/tags/list") {
            return answer(
                200,
                &[],
                r#"{"name":"acme/web","tags":["v1.0.0","latest"]}"#,
            );
        }
        if seen.target == "/v2/acme/web/manifests/latest" {
            return answer(200, &[("Docker-Content-Digest", DIGEST)], "");
        }
        answer(404, &[], r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#)
    })
}

use base64::Engine as _;

#[tokio::test]
async fn the_bearer_challenge_with_basic_credentials() {
    let (port, log) = serve(token_registry()).await;
    let client = new_client();
    let web = repository(port, "acme/web");
    let ci = login("ci", "pw");

    assert_eq!(
        client.tags(&web, Some(&ci)).await.unwrap(),
        ["v1.0.0", "latest"]
    );
    {
        let log = log.lock().unwrap();
        let targets: Vec<&str> = log.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets.len(), 3, "401, token, retry: {targets:?}");
        assert!(targets[1].starts_with("/token?"), "{targets:?}");
        assert!(targets[1].contains("service=test-registry"), "{targets:?}");
        assert_eq!(log[2].header("authorization"), Some("Bearer tok-1"));
        // The Accept of a digest HEAD is not sent with tags/list.
        assert_eq!(log[0].header("accept"), Some("*/*"));
    }

    // The token is cached: one request per call from now on.
    assert_eq!(
        client.digest(&web, "latest", Some(&ci)).await.unwrap(),
        DIGEST
    );
    {
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 4, "{log:?}");
        let head = &log[3];
        assert_eq!(head.method, "HEAD");
        assert_eq!(head.header("authorization"), Some("Bearer tok-1"));
        let accept = head.header("accept").unwrap();
        for media_type in MANIFEST_MEDIA_TYPES {
            assert!(accept.contains(media_type), "{accept}");
        }
    }

    // Wrong credentials: the token server refuses, a typed error.
    let refused = new_client()
        .tags(&web, Some(&login("ci", "nope")))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RegistryError::Unauthorized { .. }),
        "{refused:?}"
    );
    assert!(!refused.to_string().contains("nope"), "{refused}");

    // No credentials: anonymous token requests, refused here.
    let anonymous = new_client().tags(&web, None).await.unwrap_err();
    assert!(
        anonymous.to_string().contains("no credentials"),
        "{anonymous}"
    );
}

#[tokio::test]
async fn the_bearer_challenge_with_an_identity_token() {
    let (port, log) = serve(token_registry()).await;
    let web = repository(port, "acme/web");
    let credentials = Credentials {
        username: None,
        password: None,
        identity_token: Some("rt".into()),
        server: "127.0.0.1".into(),
    };
    assert_eq!(
        new_client()
            .digest(&web, "latest", Some(&credentials))
            .await
            .unwrap(),
        DIGEST
    );
    let log = log.lock().unwrap();
    assert_eq!(log[1].method, "POST");
    assert!(log[1].body.contains("client_id=wharf"), "{:?}", log[1]);
}

#[tokio::test]
async fn an_expired_token_is_renewed_without_a_401() {
    let (port, log) = serve(token_registry()).await;
    let client = new_client();
    let web = repository(port, "acme/web");
    let ci = login("ci", "pw");
    client.tags(&web, Some(&ci)).await.unwrap();
    for cached in client.logins.lock().unwrap().values_mut() {
        cached.expires = Some(Instant::now());
    }
    client.tags(&web, Some(&ci)).await.unwrap();
    let log = log.lock().unwrap();
    let targets: Vec<&str> = log.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets.len(), 5, "{targets:?}");
    assert!(targets[3].starts_with("/token?"), "{targets:?}");
    assert_eq!(log[4].header("authorization"), Some("Bearer tok-2"));
}

#[tokio::test]
async fn a_realm_on_plain_http_elsewhere_is_refused() {
    let handler: Arc<Handler> = Arc::new(|_: &Seen, _| {
        answer(
            401,
            &[(
                "WWW-Authenticate",
                r#"Bearer realm="http://auth.example.com/token",service="x""#,
            )],
            "",
        )
    });
    let (port, log) = serve(handler).await;
    let error = new_client()
        .tags(&repository(port, "acme/web"), Some(&login("ci", "pw")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::InsecureRefused { ref host } if host == "auth.example.com"),
        "{error:?}"
    );
    assert_eq!(log.lock().unwrap().len(), 1, "no request to the realm");
}

#[tokio::test]
async fn every_page_of_the_tag_list() {
    // Pages of two, linked as distribution 3 links them: a relative `Link`
    // first, then an absolute one on the same host.
    let handler: Arc<Handler> = Arc::new(|seen: &Seen, port| match seen.target.as_str() {
        "/v2/acme/web/tags/list?n=2" => answer(
            200,
            &[("Link", r#"</v2/acme/web/tags/list?last=b&n=2>; rel="next""#)],
            r#"{"name":"acme/web","tags":["a","b"]}"#,
        ),
        "/v2/acme/web/tags/list?last=b&n=2" => answer(
            200,
            &[(
                "Link",
                format!(
                    r#"<http://127.0.0.1:{port}/v2/acme/web/tags/list?last=d&n=2>; rel="next""#
                )
                .as_str(),
            )],
            r#"{"name":"acme/web","tags":["c","d"]}"#,
        ),
        "/v2/acme/web/tags/list?last=d&n=2" => {
            answer(200, &[], r#"{"name":"acme/web","tags":["e","not a tag"]}"#)
        }
        "/v2/acme/other/tags/list?n=2" => answer(
            200,
            &[(
                "Link",
                r#"<https://elsewhere.example/v2/x/tags/list?last=a>; rel="next""#,
            )],
            r#"{"tags":["a"]}"#,
        ),
        "/v2/acme/empty/tags/list?n=2" => answer(200, &[], r#"{"name":"acme/empty","tags":null}"#),
        _ => answer(404, &[], ""),
    });
    let (port, log) = serve(handler).await;
    let client = Client::new(ClientConfig {
        page_size: Some(2),
        ..ClientConfig::default()
    });
    assert_eq!(
        client
            .tags(&repository(port, "acme/web"), None)
            .await
            .unwrap(),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(log.lock().unwrap().len(), 3);
    let elsewhere = client
        .tags(&repository(port, "acme/other"), None)
        .await
        .unwrap_err();
    assert!(
        elsewhere.to_string().contains("another host"),
        "{elsewhere}"
    );
    assert!(client
        .tags(&repository(port, "acme/empty"), None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn rate_limits_carry_their_delay() {
    let handler: Arc<Handler> = Arc::new(|seen: &Seen, _| {
        if seen.target.contains("/web/") {
            answer(
                429,
                &[("Retry-After", "7")],
                r#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#,
            )
        } else {
            answer(429, &[], "")
        }
    });
    let (port, _) = serve(handler).await;
    let error = new_client()
        .tags(&repository(port, "acme/web"), None)
        .await
        .unwrap_err();
    assert_eq!(
        error.retry_after(),
        Some(Duration::from_secs(7)),
        "{error:?}"
    );
    assert!(error.to_string().contains("retry after 7s"), "{error}");
    let error = new_client()
        .digest(&repository(port, "acme/api"), "latest", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RegistryError::RateLimited {
                retry_after: None,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn answers_are_bounded_and_statuses_typed() {
    let handler: Arc<Handler> = Arc::new(|seen: &Seen, _| match seen.target.as_str() {
        "/v2/acme/huge/tags/list" => answer(200, &[], &"x".repeat(TAGS_PAGE_LIMIT + 1)),
        "/v2/acme/junk/tags/list" => answer(200, &[], "<html>"),
        "/v2/acme/denied/tags/list" => answer(403, &[], ""),
        "/v2/acme/broken/tags/list" => answer(
            500,
            &[],
            r#"{"errors":[{"code":"UNKNOWN","message":"storage\u0007 is on fire"}]}"#,
        ),
        _ => answer(404, &[], ""),
    });
    let (port, _) = serve(handler).await;
    let client = new_client();
    let tags = |path: &'static str| client.tags_of(port, path);
    let huge = tags("acme/huge").await.unwrap_err();
    assert!(matches!(huge, RegistryError::TooLarge { .. }), "{huge:?}");
    let junk = tags("acme/junk").await.unwrap_err();
    assert!(matches!(junk, RegistryError::Malformed { .. }), "{junk:?}");
    let denied = tags("acme/denied").await.unwrap_err();
    assert!(matches!(denied, RegistryError::Denied { .. }), "{denied:?}");
    let broken = tags("acme/broken").await.unwrap_err();
    assert!(
        matches!(broken, RegistryError::Status { status: 500, .. }),
        "{broken:?}"
    );
    assert!(
        broken.to_string().ends_with(": storage is on fire"),
        "{broken}"
    );
}

impl Client {
    async fn tags_of(&self, port: u16, path: &str) -> Result<Vec<String>, RegistryError> {
        self.tags(&repository(port, path), None).await
    }
}

#[tokio::test]
async fn a_head_without_the_digest_header_falls_back_to_the_manifest() {
    const MANIFEST: &str =
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let handler: Arc<Handler> = Arc::new(|_: &Seen, _| {
        answer(
            200,
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            MANIFEST,
        )
    });
    let (port, log) = serve(handler).await;
    let digest = new_client()
        .digest(&repository(port, "acme/web"), "main", None)
        .await
        .unwrap();
    let expected: String = Sha256::digest(MANIFEST.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, format!("sha256:{expected}"));
    let methods: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.method.clone())
        .collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = Client::new(ClientConfig {
        timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    });
    let error = client
        .tags(&repository(port, "acme/web"), None)
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::Timeout { .. }), "{error:?}");
}

#[test]
fn plain_http_only_for_loopback_and_listed_hosts() {
    let insecure = vec!["registry.lan:5000".to_string(), "build.lan".to_string()];
    for allowed in [
        "127.0.0.1:5000",
        "127.1.2.3",
        "localhost:5000",
        "LOCALHOST",
        "[::1]:5000",
        "registry.lan:5000",
        "Registry.LAN:5000",
        "build.lan",
        "build.lan:8080",
    ] {
        assert!(plain_http_allowed(allowed, &insecure), "{allowed}");
    }
    for refused in [
        "registry.lan",
        "registry.lan:5001",
        "ghcr.io",
        "10.0.0.1:5000",
        "[::2]:5000",
        "localhost.example.com",
    ] {
        assert!(!plain_http_allowed(refused, &insecure), "{refused}");
    }
}

#[test]
fn repositories_by_the_reference_rules() {
    let hub = Repository::parse("nginx:1.27").unwrap();
    assert_eq!(hub.registry, "docker.io");
    assert_eq!(hub.path, "library/nginx");
    assert_eq!(hub.api_host(), "registry-1.docker.io");
    let own = Repository::parse("127.0.0.1:5000/acme/web").unwrap();
    assert_eq!(own.api_host(), "127.0.0.1:5000");
    assert_eq!(own.to_string(), "127.0.0.1:5000/acme/web");
}

#[test]
fn urls_are_https_unless_allowed() {
    let client = new_client();
    let hub = Repository::parse("nginx").unwrap();
    assert_eq!(
        client
            .url(&hub, "/v2/library/nginx/tags/list")
            .unwrap()
            .as_str(),
        "https://registry-1.docker.io/v2/library/nginx/tags/list"
    );
    let own = Repository::parse("localhost:5000/web").unwrap();
    assert_eq!(
        client.url(&own, "/v2/web/tags/list").unwrap().as_str(),
        "http://localhost:5000/v2/web/tags/list"
    );
}
